"""Review-workflow fixtures: real flagged films in a per-test ledger, users, a live server.

Provenance of test inputs: ``sample_scans/film_12.tif`` (synthetic scan of a
TBX11K radiograph, see sample_scans/SOURCES.md; its label says PatientID
01234567, the manifest row 01234576 -> flagged ``manifest_disagree``) and
``sample_scans/film_01.tif`` (Hannover COVID-19 repository radiograph, CC BY
3.0; processed here against its manifest row with the patient ID changed
-> flagged ``manifest_disagree``).
Their records are made by the real :func:`flows.film.process_film`, once per
session, from copies in a temporary folder (the originals are never opened for
writing). All identities on the labels are made up.

Fixtures
--------
review_films (session)
    name -> {"path", "record", "sha256"} for ``film_12`` (flagged, disagree) and ``film_01`` (flagged, disagree).
review_env (function)
    A work folder, folder archive, settings, ledger holding both films as ``flagged``,
    a reviewer ``rita`` and a viewer ``victor`` (password :data:`PASSWORD`).
review_server (function)
    ``review_env`` served by a real uvicorn on a free loopback port; yields (base_url, env).
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from filmflow.config import Settings, load_settings
from filmflow.ledger import Ledger, default_ledger_url

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_scans"
PASSWORD = "correct horse battery"
BATCH = "review-test"


@pytest.fixture(scope="session")
def review_films(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    from flows.film import process_film
    from pipeline.manifest import load_manifest

    src = tmp_path_factory.mktemp("review-sources")
    staging = tmp_path_factory.mktemp("review-staging")
    settings = load_settings(None, run={"work_dir": str(src.parent / "unused")})
    manifest = load_manifest(SAMPLES / "manifest.csv", settings.manifest, date_order=settings.ocr.date_order,
                             pivot=settings.ocr.two_digit_year_pivot)
    out: dict[str, dict[str, Any]] = {}
    # film_01: its own manifest row, with the patient ID changed so the label contradicts it
    row01 = next(r for r in manifest if r.scan_file == "film_01.tif")
    contradicting = [dataclasses.replace(row01, PatientID="00999999")]
    for name, rows in (("film_12", manifest), ("film_01", contradicting)):
        path = src / f"{name}.tif"
        shutil.copyfile(SAMPLES / f"{name}.tif", path)
        path.chmod(0o444)
        outcome = process_film(path, source_file=path.name, settings=settings, batch_name=BATCH,
                               manifest_rows=rows, staging_dir=staging)
        assert outcome.state == "flagged", (name, outcome.state, outcome.error)
        out[name] = {"path": str(path), "record": outcome.record, "sha256": outcome.record["sha256"]}
    return out


@dataclass
class ReviewEnv:
    work_dir: Path
    archive_dir: Path
    settings: Settings
    ledger: Ledger
    films: dict[str, dict[str, Any]]

    def key(self, name: str) -> str:
        return self.films[name]["path"]

    def fid(self, name: str) -> str:
        from qc.review.store import film_id

        return film_id(self.key(name))


@pytest.fixture
def review_env(tmp_path: Path, review_films: dict[str, dict[str, Any]]) -> ReviewEnv:
    from qc.review.store import UserStore

    work_dir = tmp_path / "work"
    archive_dir = tmp_path / "archive"
    work_dir.mkdir()
    settings = load_settings(None, run={"work_dir": str(work_dir)}, archive={"url": str(archive_dir)})
    ledger = Ledger(default_ledger_url(work_dir))
    for f in review_films.values():
        ledger.discover(f["path"], f["sha256"], BATCH)
        ledger.transition(f["path"], "flagged", record=f["record"])
    users = UserStore(ledger)
    users.add("rita", PASSWORD, "reviewer")
    users.add("victor", PASSWORD, "viewer")
    env = ReviewEnv(work_dir, archive_dir, settings, ledger, review_films)
    yield env
    ledger.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def review_server(review_env: ReviewEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import uvicorn

    from qc.review.app import create_app

    # the "Release approved" button runs `filmflow release` in a subprocess: isolate its Prefect home
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    app = create_app(review_env.settings, ledger=review_env.ledger, secret="test-secret")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", review_env
    server.should_exit = True
    thread.join(timeout=10)
