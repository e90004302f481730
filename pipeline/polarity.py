"""Detect and fix a negative (inverted) scan.

A positive transmissive film scan shows the bare scanner bed as the brightest
area around the film. When a scan comes out as a negative (a digitizer set to
"negative film", or an export in MONOCHROME1 sense), the bed is the darkest
area instead. The rule here is deliberately simple and only looks at the scan
border, where the bed lies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.histogram import exact_histogram, percentile_from_cumulative

#: Width of the border ring inspected, as a fraction of the shorter side.
RING_FRACTION = 0.02
#: Larger scans are assessed on every k-th row and column (k the least that brings them to this many pixels).
ASSESS_MAX_PX = 4_000_000
#: A scan is negative when its bed lies more than this share of the 5..95 % range below the interior median.
DECISION_OFFSET = 0.25
#: The border ring counts as a uniform bed when its interquartile range is below this share of the 5..95 % range.
UNIFORM_IQR = 0.1


@dataclass(frozen=True)
class PolarityAssessment:
    """Border and interior statistics of a scan and the polarity decision taken from them.

    Attributes
    ----------
    inverted : bool
        The decision of :func:`detect_inverted`.
    margin : float
        How clearly it was decided, in fractions of the 5..95 % range: with the
        bed offset ``s = (median(interior) - median(ring)) / (p95 - p5)``,
        ``|s| - DECISION_OFFSET`` (the same for a scan and its inverse);
        ``-DECISION_OFFSET`` when the ring is not uniform or there is no
        interior (no bed: undecidable, left as scanned).
    uniform : bool
        The border ring's interquartile range is below ``UNIFORM_IQR`` of the range.
    spread : float
        ``p95 - p5`` of the whole scan, image units (at least 1e-9).
    bed_offset : float
        ``s`` above (0 when there is no interior).
    """

    inverted: bool
    margin: float
    uniform: bool
    spread: float
    bed_offset: float


def assess(image: np.ndarray) -> PolarityAssessment:
    """Polarity of a whole scan from its border ring and interior: decision and margin.

    The one place the rule lives: :func:`detect_inverted` returns ``inverted``,
    ``qc.checks.polarity_margin`` returns ``margin``.

    Parameters
    ----------
    image : ndarray of shape (M, N)
        The whole scan, bed included (not a film already cropped); uint8 and
        uint16 take exact order statistics from integer histograms, other
        dtypes from ``np.percentile``.

    Returns
    -------
    PolarityAssessment

    Raises
    ------
    TypeError
        When ``image`` is not 2-D.

    Notes
    -----
    A scan of more than :data:`ASSESS_MAX_PX` pixels is assessed on every
    k-th row and column (k = 2 for a 10-Mpx scan): percentiles of a regular
    subsample of millions of pixels. Measured on 109 scans (100 generated
    evaluation films, the two large bench films, the samples) and their
    negatives, 28 of them subsampled: the same decisions, margins within
    0.005 of the full scan's (0.37802 -> 0.37792 on the 10-Mpx 8x10 film).
    A 1-Mpx limit flipped one borderline decision.

    Statistics: 5th and 95th percentiles of the whole scan; 25th/50th/75th
    percentiles of the border ring (width ``RING_FRACTION`` of the shorter
    side; the four full-length strips, so the corners count twice); median of
    the interior inside the ring. Percentiles follow ``np.percentile``'s
    default (linear) method, computed from ``cv2.calcHist`` counts (OpenCV
    documentation, "Histograms") for integer scans.
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise TypeError(f"expected a 2-D image, got shape {img.shape}")
    if img.size > ASSESS_MAX_PX:  # order statistics of a regular subsample: every step-th row and column
        step = math.ceil(math.sqrt(img.size / ASSESS_MAX_PX))
        img = np.ascontiguousarray(img[::step, ::step])
    w = max(2, int(min(img.shape) * RING_FRACTION))
    if min(img.shape) <= 2 * w:
        return PolarityAssessment(False, -DECISION_OFFSET, False, 0.0, 0.0)
    if img.dtype in (np.uint8, np.uint16):
        # exact order statistics from integer histograms (one cv2.calcHist pass, no sort, no float
        # copy), one bin per value from the scan's minimum to its maximum (a 12-bit scan: 4096 bins
        # to add up, not 65536)
        vmin, vmax, _, _ = cv2.minMaxLoc(img)
        lo, span = int(vmin), int(vmax) - int(vmin) + 1
        h_inner = exact_histogram(img[w:-w, w:-w], lo, span)
        # the border once (two full rows of strips, two side strips between them), then its corners
        h_strips = exact_histogram(np.concatenate([img[:w].ravel(), img[-w:].ravel(), img[w:-w, :w].ravel(), img[w:-w, -w:].ravel()]), lo, span)
        h_all = h_inner + h_strips
        # the ring of 4 full strips counts the corners twice
        h_ring = h_strips + exact_histogram(np.concatenate([a.ravel() for a in (img[:w, :w], img[:w, -w:], img[-w:, :w], img[-w:, -w:])]), lo, span)
        c_all, c_ring = np.cumsum(h_all), np.cumsum(h_ring)
        p5, p95 = (lo + percentile_from_cumulative(c_all, q) for q in (5, 95))
        r25, r_med, r75 = (lo + percentile_from_cumulative(c_ring, q) for q in (25, 50, 75))
        inner_med = lo + percentile_from_cumulative(np.cumsum(h_inner), 50)
    else:
        ring = np.concatenate([img[:w].ravel(), img[-w:].ravel(), img[:, :w].ravel(), img[:, -w:].ravel()]).astype(np.float64)
        p5, p95 = np.percentile(img, [5, 95])
        r25, r_med, r75 = np.percentile(ring, [25, 50, 75])
        inner_med = float(np.median(img[w:-w, w:-w].astype(np.float64)))
    spread = max(float(p95 - p5), 1e-9)
    uniform = float(r75 - r25) < UNIFORM_IQR * spread
    s = (float(inner_med) - float(r_med)) / spread
    inverted = bool(uniform and float(r_med) < inner_med - DECISION_OFFSET * spread)
    margin = abs(s) - DECISION_OFFSET if uniform else -DECISION_OFFSET
    return PolarityAssessment(inverted, float(margin), bool(uniform), spread, float(s))


