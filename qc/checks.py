"""QC checks: small pure functions returning :class:`qc.types.QCResult` lists.

Each check takes measured inputs and the :class:`filmflow.config.QCConfig`
thresholds and returns zero or more findings; an empty list means "passed".
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from filmflow.config import QCConfig
from pipeline.types import Geometry, LabelReading, Reconciliation
from qc.types import QCResult


def check_image(film: np.ndarray, *, bits_stored: int, config: QCConfig) -> list[QCResult]:
    """Blank, saturated and low-dynamic-range checks on the straightened film.

    Parameters
    ----------
    film : ndarray of shape (M, N), uint8 or uint16
    bits_stored : int
        Full scale is ``2**bits_stored - 1``.

    Returns
    -------
    list of QCResult
        ``blank`` (fail): standard deviation below ``blank_std_fraction`` of full scale;
        ``saturated`` (review): more than ``max_saturated_fraction`` of pixels at 0 or full scale;
        ``low_contrast`` (review): 1st-99th percentile spread below ``min_dynamic_range`` of full scale.
    """
    full = float(2**bits_stored - 1)
    sample = film[:: max(1, film.shape[0] // 512), :: max(1, film.shape[1] // 512)]
    out: list[QCResult] = []
    std = float(sample.std()) / full
    if std < config.blank_std_fraction:
        return [QCResult("blank", "fail", round(std, 5), config.blank_std_fraction, "the film is blank or nearly uniform")]
    sat = float(np.mean((sample == 0) | (sample >= full)))
    if sat > config.max_saturated_fraction:
        out.append(QCResult("saturated", "review", round(sat, 4), config.max_saturated_fraction, "too many pixels clipped at black or white"))
    p1, p99 = np.percentile(sample, [1, 99])
    spread = float(p99 - p1) / full
    if spread < config.min_dynamic_range:
        out.append(QCResult("low_contrast", "review", round(spread, 4), config.min_dynamic_range, "low dynamic range (1st-99th percentile spread)"))
    return out


def check_geometry(geometry: Geometry, *, config: QCConfig) -> list[QCResult]:
    """Film cut off by the bed edge, several films on the bed, orientation undecided."""
    out: list[QCResult] = []
    if geometry.film_count > 1:
        out.append(QCResult("multiple_films", "review", geometry.film_count, 1, "more than one film found on the scanner bed"))
    if geometry.touches_bed_edge:
        out.append(QCResult("film_cut_off", "review", True, False, "the film runs off the edge of the scan"))
    if abs(geometry.skew_deg) > 45:
        out.append(QCResult("skew_out_of_range", "review", round(geometry.skew_deg, 2), 45, "skew outside the supported range"))
    if not geometry.orientation_decided:
        out.append(QCResult("orientation_undecided", "info", None, None, "orientation could not be decided from label or markers; left as scanned"))
    return out


def check_label(reading: LabelReading, *, config: QCConfig) -> list[QCResult]:
    """Label not found, required fields missing, field confidence below threshold, handwriting."""
    if reading.region is None and not reading.fields:
        return [QCResult("label_not_found", "review", None, None, "no ID label found on the film")]
    out: list[QCResult] = []
    if reading.region is not None and reading.region.kind == "handwritten":
        out.append(QCResult("handwriting", "review", None, None, "handwritten label: not read, needs a human"))
    for kw in config.required_fields:
        if not reading.value(kw):
            out.append(QCResult(f"missing_{kw}", "review", None, None, f"{kw} not read from the label"))
    for kw, fv in sorted(reading.fields.items()):
        if fv.value and fv.confidence < config.min_field_confidence:
            out.append(QCResult(f"low_confidence_{kw}", "review", round(fv.confidence, 1), config.min_field_confidence, f"OCR confidence of {kw} below threshold"))
    return out


def check_identity(recon: Reconciliation) -> list[QCResult]:
    """Manifest agreement: disagreement (field by field), ambiguous or missing match."""
    if recon.status == "disagree":
        fields = ", ".join(d.keyword for d in recon.disagreements)
        return [QCResult("manifest_disagree", "review", fields, None, f"label contradicts the manifest row on: {fields}")]
    if recon.status == "ambiguous":
        return [QCResult("manifest_ambiguous", "review", len(recon.candidates), 1, "the label matches more than one manifest row")]
    if recon.status == "no_match":
        return [QCResult("manifest_no_match", "review", 0, 1, "no manifest row matches the label")]
    return []


def check_duplicate(duplicate_of: Sequence[str]) -> list[QCResult]:
    """The same scan (SHA-256) was already submitted under another path."""
    if duplicate_of:
        return [QCResult("duplicate_scan", "review", len(duplicate_of), 0, "the same scan file (SHA-256) was already submitted")]
    return []


def check_dicom(findings: Sequence[object]) -> list[QCResult]:
    """The object fails ``dciodvfy`` (any ``Error`` finding)."""
    errors = [f for f in findings if getattr(f, "level", "") == "error"]
    if errors:
        return [QCResult("dicom_invalid", "review", len(errors), 0, "dciodvfy: " + "; ".join(getattr(e, "message", "") for e in errors[:3]))]
    return []
