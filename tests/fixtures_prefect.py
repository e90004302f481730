"""A real Prefect server for the dashboard tests.

``prefect_server`` (session scope) runs ``prefect server start`` on a free
loopback port with a temporary PREFECT_HOME (its own SQLite database), waits
for ``/api/health`` and yields the API URL; the server process group is
stopped at the end of the session. Analytics are off.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prefect_env(home: Path, api_url: str | None = None) -> dict[str, str]:
    """Environment for a Prefect process: isolated home, no analytics, optionally a server URL."""
    env = dict(os.environ)
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               PREFECT_UI_ENABLED="true", PREFECT_LOGGING_LEVEL="INFO")
    env.pop("PREFECT_PROFILES_PATH", None)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    else:
        env.pop("PREFECT_API_URL", None)
    return env


def wait_healthy(api_url: str, proc: subprocess.Popen | None, timeout: float) -> float:
    """Seconds until ``api_url``/health answers 200; raises RuntimeError on timeout or exit."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"prefect server not healthy after {timeout:.0f} s")


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory):
    """Yield the API URL (``http://127.0.0.1:PORT/api``) of a fresh Prefect server."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    log = open(home / "server.log", "wb")
    env = prefect_env(home)
    # the UI's browser code calls the API at PREFECT_UI_API_URL, which --port does not change
    env.update(PREFECT_SERVER_API_HOST="127.0.0.1", PREFECT_SERVER_API_PORT=str(port), PREFECT_UI_API_URL=api_url)
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("prefect")), "server", "start", "--host", "127.0.0.1", "--port", str(port),
         "--analytics-off", "--no-late-runs"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(home),
    )
    try:
        startup = wait_healthy(api_url, proc, timeout=180)
        print(f"prefect server healthy after {startup:.1f} s on {api_url}")
        yield api_url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@pytest.fixture()
def prefect_api(prefect_server: str, monkeypatch: pytest.MonkeyPatch):
    """In-process Prefect calls go to the test server (settings context for this test)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        yield prefect_server


# --- a tiny labelled batch with known patient data ----------------------------------------------
#: Provenance: radiographs from /work/shared/data/radiographs (Hannover Medical School COVID-19
#: image repository, CC BY 3.0; see that folder's SOURCES.md), rendered as film scans by
#: filmflow.synth.make_film_scan with fixed seeds; the patient data below is invented.
TINY_PATIENTS = (
    {"PatientName": "ZYGMUNTOWICZ^HILDEGARD", "PatientID": "70431982", "PatientBirthDate": "19470219",
     "StudyDate": "20010612", "AccessionNumber": "QX5518203", "PatientSex": "F"},
    {"PatientName": "PRZYBYSZEWSKI^BARNABY", "PatientID": "61870254", "PatientBirthDate": "19520830",
     "StudyDate": "19990304", "AccessionNumber": "QX7740161", "PatientSex": "M"},
    {"PatientName": "QUIGLEY-FAIRWEATHER^OTTOLINE", "PatientID": "53398107", "PatientBirthDate": "19611107",
     "StudyDate": "20030127", "AccessionNumber": "QX2295874", "PatientSex": "F"},
)
RADIOGRAPHS = ROOT.parent / "shared" / "data" / "radiographs"


def make_tiny_batch(folder: Path, n: int = 3, seed: int = 7) -> list[dict[str, str]]:
    """Write ``n`` labelled 16-bit TIFF scans (100 DPI, skew within 3 degrees), JSON sidecars and a manifest."""
    import numpy as np

    from filmflow.synth import write_labelled_batch

    sources = [RADIOGRAPHS / n_ for n_ in ("00870a9c.jpg", "19073f37.jpg", "21982772.jpg")]
    patients = [TINY_PATIENTS[i % len(TINY_PATIENTS)] for i in range(n)]
    return write_labelled_batch(folder, patients, radiographs=sources, rng=np.random.default_rng(seed), dpi=100.0,
                                max_skew_deg=3.0)


@pytest.fixture(scope="session")
def tiny_batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    """(folder of 3 labelled scans + manifest.csv + sidecars, their ground truth)."""
    folder = tmp_path_factory.mktemp("tiny") / "ward-7-2001"
    return folder, make_tiny_batch(folder)