def detect_inverted(image: np.ndarray) -> bool:
    """True when ``image`` looks like a negative scan (dark bed around the film).

    Parameters
    ----------
    image : ndarray of shape (M, N), uint8 or uint16
        The whole scan, bed included (not a film already cropped).

    Returns
    -------
    bool
        True when the border ring (the bed) is fairly uniform (interquartile
        range below ``UNIFORM_IQR`` of the 5..95 % range) and clearly darker (by
        ``DECISION_OFFSET`` of that range) than the median of the interior;
        False otherwise, including when there is no uniform border (no bed
        visible: undecidable, left as is). See :func:`assess`.

    Raises
    ------
    TypeError
        When ``image`` is not 2-D.

    Notes
    -----
    A positive scan's bed transmits fully and is brighter than any film
    density; a negative scan's bed is the darkest region. A film crop has no
    bed, and radiographs commonly have dark (directly exposed) borders, so the
    rule is not meant for crops.
    """
    return assess(image).inverted


def bed_clearance(film: np.ndarray, bed_level: float, *, inset_px: int = 8) -> float:
    """How far the bed lies above the film's brightest part, on a positive film.

    A film transmits less light than the bare scanner bed: its base and fog absorb
    some everywhere. On a positive scan the bed is therefore brighter than any part
    of the film, by a clear step. When the "bed" the film detection found is as bright
    as the film's own brightest parts, it is likely film itself: the dark, burned-out
    border of a film scanned without the bed, read by :func:`assess` as a negative's
    dark bed and inverted into a bright one.

    Parameters
    ----------
    film : ndarray of shape (M, N), uint8 or uint16
        The straightened, positive film (after any inversion), image units.
    bed_level : float
        The bed's level in the same (positive) image, image units
        (:attr:`pipeline.types.Geometry.bed_level`).
    inset_px : int
        Pixels left out along each side of ``film`` (bed kept around the film,
        its edge); all of it is measured only when nothing would be left
        (a film of at most ``2 * inset_px + 2`` pixels across).

    Returns
    -------
    float
        ``(bed_level - p99.9) / (bed_level - p0.1)`` over the film's pixels: about
        0.07-0.2 for the generated films and the sample scans on a bed; -0.005-0.03
        for bed-less films whose black border is as dark as the film's own darkest
        areas (up to 3 % of full scale darker), after their (wrong) inversion; 0.06-0.08
        when the border is 6-10 % darker than anything on the film, where genuine
        negatives on a bed also lie (6 of 70 generated ones below 0.1; bench/README.md,
        "Session 5"). 0.0 when the film lies at or above the bed's level. Bare bed seen
        through the film (filing holes of 6 mm or more) also gives 0.

    Raises
    ------
    ValueError
        When ``film`` is not a non-empty 2-D array.
    """
    f = np.asarray(film)
    if f.ndim != 2 or f.size == 0:
        raise ValueError(f"expected a non-empty 2-D film, got shape {f.shape}")
    if inset_px > 0 and min(f.shape) > 2 * inset_px + 2:
        f = f[inset_px:-inset_px, inset_px:-inset_px]
    if f.dtype in (np.uint8, np.uint16):
        vmin, vmax, _, _ = cv2.minMaxLoc(f)
        lo = int(vmin)
        cum = np.cumsum(exact_histogram(f, lo, int(vmax) - lo + 1))
        dark, bright = (lo + percentile_from_cumulative(cum, q) for q in (0.1, 99.9))
    else:
        dark, bright = np.percentile(f, [0.1, 99.9])
    span = float(bed_level) - float(dark)
    return 0.0 if span <= 0 else (float(bed_level) - float(bright)) / span


def invert(image: np.ndarray, *, bits_stored: int | None = None) -> np.ndarray:
    """Invert intensities within the stored range: ``(2**bits_stored - 1) - image``.

    Parameters
    ----------
    image : ndarray of shape (M, N), uint8 or uint16
    bits_stored : int, optional
        Significant bits (defaults to the dtype's width: 8 or 16).

    Returns
    -------
    ndarray, same shape and dtype as ``image``

    Raises
    ------
    ValueError
        When ``image`` holds values above ``2**bits_stored - 1`` or is not uint8/uint16.
    """
    img = np.asarray(image)
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"invert expects uint8 or uint16, got {img.dtype}")
    bits = bits_stored if bits_stored is not None else img.dtype.itemsize * 8
    if not 1 <= bits <= img.dtype.itemsize * 8:
        raise ValueError(f"bits_stored={bits} does not fit {img.dtype}")
    top = (1 << bits) - 1
    if img.size and int(img.max()) > top:
        raise ValueError(f"image holds values above 2**{bits}-1; bits_stored is wrong")
    return (np.asarray(top, dtype=img.dtype) - img).astype(img.dtype, copy=False)
