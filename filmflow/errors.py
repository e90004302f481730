"""One exception hierarchy for filmflow.

Every class carries a short ``code`` (used as the report's error/QC code) and a
message that tells the user what to do. Messages must never contain patient
data (names, IDs, dates): they reach logs and the Prefect dashboard. Only the
CLI turns exceptions into exit codes (``exit_code``).
"""

from __future__ import annotations


class FilmflowError(Exception):
    """Base class of every error filmflow raises on purpose."""

    code: str = "error"
    exit_code: int = 1


# --- batch-level errors: the batch cannot run -------------------------------------------------
class ConfigError(FilmflowError):
    """The configuration (TOML file, environment, CLI options) is invalid."""

    code = "config"
    exit_code = 2


class SourceError(FilmflowError):
    """The source folder is missing or unreadable."""

    code = "source"
    exit_code = 2


class ManifestError(FilmflowError):
    """The manifest CSV cannot be used (missing columns, bad line, encoding)."""

    code = "manifest"
    exit_code = 2


class ToolMissingError(FilmflowError):
    """An external program (tesseract, dciodvfy) is not installed or not runnable."""

    code = "tool_missing"
    exit_code = 3


class ArchiveError(FilmflowError):
    """Base class of archive failures."""

    code = "archive"
    exit_code = 4


class ArchiveUnreachableError(ArchiveError):
    """The archive cannot be reached at all (connection refused, association rejected)."""

    code = "archive_unreachable"


class StoreFailedError(ArchiveError):
    """The archive answered a failure status for one instance."""

    code = "store_failed"


class VerificationError(ArchiveError):
    """The archive does not hold what we sent (missing instance or pixel hash mismatch)."""

    code = "verify_failed"


# --- per-film errors: the film fails, the batch goes on -----------------------------------------
class FilmError(FilmflowError):
    """Base class of errors that fail one film only."""

    code = "film_error"


class UnreadableScanError(FilmError):
    """The scan file cannot be decoded as a supported image."""

    code = "unreadable_scan"


class UnsupportedScanError(FilmError):
    """The scan decodes but is of a kind filmflow does not accept (float, multi-page, ...)."""

    code = "unsupported_scan"


class ScanTooLargeError(FilmError):
    """The scan declares more pixels than the configured limit (decompression bomb guard)."""

    code = "scan_too_large"


class FilmNotFoundError(FilmError):
    """No film could be found on the scanner bed."""

    code = "film_not_found"


class BlankScanError(FilmNotFoundError):
    """The scan has no contrast at all (nothing on the bed, or the scanner saw nothing)."""


class OCRError(FilmError):
    """Tesseract failed or timed out on a label."""

    code = "ocr_error"


class DicomBuildError(FilmError):
    """The DICOM object could not be built or encoded."""

    code = "dicom_build"
