"""QC checks: small pure functions returning :class:`qc.types.QCResult` lists.

Each check takes measured inputs and the :class:`filmflow.config.QCConfig`
thresholds and returns zero or more findings; an empty list means "passed".
"""

from __future__ import annotations

import math
from typing import Any, Collection, Iterable, Mapping, Sequence

import cv2
import numpy as np
from pydicom.uid import UID

from filmflow.config import QCConfig
from filmflow.errors import FilmError, FilmNotFoundError
from pipeline import geometry as geometry_mod
from pipeline import polarity as polarity_mod
from pipeline.types import Geometry, LabelReading, Reconciliation
from qc.phash import near_matches
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


def bed_visible(geometry: Geometry) -> bool:
    """False when no scanner bed was seen around the film.

    That is :func:`pipeline.geometry.find_film_or_content`'s whole-scan answer: ``skew_source``
    ``content`` or ``none`` (no film edge measured on a bed), ``touches_bed_edge`` True and the
    film quadrilateral the scan's own corners (``((0, 0), (W-1, 0), (W-1, H-1), (0, H-1))``).
    The scan was already cropped to the film (or inside it), so nothing around the film can be
    measured: its edges, how many films there are, whether it runs off the bed, its polarity.

    Parameters
    ----------
    geometry : Geometry
        What :func:`pipeline.geometry.straighten` returned.

    Returns
    -------
    bool
    """
    if geometry.skew_source not in ("content", "none") or not geometry.touches_bed_edge:
        return True
    q = geometry.film_quad
    if len(q) != 4:
        return True
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = q
    whole_scan = x0 == y0 == y1 == x3 == 0 and x1 == x2 and y2 == y3
    return not whole_scan


def check_geometry(geometry: Geometry, *, config: QCConfig) -> list[QCResult]:
    """Film cut off by the bed edge, several films on the bed, skew unmeasured, no bed visible,
    orientation undecided.

    ``multiple_films`` (review): more than one film-sized region on the bed.
    ``film_cut_off`` (review): the film runs off the edge of the scan.
    ``skew_unmeasured`` (review): ``skew_source`` is ``none`` (no trustworthy film edge and
    no confident content skew, see :func:`pipeline.geometry.find_film_or_content`), so the
    film was left unrotated rather than turned by a guessed angle.
    ``no_bed_visible`` (``config.no_bed_severity``, default review): no scanner bed around the
    film (:func:`bed_visible` False). It replaces the three above, which a bed-less scan raises
    by construction (the whole scan "touches the bed edge", anatomy counts as several "films",
    no edge to measure the skew on) and which then say nothing about the film; the polarity
    and residual-skew checks leave it to this finding too (see :func:`check_polarity`,
    :func:`check_residual_skew`). ``measured`` is the skew source (``content``: skew taken
    from the image content; ``none``: not measured, the film left unrotated).
    ``orientation_undecided`` (info): from label and markers, independent of the bed.
    """
    out: list[QCResult] = []
    if not bed_visible(geometry):
        skew = ("skew taken from the image content: check that the film is straight, oblique anatomy "
                "with no straight structure can mislead it" if geometry.skew_source == "content"
                else "skew not measured, film left unrotated")
        out.append(QCResult("no_bed_visible", config.no_bed_severity, geometry.skew_source, "bed",
                            "the scan shows no scanner bed around the film: the film's edges, its polarity and "
                            f"whether it is whole cannot be checked ({skew}); rescan with the bed visible, or review"))
    else:
        if geometry.film_count > 1:
            out.append(QCResult("multiple_films", "review", geometry.film_count, 1, "more than one film found on the scanner bed"))
        if geometry.touches_bed_edge:
            out.append(QCResult("film_cut_off", "review", True, False, "the film runs off the edge of the scan"))
        if geometry.skew_source == "none":
            out.append(QCResult("skew_unmeasured", "review", None, None,
                                "no film edge and no dominant content direction: skew not measured, film left unrotated"))
    if abs(geometry.skew_deg) > 45:
        out.append(QCResult("skew_out_of_range", "review", round(geometry.skew_deg, 2), 45, "skew outside the supported range"))
    if not geometry.orientation_decided:
        out.append(QCResult("orientation_undecided", "info", None, None, "orientation could not be decided from label or markers; left as scanned"))
    return out


