"""The archive interface every target implements.

A target is chosen by URL (:func:`open_archive`):

- a plain path or ``file://`` URL: :class:`filmflow.archive.folder.FolderArchive`
- ``dicom://CALLED_AET@host:port``: DICOM C-STORE (:mod:`filmflow.archive.dimse`)
- ``http(s)://.../dicom-web``: DICOMweb STOW-RS (:mod:`filmflow.archive.dicomweb`)

Life cycle: ``check()`` once before a batch (raises ArchiveUnreachableError),
``find_patient(patient_id)`` before a film is pushed (the archive's own record of
the patient, for the identity check), ``store(path)`` per instance,
``verify(receipt)`` after the store, ``commit(receipts)`` after the verify (DICOM
Storage Commitment; a no-op for archives without it), ``close()`` at the end. Archives are used as context managers. ``store`` must be
idempotent: storing the same SOP Instance UID again never creates a second
instance.
"""

from __future__ import annotations

import abc
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence, TypeVar
from urllib.parse import urlparse

from filmflow.config import ArchiveConfig
from filmflow.errors import ArchiveError, ArchiveUnreachableError, ConfigError, StoreFailedError

if TYPE_CHECKING:
    from filmflow.archive.commitment import CommitmentFailedError, CommitmentOutcome
    from pydicom import Dataset

#: SOP Classes filmflow writes (PS3.4 B.5).
MULTIFRAME_GRAYSCALE_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
MULTIFRAME_GRAYSCALE_BYTE_SC = "1.2.840.10008.5.1.4.1.1.7.2"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
FILMFLOW_SOP_CLASSES: tuple[str, ...] = (MULTIFRAME_GRAYSCALE_WORD_SC, MULTIFRAME_GRAYSCALE_BYTE_SC, SECONDARY_CAPTURE)

#: Transfer syntaxes filmflow writes (config ``dicom.transfer_syntax``) plus Implicit VR LE,
#: the one every SCP must accept.
FILMFLOW_TRANSFER_SYNTAXES: tuple[str, ...] = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.5",  # RLE Lossless
)

FALLBACK_NOTE = "peer refused Multi-frame Grayscale SC; stored as plain SC"

_E = TypeVar("_E", bound=ArchiveError)


def archive_error(cls: type[_E], message: str, *, transient: bool) -> _E:
    """Build an archive exception carrying ``transient`` (True: worth retrying later).

    ``ArchiveUnreachableError`` is transient unless the cause is configuration
    (wrong AE title, bad credentials); ``StoreFailedError`` and
    ``VerificationError`` are permanent unless the peer said otherwise.
    """
    exc = cls(message)
    exc.transient = transient  # type: ignore[attr-defined]
    return exc


def is_transient(exc: BaseException) -> bool:
    """Whether a retry may help: the ``transient`` attribute, else True for ArchiveUnreachableError.

    Meant for Prefect's ``retry_condition_fn``.
    """
    default = isinstance(exc, ArchiveUnreachableError)
    return bool(getattr(exc, "transient", default))


def patient_entries(datasets: "Iterable[Dataset]", patient_id: str) -> list[dict[str, str]]:
    """Distinct (PatientID, PatientName, PatientBirthDate) of query answers that match ``patient_id`` exactly."""
    out: list[dict[str, str]] = []
    for ds in datasets:
        entry = {k: str(ds.get(k, "") or "") for k in ("PatientID", "PatientName", "PatientBirthDate")}
        if entry["PatientID"] == patient_id and entry not in out:
            out.append(entry)
    return out


def pixel_sha256(ds: "Dataset") -> str:
    """SHA-256 (hex) of the decoded pixels: ``ds.pixel_array`` bytes, C order, native dtype.

    Uses :func:`pipeline.dicom_film.pixel_sha256` when that module provides it
    (the single definition for the project), else the identical definition here.
    """
    try:
        from pipeline.dicom_film import pixel_sha256 as shared
    except ImportError:
        shared = None
    if shared is not None:
        return shared(ds)
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(ds.pixel_array).tobytes()).hexdigest()


def read_for_store(dicom_file: Path, known_sha256: str = "", *, need_pixels: bool = False) -> tuple["Dataset", str]:
    """Read a staged file for a store: ``(dataset, pixel hash)``.

    With ``known_sha256`` (the hash computed when the dataset was built, see
    :func:`pipeline.dicom_film.pixel_sha256`) the pixels are neither read nor
    decoded: the header is read with ``stop_before_pixels`` and the receipt
    carries the builder's hash, so :meth:`Archive.verify` compares the archive's
    copy with the pixels as built, not as re-read from the staging disk.
    ``need_pixels`` reads the Pixel Data anyway (a store that sends the dataset).

    Raises
    ------
    StoreFailedError
        (permanent) the file is not DICOM.
    """
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        ds = dcmread(dicom_file, stop_before_pixels=bool(known_sha256) and not need_pixels)
    except (InvalidDicomError, OSError) as exc:
        raise archive_error(StoreFailedError, f"cannot read {Path(dicom_file).name} as DICOM: {exc}", transient=False) from None
    return ds, known_sha256 or pixel_sha256(ds)


