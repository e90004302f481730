"""Checking a batch's inputs before anything is touched.

:func:`check_batch_inputs` is run by the CLI before Prefect starts (a bad
argument then costs no server start-up and prints one clean line, no
traceback) and again by the ``migrate-batch`` flow itself (a deployment run has
no CLI in front of it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filmflow.archive import open_archive
from filmflow.archive.base import canonical_url
from filmflow.config import Settings, load_settings
from filmflow.errors import ConfigError, SourceError
from pipeline.manifest import load_manifest
from pipeline.types import ManifestRow


@dataclass(frozen=True)
class BatchInputs:
    """A batch's validated inputs."""

    settings: Settings
    source_root: Path
    work_dir: Path
    report_path: Path
    archive_url: str
    manifest_rows: list[ManifestRow] | None


def check_batch_inputs(
    source_dir: str | Path,
    batch_name: str,
    *,
    manifest: str | None = None,
    archive: str | None = None,
    report: str | None = None,
    config: str | None = None,
    check_archive: bool = True,
    **overrides: Any,
) -> BatchInputs:
    """Validate a batch's configuration, source folder, report path, manifest and archive.

    Parameters
    ----------
    source_dir, batch_name, manifest, archive, report, config
        As for ``filmflow migrate``.
    check_archive : bool
        Also connect to the archive (C-ECHO, a QIDO query, a write test; for a
        ``dicom://`` archive with storage commitment, bind the commitment
        listener's port) and close it.
    **overrides
        Further configuration sections (e.g. ``run={"workers": 2}``).

    Returns
    -------
    BatchInputs

    Raises
    ------
    ConfigError
        Invalid configuration, an unsupported archive URL, a report path that is a folder, or
        (``check_archive``) a commitment port that cannot be bound
        (:class:`~filmflow.archive.commitment.CommitmentListenerError`).
    SourceError
        The source folder is missing or not a folder.
    ManifestError
        The manifest is unusable (the message names the line and column, never a value).
    ArchiveUnreachableError
        The archive cannot be reached or written.
    """
    if archive:
        overrides["archive"] = {**overrides.get("archive", {}), "url": archive}
    settings = load_settings(config, **overrides)
    url = canonical_url(settings.archive.url)
    scheme = url.split("://", 1)[0] if "://" in url else "folder"
    if settings.archive.storage_commitment == "require" and scheme != "dicom":
        raise ConfigError(
            f"archive.storage_commitment = 'require' applies to dicom:// archives only (DICOM Storage "
            f"Commitment); this archive is a {scheme} target: use 'auto' or 'off'"
        )
    source_root = Path(source_dir).resolve()
    if not source_root.is_dir():
        raise SourceError(f"source folder not found or not a folder: {source_dir}")
    work_dir = Path(settings.run.work_dir).resolve()
    report_path = Path(report).resolve() if report else work_dir / "reports" / f"{batch_name}.csv"
    if report_path.is_dir():
        raise ConfigError(f"--report must name a file, not a folder: {report}")
    if report_path.parent.exists() and not report_path.parent.is_dir():
        raise ConfigError(f"the report's folder is a file: {report_path.parent}")
    rows = load_manifest(Path(manifest), settings.manifest, date_order=settings.ocr.date_order,
                         pivot=settings.ocr.two_digit_year_pivot) if manifest else None
    archive_url = canonical_url(settings.archive.url)
    arch = open_archive(archive_url, settings.archive)  # ConfigError for an unsupported URL
    try:
        if check_archive:
            arch.check()
    finally:
        arch.close()
    return BatchInputs(settings, source_root, work_dir, report_path, archive_url, rows)
