"""The per-film CSV report: one row per source file of a batch.

The first columns are fixed, in this order (issue 2); per-field OCR values and
confidences follow after ``error``. The report is one of the two places where
patient data may appear (the other is the review page).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Iterable

from pipeline.types import LABEL_FIELDS

COLUMNS = (
    "source_file", "sha256", "status", "skew_deg", "patient_id", "patient_name", "birth_date",
    "study_date", "accession_number", "institution", "laterality", "ocr_confidence", "qc_flags",
    "sop_instance_uid", "study_instance_uid", "dicom_path", "error",
)
EXTRA_COLUMNS = (
    "ledger_state", "reconciliation", "dpi", "bits_stored", "film_box", "label_box", "notes",
    "skew_source", "rotation_k", "orientation_source", "marker", "label_kind", "storage_commitment",
    "ocr_engine", "tesseract_version", *(f"ocr_{kw}" for kw in LABEL_FIELDS), *(f"conf_{kw}" for kw in LABEL_FIELDS),
)
#: Report status values.
STATUSES = ("archived", "flagged", "failed", "skipped", "pending")

_HEADER_COLUMNS = {
    "patient_id": "PatientID", "patient_name": "PatientName", "birth_date": "PatientBirthDate",
    "study_date": "StudyDate", "accession_number": "AccessionNumber", "institution": "InstitutionName",
}


def report_status(ledger_state: str, *, archived_before: bool) -> str:
    """Map a ledger state to the report's status vocabulary."""
    if ledger_state == "archived":
        return "skipped" if archived_before else "archived"
    if ledger_state in ("flagged", "approved"):
        return "flagged" if ledger_state == "flagged" else "pending"
    if ledger_state in ("failed", "rejected"):
        return "failed"
    return "pending"


def report_row(record: dict[str, Any], *, status: str, ledger_state: str, error: str = "", dicom_path: str = "") -> dict[str, Any]:
    """One report row from a per-film record."""
    header = record.get("header") or {}
    fields = record.get("fields") or {}
    geom = record.get("geometry") or {}
    row: dict[str, Any] = {
        "source_file": record.get("source_file", ""),
        "sha256": record.get("sha256", ""),
        "status": status,
        "skew_deg": record.get("skew_deg", ""),
        **{col: header.get(kw, "") for col, kw in _HEADER_COLUMNS.items()},
        "laterality": record.get("laterality", ""),
        "ocr_confidence": record.get("ocr_confidence", ""),
        "qc_flags": record.get("qc_flags", ""),
        "sop_instance_uid": record.get("sop_instance_uid", ""),
        "study_instance_uid": record.get("study_instance_uid", ""),
        "dicom_path": dicom_path,
        "error": error if status in ("failed", "pending") else "",
        "ledger_state": ledger_state,
        "reconciliation": (record.get("reconciliation") or {}).get("status", ""),
        "dpi": record.get("dpi", ""),
        "bits_stored": record.get("bits_stored", ""),
        "film_box": " ".join(str(v) for v in geom.get("film_box", [])),
        "label_box": " ".join(str(v) for v in (record.get("label_box") or [])),
        "notes": "; ".join(record.get("notes", [])),
        "skew_source": geom.get("skew_source", ""),
        "rotation_k": geom.get("rotation_k", ""),
        "orientation_source": geom.get("orientation_source", ""),
        "marker": _marker_text(record.get("marker") or {}),
        "label_kind": record.get("label_kind", ""),
        "storage_commitment": record.get("storage_commitment", ""),
        "ocr_engine": record.get("ocr_engine", ""),
        "tesseract_version": record.get("tesseract_version", ""),
    }
    for kw in LABEL_FIELDS:
        fv = fields.get(kw) or {}
        row[f"ocr_{kw}"] = fv.get("value", "")
        row[f"conf_{kw}"] = fv.get("confidence", "")
    return row


def _marker_text(marker: dict[str, Any]) -> str:
    """``'L'``/``'R'`` for a confident lead marker, ``'L?'`` for an unconfident one, else ''."""
    letter = marker.get("letter") or ""
    if not letter:
        return ""
    return letter if marker.get("confident") else f"{letter}?"


def write_report(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write the CSV report atomically; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*COLUMNS, *EXTRA_COLUMNS], extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def read_report(path: Path) -> list[dict[str, str]]:
    """Read a report back (for tests and the review tools)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
