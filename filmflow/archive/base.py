"""The archive interface every target implements.

A target is chosen by URL (:func:`open_archive`):

- a plain path or ``file://`` URL: :class:`filmflow.archive.folder.FolderArchive`
- ``dicom://CALLED_AET@host:port``: DICOM C-STORE (:mod:`filmflow.archive.dimse`)
- ``http(s)://.../dicom-web``: DICOMweb STOW-RS (:mod:`filmflow.archive.dicomweb`)

Life cycle: ``check()`` once before a batch (raises ArchiveUnreachableError),
``store(path)`` per instance, ``verify(receipt)`` after the store, ``close()``
at the end. Archives are used as context managers. ``store`` must be
idempotent: storing the same SOP Instance UID again never creates a second
instance.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from filmflow.config import ArchiveConfig
from filmflow.errors import ConfigError


@dataclass(frozen=True)
class StoreReceipt:
    """What the archive confirmed for one stored instance.

    Attributes
    ----------
    sop_instance_uid, study_instance_uid, series_instance_uid : str
    location : str
        Where it landed (a file path, or the archive URL + UID).
    sop_class_uid : str
        The SOP Class actually stored (may differ after a fallback to plain SC).
    pixel_sha256 : str
        SHA-256 of the decoded pixel bytes that were sent.
    notes : tuple of str
        Non-patient remarks for the report (e.g. "fell back to plain SC").
    """

    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    location: str
    sop_class_uid: str = ""
    pixel_sha256: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


class Archive(abc.ABC):
    """Abstract archive target."""

    url: str

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def check(self) -> None:
        """Make sure the archive is reachable and writable.

        Raises
        ------
        ArchiveUnreachableError
        """

    @abc.abstractmethod
    def store(self, dicom_file: Path) -> StoreReceipt:
        """Store one DICOM Part 10 file; idempotent per SOP Instance UID.

        Raises
        ------
        ArchiveUnreachableError, StoreFailedError
        """

    @abc.abstractmethod
    def verify(self, receipt: StoreReceipt, *, retrieve: bool = True) -> None:
        """Confirm the archive holds the instance (and, when ``retrieve``, identical pixels).

        Raises
        ------
        VerificationError
        """

    @abc.abstractmethod
    def contains(self, sop_instance_uid: str) -> bool:
        """True when the archive already holds this SOP Instance UID."""

    def close(self) -> None:
        """Release connections; idempotent."""


def open_archive(url: str, config: ArchiveConfig | None = None) -> Archive:
    """Open the archive target named by ``url``.

    Raises
    ------
    ConfigError
        For an unsupported URL scheme or malformed URL.
    """
    config = config or ArchiveConfig()
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and url[1:3] in (":\\", ":/")):
        from filmflow.archive.folder import FolderArchive

        path = Path(parsed.path if scheme == "file" else url)
        return FolderArchive(path, config)
    if scheme == "dicom":
        from filmflow.archive.dimse import DimseArchive

        return DimseArchive.from_url(url, config)
    if scheme in ("http", "https"):
        from filmflow.archive.dicomweb import DicomWebArchive

        return DicomWebArchive.from_url(url, config)
    raise ConfigError(f"unsupported archive URL scheme {scheme!r}: use a folder path, file://, dicom:// or http(s)://")
