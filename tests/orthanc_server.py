"""Start and stop a throw-away Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) on loopback.

Used by the pytest fixture in ``fixtures_orthanc.py`` and by ``bench/`` scripts::

    with OrthancServer() as orthanc:
        orthanc.dicomweb_url    # http://127.0.0.1:<port>/dicom-web
        orthanc.dicom_port      # C-STORE/C-FIND/C-GET SCP, called AE "ORTHANC"
        orthanc.auth            # (user, password) for HTTP basic auth
        orthanc.rest("GET", "/instances")

``stop()`` then ``start()`` restarts the same server on the same storage and
ports (for outage tests). Ports are found by binding port 0 on 127.0.0.1;
there is a small race between closing the probe socket and Orthanc binding
it, which is acceptable for tests.

Provenance: the configuration keys follow Orthanc 1.10's documented
``Configuration.json`` (``/etc/orthanc/orthanc.json`` on Debian).
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ORTHANC_BINARY = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
CALLING_AET = "FILMFLOW"


def orthanc_available() -> bool:
    """True when Debian's Orthanc binary is installed."""
    return ORTHANC_BINARY.is_file()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OrthancServer:
    """A child Orthanc process with its own temporary storage and configuration.

    Parameters
    ----------
    aet : str
        Orthanc's own (called) AE title.
    calling_aet_port : int, optional
        Port registered for our calling AE in ``DicomModalities`` (host
        127.0.0.1): where Orthanc connects back, e.g. to send storage commitment
        reports; a test listens there with ``archive.commitment_port``.
    extra_config : dict, optional
        Keys merged into the generated configuration (e.g.
        ``{"AcceptedTransferSyntaxes": ["1.2.840.10008.1.2.1"]}``).
    """

    def __init__(
        self,
        *,
        aet: str = "ORTHANC",
        calling_aet_port: int | None = None,
        extra_config: dict[str, Any] | None = None,
        startup_timeout_s: float = 30.0,
    ) -> None:
        self.aet = aet
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.calling_aet_port = calling_aet_port or free_port()
        self.auth = ("filmflow-test", secrets.token_urlsafe(16))
        self.startup_timeout_s = startup_timeout_s
        self._extra = dict(extra_config or {})
        self._tmp: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = None

    # --- addresses -------------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.http_url}/dicom-web"

    @property
    def dicom_url(self) -> str:
        """The filmflow archive URL for C-STORE to this server."""
        return f"dicom://{self.aet}@127.0.0.1:{self.dicom_port}"

    @property
    def tmp_dir(self) -> Path:
        assert self._tmp is not None, "server never started"
        return self._tmp

    @property
    def log_path(self) -> Path:
        return self.tmp_dir / "orthanc.log"

    # --- configuration ---------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        assert self._tmp is not None
        storage = self._tmp / "storage"
        cfg: dict[str, Any] = {
            "Name": "filmflow-test",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "DicomCheckCalledAet": True,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.auth[0]: self.auth[1]},
            "DicomModalities": {
                CALLING_AET: {
                    "AET": CALLING_AET,
                    "Host": "127.0.0.1",
                    "Port": self.calling_aet_port,
                    "AllowEcho": True,
                    "AllowFind": True,
                    "AllowGet": True,
                    "AllowMove": True,
                    "AllowStore": True,
                }
            },
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "HttpThreadsCount": 8,
            "ConcurrentJobs": 1,
            "SaveJobs": False,
            "DicomAssociationCloseDelay": 0,
            # Orthanc's allowed maximum (default 16 KiB); filmflow announces the same (archive.dimse.MAX_PDU)
            "MaximumPduLength": 131072,
            "StorageAccessOnFind": "Never",
            "Plugins": [str(DICOMWEB_PLUGIN)] if DICOMWEB_PLUGIN.is_file() else [],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Host": "127.0.0.1", "Ssl": False},
        }
        cfg.update(self._extra)
        return cfg

    # --- life cycle ------------------------------------------------------------------------
    def start(self) -> "OrthancServer":
        """Start (or restart on the same storage) and wait until ``/system`` answers."""
        if self._proc is not None and self._proc.poll() is None:
            return self
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="filmflow-orthanc-"))
        cfg_path = self._tmp / "orthanc.json"
        cfg_path.write_text(json.dumps(self.config(), indent=2))
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [str(ORTHANC_BINARY), str(cfg_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self._tmp,
        )
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with code {self._proc.returncode}; log:\n{self.log_tail()}")
            try:
                r = requests.get(f"{self.http_url}/system", auth=self.auth, timeout=1)
                if r.status_code == 200 and self._dicom_port_open():
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {self.startup_timeout_s} s")

    def _dicom_port_open(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.dicom_port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the process (terminate, wait, kill); keeps the storage for a later ``start()``."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """Stop the process at once (SIGKILL), as a crash or a pulled cable would.

        A graceful ``stop()`` lets Orthanc finish the associations it holds, which can take
        longer than a fast client needs to push the rest of a batch. Keeps the storage.
        """
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def cleanup(self) -> None:
        """Stop and remove the temporary directory."""
        self.stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> "OrthancServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # --- helpers ---------------------------------------------------------------------------
    def rest(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call Orthanc's REST API with the test credentials; JSON answer (or text), raising on HTTP errors."""
        kwargs.setdefault("timeout", 30)
        r = requests.request(method, f"{self.http_url}{path}", auth=self.auth, **kwargs)
        r.raise_for_status()
        if r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        return r.text

    def rest_bytes(self, path: str) -> bytes:
        """GET a binary resource (e.g. ``/instances/<id>/file``) with the test credentials."""
        r = requests.get(f"{self.http_url}{path}", auth=self.auth, timeout=30)
        r.raise_for_status()
        return r.content

    def clear(self) -> None:
        """Delete every patient (so tests start from an empty archive)."""
        for pid in self.rest("GET", "/patients"):
            self.rest("DELETE", f"/patients/{pid}")

    def find_instance(self, sop_instance_uid: str) -> list[str]:
        """Orthanc IDs of the instances with this SOP Instance UID."""
        return self.rest(
            "POST",
            "/tools/find",
            json={"Level": "Instance", "Query": {"SOPInstanceUID": sop_instance_uid}},
        )

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""