def check_label(reading: LabelReading, *, config: QCConfig, corroborated: Collection[str] = ()) -> list[QCResult]:
    """Label not found, required fields missing, field confidence below threshold, handwriting.

    Parameters
    ----------
    reading : LabelReading
    config : QCConfig
        ``required_fields``, ``min_field_confidence``.
    corroborated : collection of str
        Keywords whose value read from the label equals, character for character, the
        value of the one manifest row the film was unambiguously matched with
        (reconciliation ``agree``). An independent source confirms them, so their low
        OCR confidence is reported as ``info`` instead of holding the film.

    Returns
    -------
    list of QCResult
    """
    if reading.region is None and not reading.fields:
        return [QCResult("label_not_found", "review", None, None, "no ID label found on the film")]
    out: list[QCResult] = []
    out.extend(check_label_kind(reading, config=config))
    for kw in config.required_fields:
        if not reading.value(kw):
            out.append(QCResult(f"missing_{kw}", "review", None, None, f"{kw} not read from the label"))
    for kw, fv in sorted(reading.fields.items()):
        if fv.value and fv.confidence < config.min_field_confidence:
            if kw in corroborated:
                out.append(QCResult(f"low_confidence_{kw}", "info", round(fv.confidence, 1), config.min_field_confidence,
                                    f"OCR confidence of {kw} below threshold, but the value equals the matched manifest row"))
            else:
                out.append(QCResult(f"low_confidence_{kw}", "review", round(fv.confidence, 1), config.min_field_confidence,
                                    f"OCR confidence of {kw} below threshold"))
    return out


def check_label_kind(reading: LabelReading, *, config: QCConfig) -> list[QCResult]:
    """The kind of the label found (``pipeline.label_kind.classify_label``).

    A ``handwritten`` label is held for a human (``config.handwritten_label_severity``,
    default ``review``): handwriting is not read reliably, so its fields cannot be trusted
    even when some were parsed. An ``adhesive`` paper label is recorded
    (``config.adhesive_label_severity``, default ``info``); its printed text is read as
    usual. A flashed ``printed`` label, or no label, gives nothing here.

    Parameters
    ----------
    reading : LabelReading
    config : QCConfig

    Returns
    -------
    list of QCResult
    """
    kind = reading.region.kind if reading.region is not None else ""
    if kind == "handwritten":
        return [QCResult("handwriting", config.handwritten_label_severity, kind, "printed",
                         "handwritten label: not read, needs a human")]
    if kind == "adhesive":
        return [QCResult("adhesive_label", config.adhesive_label_severity, kind, None,
                         "adhesive paper label (read as printed text)")]
    return []


#: Label fields a manifest row carries (pipeline.types.ManifestRow).
MANIFEST_KEYS = ("PatientID", "PatientName", "PatientBirthDate", "StudyDate", "AccessionNumber")


def corroborated_fields(reading: LabelReading, recon: Reconciliation) -> list[str]:
    """Keywords whose label value equals, exactly, the one manifest row the film agrees with.

    Empty unless the reconciliation is ``agree`` (one row, no contradiction).
    """
    if recon.status != "agree" or recon.row is None:
        return []
    return [kw for kw in MANIFEST_KEYS if reading.value(kw) and reading.value(kw) == getattr(recon.row, kw)]


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


def check_archive_identity(conflicts: Sequence[str]) -> list[QCResult]:
    """The archive already holds this Patient ID under another name or birth date (issue 4).

    ``conflicts``: the differing keywords, from
    :func:`filmflow.archive.base.identity_conflicts`. The archive's record is the
    hospital's truth, so a reviewer must decide; the reason names keywords only.
    """
    if conflicts:
        fields = ", ".join(conflicts)
        return [QCResult("archive_identity_conflict", "review", fields, None,
                         f"the archive holds this Patient ID with a different {fields}")]
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