def _norm_name(value: object) -> str:
    # PN comparison: case, surrounding blanks and empty trailing components do not count
    return "^".join(part.strip() for part in str(value or "").upper().split("=")[0].split("^")).rstrip("^")


def identity_conflicts(header: dict[str, str], matches: list[dict[str, str]]) -> list[str]:
    """Keywords (PatientName, PatientBirthDate) on which the archive's record of the patient differs.

    Parameters
    ----------
    header : dict
        The film's header values by DICOM keyword.
    matches : list of dict
        :meth:`Archive.find_patient` answers for the film's PatientID.

    Returns
    -------
    list of str
        Sorted keywords; empty when the archive does not know the patient or
        agrees. A value empty on either side is not a conflict (unknown is not
        different). Names compare case-insensitively, alphabetic group only,
        trailing empty components ignored (``DOE^JANE^^`` equals ``Doe^Jane``).
    """
    out: set[str] = set()
    for match in matches:
        for keyword, norm in (("PatientName", _norm_name), ("PatientBirthDate", lambda v: str(v or "").strip())):
            ours, theirs = norm(header.get(keyword, "")), norm(match.get(keyword, ""))
            if ours and theirs and ours != theirs:
                out.add(keyword)
    return sorted(out)


def convert_to_plain_sc(ds: "Dataset") -> "Dataset":
    """Plain SC copy of ``ds`` via :func:`pipeline.dicom_film.as_plain_sc` (imported at call time).

    Raises
    ------
    StoreFailedError
        (permanent) when ``pipeline.dicom_film.as_plain_sc`` is not available.
    """
    try:
        from pipeline import dicom_film
    except ImportError:
        dicom_film = None  # type: ignore[assignment]
    convert = getattr(dicom_film, "as_plain_sc", None)
    if convert is None:
        raise archive_error(
            StoreFailedError,
            "the archive refused Multi-frame Grayscale SC and pipeline.dicom_film.as_plain_sc is not available"
            " to convert to plain SC; set dicom.sop_class = 'sc' or enable the class on the archive",
            transient=False,
        )
    return convert(ds)


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
    transfer_syntax_uid : str
        Transfer syntax of the stored object as sent.
    """

    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    location: str
    sop_class_uid: str = ""
    pixel_sha256: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    transfer_syntax_uid: str = ""


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
    def store(self, dicom_file: Path, *, pixel_sha256: str = "") -> StoreReceipt:
        """Store one DICOM Part 10 file; idempotent per SOP Instance UID.

        ``pixel_sha256``, when given, is the hash of the pixels as built (see
        :func:`read_for_store`); the file's pixels are then not decoded again.

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
            The instance is missing or its pixels differ.
        ArchiveUnreachableError
            The archive could not be asked.
        """

    def commit(self, receipts: Sequence[StoreReceipt]) -> "dict[str, CommitmentOutcome | CommitmentFailedError]":
        """Ask the archive to take responsibility for verified instances (DICOM Storage Commitment, PS3.4 Annex J).

        Returns
        -------
        dict
            Per SOP Instance UID: how the archive confirmed it, or why it did
            not commit it (see :meth:`filmflow.archive.dimse.DimseArchive.commit`).
            Empty for archives without commitment (this default: folder, DICOMweb).

        Raises
        ------
        ArchiveError
            A failure of the whole request (see the DICOM archive's method).
        """
        return {}

    @abc.abstractmethod
    def contains(self, sop_instance_uid: str) -> bool:
        """True when the archive already holds this SOP Instance UID.

        Raises
        ------
        ArchiveUnreachableError
        """

    def find_patient(self, patient_id: str) -> list[dict[str, str]]:
        """The archive's record(s) of a patient: ``[{"PatientID", "PatientName", "PatientBirthDate"}]``.

        Empty when the archive does not know the patient, or cannot be asked
        for patients (this default). Used to flag ``archive_identity_conflict``.

        Raises
        ------
        ArchiveUnreachableError
        """
        return []

    def close(self) -> None:
        """Release connections; idempotent."""


def canonical_url(url: str) -> str:
    """``url`` with a folder archive's path made absolute, so it names the same archive from any
    working directory (recorded per film, used by ``release-approved``)."""
    parsed = urlparse(url)
    if parsed.scheme.lower() in ("", "file") or (len(parsed.scheme) == 1 and url[1:3] in (":\\", ":/")):
        return str(Path(parsed.path if parsed.scheme.lower() == "file" else url).resolve())
    return url


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
        return FolderArchive(path, config, dicomdir=config.dicomdir)
    if scheme == "dicom":
        from filmflow.archive.dimse import DimseArchive

        return DimseArchive.from_url(url, config)
    if scheme in ("http", "https"):
        from filmflow.archive.dicomweb import DicomWebArchive

        return DicomWebArchive.from_url(url, config)
    raise ConfigError(f"unsupported archive URL scheme {scheme!r}: use a folder path, file://, dicom:// or http(s)://")
