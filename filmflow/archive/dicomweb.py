"""DICOMweb archive target (dicomweb-client): STOW-RS, QIDO-RS, WADO-RS.

URL: the service root, e.g. ``https://pacs.example/dicom-web``.

Credentials come only from the environment, read when the archive is opened:

- ``FILMFLOW_DICOMWEB_TOKEN``: sent as ``Authorization: Bearer <token>``;
- else ``FILMFLOW_DICOMWEB_USER`` + ``FILMFLOW_DICOMWEB_PASSWORD``: HTTP basic auth;
- else no authentication.

They never appear in configuration files, URLs, logs or error messages.

Error mapping (PS3.18 10.5.3 for STOW-RS statuses):

- connection refused / timeout, HTTP 408/429/502/503/504: ArchiveUnreachableError, transient;
- HTTP 401/403: ArchiveUnreachableError "authentication failed", permanent;
- other HTTP 4xx: StoreFailedError, permanent; other 5xx: StoreFailedError, transient;
- a STOW-RS answer listing the instance in Failed SOP Sequence: StoreFailedError
  with the Failure Reason code (0xA7xx transient, others permanent).

dicomweb-client's own HTTP retries are switched off: the flow retries.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import requests
from pydicom import Dataset

from filmflow.archive.base import Archive, StoreReceipt, archive_error, patient_entries, pixel_sha256, read_for_store
from filmflow.config import ArchiveConfig
from filmflow.errors import ArchiveUnreachableError, ConfigError, StoreFailedError, VerificationError

log = logging.getLogger(__name__)

ENV_TOKEN = "FILMFLOW_DICOMWEB_TOKEN"
ENV_USER = "FILMFLOW_DICOMWEB_USER"
ENV_PASSWORD = "FILMFLOW_DICOMWEB_PASSWORD"

_TRANSIENT_HTTP = {408, 429, 502, 503, 504}


def session_from_env() -> tuple[requests.Session, str]:
    """A requests session carrying the credentials from the environment, and a label for logs.

    Raises
    ------
    ConfigError
        When only one of user and password is set.
    """
    session = requests.Session()
    token = os.environ.get(ENV_TOKEN, "")
    user = os.environ.get(ENV_USER, "")
    password = os.environ.get(ENV_PASSWORD, "")
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
        return session, "bearer token"
    if user or password:
        if not (user and password):
            raise ConfigError(f"set both {ENV_USER} and {ENV_PASSWORD} (or {ENV_TOKEN}) for the DICOMweb archive")
        session.auth = requests.auth.HTTPBasicAuth(user, password)
        return session, "basic auth"
    return session, "no authentication"


class DicomWebArchive(Archive):
    """Archive by DICOMweb (STOW-RS store, QIDO-RS contains, WADO-RS verify).

    Parameters
    ----------
    url : str
        DICOMweb service root (``http(s)://host[:port]/path``), no credentials in it.
    config : ArchiveConfig, optional
        ``timeout_s`` is the HTTP connect/read timeout in seconds.
    """

    def __init__(self, url: str, config: ArchiveConfig | None = None) -> None:
        from dicomweb_client.api import DICOMwebClient

        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(f"archive URL {url!r} must look like https://host/dicom-web")
        if parsed.username or parsed.password:
            raise ConfigError(
                f"put DICOMweb credentials in {ENV_TOKEN} or {ENV_USER}/{ENV_PASSWORD}, not in the archive URL"
            )
        self.config = config or ArchiveConfig()
        self.url = url.rstrip("/")
        session, self.auth_kind = session_from_env()
        self._client = DICOMwebClient(url=self.url, session=session, timeout=self.config.timeout_s)
        self._client.set_http_retry_params(retry=False)

    @classmethod
    def from_url(cls, url: str, config: ArchiveConfig | None = None) -> "DicomWebArchive":
        return cls(url, config)

    @contextlib.contextmanager
    def _http(self, action: str) -> Iterator[None]:
        """Map transport and HTTP errors of one request to archive errors (no credentials in messages)."""
        try:
            yield
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            if code in (401, 403):
                raise archive_error(
                    ArchiveUnreachableError,
                    f"{action} at {self.url}: authentication failed (HTTP {code}, {self.auth_kind});"
                    f" check {ENV_TOKEN} or {ENV_USER}/{ENV_PASSWORD}",
                    transient=False,
                ) from None
            if code in _TRANSIENT_HTTP:
                raise archive_error(
                    ArchiveUnreachableError, f"{action} at {self.url}: HTTP {code}, archive busy or unavailable", transient=True
                ) from None
            raise archive_error(
                StoreFailedError, f"{action} at {self.url} failed with HTTP {code}", transient=code >= 500
            ) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise archive_error(
                ArchiveUnreachableError,
                f"{action}: cannot reach {self.url} ({type(exc).__name__}); is the archive running?",
                transient=True,
            ) from None

    def check(self) -> None:
        """A cheap QIDO-RS query (one study at most).

        Raises
        ------
        ArchiveUnreachableError
        """
        try:
            with self._http("QIDO-RS check"):
                self._client.search_for_studies(limit=1)
        except StoreFailedError as exc:  # an HTTP error other than auth/availability: still unusable
            raise archive_error(ArchiveUnreachableError, str(exc), transient=getattr(exc, "transient", False)) from None

    def store(self, dicom_file: Path, *, pixel_sha256: str = "") -> StoreReceipt:
        """STOW-RS one instance; idempotent per SOP Instance UID on conformant servers.

        ``pixel_sha256``: the builder's hash (the pixels are then not decoded here).

        Raises
        ------
        ArchiveUnreachableError, StoreFailedError
        """
        dicom_file = Path(dicom_file)
        ds, digest = read_for_store(dicom_file, pixel_sha256, need_pixels=True)  # STOW-RS sends the dataset
        sop_uid = str(ds.SOPInstanceUID)
        with self._http("STOW-RS"):
            response = self._client.store_instances(datasets=[ds])
        notes: list[str] = []
        for item in response.get("FailedSOPSequence", []):
            if str(item.get("ReferencedSOPInstanceUID", "")) == sop_uid:
                reason = int(item.get("FailureReason", 0xC000))
                raise archive_error(
                    StoreFailedError,
                    f"STOW-RS failed with status 0x{reason:04X} for {sop_uid} at {self.url}",
                    transient=(reason & 0xFF00) == 0xA700,
                )
        stored = [i for i in response.get("ReferencedSOPSequence", []) if str(i.get("ReferencedSOPInstanceUID", "")) == sop_uid]
        if response and not stored:
            raise archive_error(StoreFailedError, f"STOW-RS answer from {self.url} does not list {sop_uid}", transient=False)
        for item in stored:
            if "WarningReason" in item:
                notes.append(f"STOW-RS warning 0x{int(item.WarningReason):04X}")
        study, series = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
        return StoreReceipt(
            sop_instance_uid=sop_uid,
            study_instance_uid=study,
            series_instance_uid=series,
            location=f"{self.url}/studies/{study}/series/{series}/instances/{sop_uid}",
            sop_class_uid=str(ds.SOPClassUID),
            pixel_sha256=digest,
            notes=tuple(notes),
            transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
        )

    def find_patient(self, patient_id: str) -> list[dict[str, str]]:
        """QIDO-RS ``/studies?PatientID=...`` with PatientName and PatientBirthDate; one entry per distinct record.

        Raises
        ------
        ArchiveUnreachableError
        """
        if not patient_id or any(c in patient_id for c in "*?\\,"):
            return []  # QIDO-RS would read these as wildcards or a list of values
        try:
            with self._http("QIDO-RS patient"):
                found = self._client.search_for_studies(
                    search_filters={"PatientID": patient_id}, fields=["PatientName", "PatientBirthDate"]
                )
        except StoreFailedError as exc:
            raise archive_error(ArchiveUnreachableError, str(exc), transient=getattr(exc, "transient", False)) from None
        return patient_entries((Dataset.from_json(item) for item in found), patient_id)

    def contains(self, sop_instance_uid: str) -> bool:
        """QIDO-RS ``/instances?SOPInstanceUID=...``.

        Raises
        ------
        ArchiveUnreachableError
        """
        try:
            with self._http("QIDO-RS"):
                found = self._client.search_for_instances(search_filters={"SOPInstanceUID": sop_instance_uid})
        except StoreFailedError as exc:
            raise archive_error(ArchiveUnreachableError, str(exc), transient=getattr(exc, "transient", False)) from None
        return any(
            sop_instance_uid in (item.get("00080018", {}).get("Value") or []) for item in found
        )

    def verify(self, receipt: StoreReceipt, *, retrieve: bool = True) -> None:
        """QIDO-RS the instance; when ``retrieve``, WADO-RS it (original transfer syntax) and compare pixels.

        Raises
        ------
        VerificationError, ArchiveUnreachableError
        """
        if not self.contains(receipt.sop_instance_uid):
            raise archive_error(VerificationError, f"{self.url} does not hold instance {receipt.sop_instance_uid}", transient=False)
        if not retrieve:
            return
        try:
            with self._http("WADO-RS"):
                ds: Dataset = self._client.retrieve_instance(
                    receipt.study_instance_uid,
                    receipt.series_instance_uid,
                    receipt.sop_instance_uid,
                    media_types=(("application/dicom", "*"),),
                )
        except StoreFailedError as exc:
            raise archive_error(VerificationError, str(exc), transient=getattr(exc, "transient", False)) from None
        if receipt.pixel_sha256 and pixel_sha256(ds) != receipt.pixel_sha256:
            raise archive_error(VerificationError, f"pixel hash mismatch for {receipt.sop_instance_uid} at {self.url}", transient=False)

    def close(self) -> None:
        """Close the HTTP session; idempotent."""
        self._client._session.close()