# --- image: blur --------------------------------------------------------------------------------
def sharpness(film: np.ndarray, *, dpi: float, reference_dpi: float = 75.0) -> float | None:
    """Sharpness of a film: 1000 x variance of its Laplacian at a fixed pixel pitch.

    Parameters
    ----------
    film : ndarray of shape (M, N), uint8 or uint16
        The straightened film (bed cropped off).
    dpi : float
        Scan resolution, dots per inch.
    reference_dpi : float
        The film is resampled to this resolution first (area averaging when
        downsampling, bicubic when upsampling) so that the value means the same
        at every scan resolution.

    Returns
    -------
    float or None
        ``1000 * var(Laplacian)`` of the central 90 % of the film (edges and rim
        left out), with intensities expressed as fractions of the film's own
        1st..99th percentile spread, so neither the bit depth nor the film's
        contrast changes the value. None when the film has no spread (blank;
        the ``blank`` check reports it).

    Notes
    -----
    On sharp scans the value is dominated by film grain and fine detail; a
    focus or motion blur removes both. Measured on ``sample_scans/`` after the
    default bilateral denoise: 3.0..13.1 (film_07 lowest); the same films
    blurred with a Gaussian of sigma 3 px at 150 DPI (0.5 mm): 0.10..0.31,
    0.6 at most with scanner noise added after the blur.

    References
    ----------
    .. [1] Pech-Pacheco et al., "Diatom autofocusing in brightfield microscopy:
       a comparative study", ICPR 2000 (variance of the Laplacian).
    """
    img = np.asarray(film)
    rows, cols = img.shape
    t = int(0.05 * min(rows, cols))
    f = img[t : rows - t, t : cols - t].astype(np.float32)
    scale = reference_dpi / float(dpi)
    if abs(scale - 1.0) > 1e-3:
        size = (max(3, round(f.shape[1] * scale)), max(3, round(f.shape[0] * scale)))
        f = cv2.resize(f, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    p1, p99 = np.percentile(f, [1, 99])
    spread = float(p99 - p1)
    if spread <= 0:
        return None
    lap = cv2.Laplacian(f / np.float32(spread), cv2.CV_32F, ksize=1)
    return 1000.0 * float(lap.var())


def check_sharpness(film: np.ndarray, *, dpi: float, config: QCConfig) -> list[QCResult]:
    """``blurred`` (review): :func:`sharpness` below ``min_sharpness``."""
    value = sharpness(film, dpi=dpi, reference_dpi=config.sharpness_reference_dpi)
    if value is not None and value < config.min_sharpness:
        return [QCResult("blurred", "review", round(value, 3), config.min_sharpness,
                         f"the film looks blurred (variance of the Laplacian at {config.sharpness_reference_dpi:g} DPI)")]
    return []


# --- geometry: residual skew, film not found ---------------------------------------------------
def measure_residual_skew(image: np.ndarray, geometry: Geometry, *, margin_px: int) -> float | None:
    """Skew left after straightening, re-measured with :func:`pipeline.geometry.find_film`.

    The scan is straightened again with the same detection (same transform as
    :func:`pipeline.geometry.straighten`) but keeping ``margin_px`` of bed around
    the film, so that the film edges can be found and their angle measured anew.

    Parameters
    ----------
    image : ndarray of shape (M, N), uint8 or uint16
        The positive scan ``straighten`` was given (after any polarity fix).
    geometry : Geometry
        What ``straighten`` returned for it.
    margin_px : int
        Bed kept around the film, pixels (a quarter inch is plenty).

    Returns
    -------
    float or None
        Residual skew in degrees, counter-clockwise positive on screen; None
        when it cannot be measured (no bed around the film, fewer than one film
        edge refined).
    """
    img = np.asarray(image)
    w = max(2, min(img.shape) // 100)
    ring = np.concatenate([img[:w].ravel(), img[-w:].ravel(), img[:, :w].ravel(), img[:, -w:].ravel()])
    det = geometry_mod.FilmDetection(
        quad=geometry.film_quad, skew_deg=geometry.skew_deg, film_count=geometry.film_count,
        touches_bed_edge=geometry.touches_bed_edge, bed_level=float(np.percentile(ring, 90)), sides_measured=4,
    )
    try:
        again, _ = geometry_mod.straighten(img, max_skew_deg=90.0, margin_px=margin_px, detection=det)
        redo = geometry_mod.find_film(again)
    except FilmNotFoundError:
        return None
    return float(redo.skew_deg) if redo.sides_measured > 0 else None


def check_residual_skew(residual_deg: float | None, *, config: QCConfig, geometry: Geometry | None = None) -> list[QCResult]:
    """``residual_skew`` (review) above ``max_residual_skew_deg``; ``residual_skew_unmeasured`` (info).

    Nothing when ``geometry`` is given and shows no bed around the film (:func:`bed_visible`):
    ``no_bed_visible`` (:func:`check_geometry`) already says that no film edge can be measured.
    """
    if geometry is not None and not bed_visible(geometry):
        return []
    if residual_deg is None:
        return [QCResult("residual_skew_unmeasured", "info", None, config.max_residual_skew_deg,
                         "skew after straightening could not be re-measured (no bed around the film)")]
    if abs(residual_deg) > config.max_residual_skew_deg:
        return [QCResult("residual_skew", "review", round(residual_deg, 3), config.max_residual_skew_deg,
                         "the straightened film is still rotated (degrees, re-measured on its edges)")]
    return []


def check_film_error(error: FilmError) -> list[QCResult]:
    """A film-level failure as a ``fail`` finding (``film_not_found``, ``unreadable_scan``, ...).

    Steps raise :class:`filmflow.errors.FilmError` when there is nothing to
    check (no film on the bed, an unreadable file); this turns the error into a
    finding under its own code so the batch summary counts it with the rest.
    The message of those errors names no patient data.
    """
    return [QCResult(error.code, "fail", None, None, str(error))]


# --- polarity ------------------------------------------------------------------------------------
#: The rule's constants, from :mod:`pipeline.polarity` (kept here under their earlier names).
POLARITY_DECISION_OFFSET = polarity_mod.DECISION_OFFSET
POLARITY_UNIFORM_IQR = polarity_mod.UNIFORM_IQR


def polarity_margin(image: np.ndarray) -> float:
    """How clearly the scan's polarity was decided: :func:`pipeline.polarity.assess`'s margin.

    :func:`pipeline.polarity.detect_inverted` calls a scan negative when the
    border ring (the bed) is uniform and lies more than ``0.25`` of the 5..95 %
    range below the interior median. With the bed's offset
    ``s = (median(interior) - median(ring)) / (p95 - p5)`` the margin is
    ``|s| - 0.25``: how far beyond the decision offset the bed lies, on the
    bright (positive) or dark (negative) side. Same statistics and rule as the
    decision (one function, integer histograms; no sort of float copies).

    Parameters
    ----------
    image : ndarray of shape (M, N), uint8 or uint16
        The whole scan as delivered (bed included). The value is the same for
        the scan and its inverse.

    Returns
    -------
    float
        Margin in fractions of the 5..95 % range; negative when the bed lies
        within 0.25 of the interior median (a guess), ``-0.25`` when the ring is
        not uniform (no bed: undecidable, polarity left as scanned).
    """
    return polarity_mod.assess(image).margin


def check_polarity(margin: float, *, config: QCConfig, geometry: Geometry | None = None) -> list[QCResult]:
    """``polarity_doubtful`` (review): :func:`polarity_margin` below ``min_polarity_margin``.

    Nothing when ``geometry`` is given and shows no bed around the film (:func:`bed_visible`):
    the polarity rule judges the bed, so without one the margin is always below the threshold
    and ``no_bed_visible`` (:func:`check_geometry`) is the finding that says why.
    """
    if geometry is not None and not bed_visible(geometry):
        return []
    if margin < config.min_polarity_margin:
        return [QCResult("polarity_doubtful", "review", round(margin, 3), config.min_polarity_margin,
                         "positive/negative decision uncertain: the bed is not clearly the brightest or darkest area "
                         "(margin computed in qc from the border and interior statistics pipeline.polarity uses)")]
    return []


def check_inversion(inverted: bool, bed_clearance: float | None, *, config: QCConfig) -> list[QCResult]:
    """``inversion_doubtful`` (review): a scan inverted as a negative whose "bed" is no brighter
    than the film's own brightest parts.

    :func:`pipeline.polarity.assess` takes a uniform border darker than the interior for a
    negative's bed. A film scanned without the bed whose border is burned out (direct exposure,
    black on the positive) looks the same, and inverting it archives a negative. The two differ
    on the inverted film: a real bed is clearly brighter than any part of the film (its base and
    fog absorb light), a film's own border is not (:func:`pipeline.polarity.bed_clearance`
    below ``config.min_bed_clearance``). Nothing for a scan that was not inverted, or when no
    clearance was measured (no bed seen around the film: ``no_bed_visible`` says why).

    Parameters
    ----------
    inverted : bool
        The pipeline inverted the scan.
    bed_clearance : float or None
        :func:`pipeline.polarity.bed_clearance` of the inverted film, fraction.
    config : QCConfig
    """
    if not inverted or bed_clearance is None or bed_clearance >= config.min_bed_clearance:
        return []
    return [QCResult("inversion_doubtful", "review", round(bed_clearance, 4), config.min_bed_clearance,
                     "inverted as a negative scan, but the area taken for the scanner bed is no brighter than the "
                     "film's own brightest parts: it may be the film's dark border (a film scanned without the bed). "
                     "Compare with the original; if the scan was a positive, re-process with its polarity kept")]


def check_scratches(lines_inpainted: int, pixels_inpainted: int = 0) -> list[QCResult]:
    """``scratches_inpainted`` (review): scratch repair (``denoise.scratches``) inpainted lines.

    A straight catheter, tube or lead 1-3 px wide passes the same tests as a film scratch
    (bench/README.md, "Scratch repair": planted catheters lost 15 % of their pixels), so a film
    with any line inpainted is held for a reviewer to compare the processed film with the
    original. Nothing when no line was inpainted or the repair is off.

    Parameters
    ----------
    lines_inpainted : int
        :attr:`pipeline.scratches.ScratchReport.lines` (0 when the repair did not run).
    pixels_inpainted : int
        :attr:`pipeline.scratches.ScratchReport.pixels`, named in the reason (crossing lines
        count as one line).
    """
    if lines_inpainted <= 0:
        return []
    return [QCResult("scratches_inpainted", "review", int(lines_inpainted), 0,
                     f"{lines_inpainted} thin straight line(s) ({pixels_inpainted} pixels) inpainted as film "
                     "scratches (denoise.scratches): "
                     "check against the original that none was a catheter, tube, lead or fracture line")]


# --- identity: near-duplicate film -------------------------------------------------------------
def check_near_duplicate(phash: str, known: Mapping[str, str], max_distance: int) -> list[QCResult]:
    """``near_duplicate`` (review): a known film's perceptual hash within ``max_distance`` bits.

    Parameters
    ----------
    phash : str
        This film's :func:`qc.phash.film_phash`.
    known : mapping
        Other films' hashes (source path -> hash), e.g. :func:`qc.phash.known_phashes`.
    max_distance : int
        Largest Hamming distance (of 64 bits) still called the same film.

    Returns
    -------
    list of QCResult
        ``measured`` is the smallest distance; the reason gives the number of
        matches, never their paths (use :func:`qc.phash.near_matches` for those).
    """
    matches = near_matches(phash, known, max_distance)
    if not matches:
        return []
    return [QCResult("near_duplicate", "review", matches[0][1], max_distance,
                     f"looks like {len(matches)} film(s) already processed (perceptual hash distance "
                     f"{matches[0][1]} of 64 bits): the same film scanned again?")]


# --- DICOM: our own IOD checks -----------------------------------------------------------------
_UID_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def check_iod(ds: Any) -> list[QCResult]:
    """filmflow's own requirements on a digitized-film object, beyond ``dciodvfy``.

    Parameters
    ----------
    ds : pydicom.Dataset
        The dataset built by :func:`pipeline.dicom_film.build_film_dataset` (or read back).

    Returns
    -------
    list of QCResult, all ``fail`` (the object must not be archived):
        ``iod_conversion_type`` Conversion Type (0008,0064) not ``DF``;
        ``iod_pixel_spacing`` Nominal Scanned Pixel Spacing (0018,2010) missing or not two positive values;
        ``iod_burned_in`` Burned In Annotation (0028,0301) not ``YES`` (the flashed label is in the pixels);
        ``iod_bits`` Bits Stored missing or above Bits Allocated;
        ``iod_photometric`` Photometric Interpretation not ``MONOCHROME2``;
        ``iod_uid`` a UID missing, malformed or longer than 64 characters (PS3.5 9.1), or
        the file meta SOP Instance UID not matching the dataset's.

    References
    ----------
    .. [1] DICOM PS3.3 A.8 (Secondary Capture IODs), C.8.6.1 (SC Equipment), C.8.6.2 (SC Image).
    """
    out: list[QCResult] = []
    conv = str(ds.get("ConversionType", ""))
    if conv != "DF":
        out.append(QCResult("iod_conversion_type", "fail", conv, "DF", "Conversion Type must be DF (digitized film)"))
    spacing = ds.get("NominalScannedPixelSpacing")
    values: list[float] = []
    try:
        values = [float(v) for v in (spacing if spacing is not None else [])]
    except (TypeError, ValueError):
        values = []
    if len(values) != 2 or not all(math.isfinite(v) and v > 0 for v in values):
        out.append(QCResult("iod_pixel_spacing", "fail", ",".join(f"{v:g}" for v in values) or None, "> 0",
                            "Nominal Scanned Pixel Spacing must be two positive values (mm)"))
    burned = str(ds.get("BurnedInAnnotation", ""))
    if burned != "YES":
        out.append(QCResult("iod_burned_in", "fail", burned, "YES", "Burned In Annotation must be YES: the ID label is in the pixels"))
    stored, allocated = ds.get("BitsStored"), ds.get("BitsAllocated")
    if stored is None or allocated is None or not 1 <= int(stored) <= int(allocated):
        out.append(QCResult("iod_bits", "fail", f"{stored}/{allocated}", "BitsStored <= BitsAllocated",
                            "Bits Stored must be between 1 and Bits Allocated"))
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric != "MONOCHROME2":
        out.append(QCResult("iod_photometric", "fail", photometric, "MONOCHROME2", "Photometric Interpretation must be MONOCHROME2"))
    bad = [kw for kw in _UID_KEYWORDS if not UID(str(ds.get(kw, ""))).is_valid]
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta and meta.MediaStorageSOPInstanceUID != ds.get("SOPInstanceUID"):
        bad.append("MediaStorageSOPInstanceUID")
    if bad:
        out.append(QCResult("iod_uid", "fail", ",".join(bad), "valid UID (PS3.5 9.1)", "invalid or inconsistent UID: " + ", ".join(bad)))
    return out


# --- batch summary -----------------------------------------------------------------------------
def summarise(results_per_film: Mapping[str, Iterable[Any]] | Iterable[Iterable[Any]]) -> dict[str, int]:
    """Number of films with each QC code, for the batch QC summary.

    Parameters
    ----------
    results_per_film : mapping or iterable
        Per film, its findings: :class:`QCResult` objects or their ``to_dict()``
        form (as stored in ``record['qc']``). A mapping's values are used.

    Returns
    -------
    dict
        ``code -> number of films`` with that code (a film counts once per
        code), sorted by code.
    """
    films = results_per_film.values() if isinstance(results_per_film, Mapping) else results_per_film
    counts: dict[str, int] = {}
    for findings in films:
        codes = {f["code"] if isinstance(f, Mapping) else f.code for f in findings}
        for code in codes:
            counts[code] = counts.get(code, 0) + 1
    return dict(sorted(counts.items()))
