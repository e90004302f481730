"""What kind of label a located label region is: flashed ``printed``, ``adhesive`` paper, or
``handwritten`` (issue 4).

* ``adhesive``: a paper sticker on the film. Paper is opaque, so the sticker carries no film
  grain (the film around it does), it is brighter and flatter than a flashed patch, and it
  stands off the film a little, casting a darker band along its edges. Its printed text is
  read as usual; the kind is recorded.
* ``handwritten``: irregular strokes. Machine print has one stroke width and one character
  height per line; hand lettering (pen, marker, grease pencil) varies in both. The features
  are those found to separate machine print from handwriting in document images: variation
  of stroke width and of connected-component size / baseline (Zheng, Li & Doermann,
  "Machine printed text and handwriting identification in noisy document images",
  IEEE TPAMI 26(3):337-353, 2004; Kavallieratou et al., "Handwritten and machine printed text
  separation in document images using the Trace transform", ICDAR 2003). Handwriting is not
  read; QC holds the film for a human (:func:`qc.checks.check_label_kind`).

Thresholds were chosen by measurement on ``bench/make_labels.py``'s ``make_kind`` films
(seed 9, see bench/README.md, "label kinds").
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.morphology import skeletonize

__all__ = ["KindFeatures", "kind_features", "classify_label"]

#: Adhesive paper: patch grain below this fraction of the surrounding film's grain, where the
#: film's grain is measurable (:data:`_MIN_FILM_GRAIN`, robust sigma, fraction of full scale),
#: and a shadow band (a strip 0.3-2 mm outside the edge at least :data:`_SHADOW_DROP` darker
#: than the film 3-6 mm out) along at least one side. Grain alone is not enough: a flashed
#: patch on a nearly grain-free scan is flat too, and the film around it still has texture.
_PAPER_GRAIN_RATIO = 0.5
_MIN_FILM_GRAIN = 0.006
#: Without measurable grain anywhere: patch at least this bright and shadowed on two sides.
_PAPER_LEVEL = 0.94
_SHADOW_DROP = 0.06
#: Handwriting, a cascade: the character heights vary (interquartile range of the heights of
#: character-sized ink components over their median, at :data:`_HEIGHT_DPI`) by at least
#: :data:`_HAND_HEIGHT_SPREAD` -- cheap, and machine-printed capitals and digits are all of one
#: height -- and then the stroke width varies (coefficient of variation of the distance
#: transform on the ink skeleton, at :data:`_WIDTH_DPI`) by at least :data:`_HAND_WIDTH_CV`.
#: Measured on generated labels (bench/README.md, "label kinds").
_HAND_HEIGHT_SPREAD = 0.15
_HAND_WIDTH_CV = 0.25
_HEIGHT_DPI = 200.0
#: Stroke widths need a few pixels across: a 2 mm capital's strokes are 3-6 px here.
_WIDTH_DPI = 300.0


@dataclass(frozen=True)
class KindFeatures:
    """Measured on one label region (all intensities as fractions of full scale)."""

    level: float  #: median of the patch (text removed), dark-text polarity
    patch_grain: float  #: robust noise sigma inside the patch
    film_grain: float  #: robust noise sigma of the film in a 2-6 mm ring outside the patch
    shadow_sides: int  #: sides with a darker band 0.3-2 mm outside the patch edge
    height_spread: float  #: interquartile range / median of character-component heights
    n_components: int  #: character-sized ink components measured
    width_cv: float  #: coefficient of variation of stroke width over the ink skeleton


def _sigma(x: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Robust noise sigma, 1.4826 x median |x - median3(x)| (over ``mask`` when given)."""
    if x.shape[0] < 3 or x.shape[1] < 3:
        return 0.0
    r = np.abs(x - cv2.medianBlur(x, 3))
    r = r[mask] if mask is not None else r
    return 1.4826 * float(np.median(r)) if r.size > 50 else 0.0


def _ink(crop: np.ndarray, bg: np.ndarray, dpi: float, to_dpi: float) -> np.ndarray:
    """uint8 ink mask of ``crop`` (text dark) resampled to ``to_dpi``: deeper than half of the
    99.5th percentile depth below the text-free background ``bg``. A region taller than wide
    holds vertical text lines (labels are longer along their lines): it is transposed so that
    component heights are character heights."""
    if crop.shape[0] > crop.shape[1]:
        crop, bg = crop.T, bg.T
    s = to_dpi / dpi
    interp = cv2.INTER_CUBIC if s > 1 else cv2.INTER_AREA
    u = cv2.resize(crop, None, fx=s, fy=s, interpolation=interp)
    depth = cv2.resize(bg, (u.shape[1], u.shape[0]), interpolation=cv2.INTER_LINEAR) - u
    hi = float(np.percentile(depth, 99.5))
    return (depth > 0.5 * hi).astype(np.uint8) if hi > 0.05 else np.zeros(u.shape, np.uint8)


def _height_spread(ink: np.ndarray) -> tuple[float, int]:
    """(IQR / median of the heights of components at least half the median height, count)."""
    n, _, st, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    h = st[1:, cv2.CC_STAT_HEIGHT].astype(float)
    if h.size < 5:
        return 0.0, int(h.size)
    h = h[h >= 0.5 * np.median(h)]
    if h.size < 5:
        return 0.0, int(h.size)
    q75, q25 = np.percentile(h, (75, 25))
    return float((q75 - q25) / np.median(h)), int(h.size)


def _width_cv(ink: np.ndarray) -> float:
    """Coefficient of variation of stroke width: distance transform sampled on the skeleton
    (Zhang-Suen thinning, skimage.morphology.skeletonize)."""
    if not ink.any():
        return 0.0
    dt = cv2.distanceTransform(ink, cv2.DIST_L2, 3)
    w = dt[skeletonize(ink.astype(bool))]
    w = w[w >= 1.0]
    return float(w.std() / w.mean()) if w.size >= 20 else 0.0


def _paper(g: np.ndarray, box: tuple[int, int, int, int], dpi: float, crop: np.ndarray, bg: np.ndarray):
    """(level, patch grain, film grain, shadow sides) of the region, see :class:`KindFeatures`."""
    rows, cols = g.shape
    r0, c0, r1, c1 = box
    mm = dpi / 25.4
    level = float(np.median(bg))
    e = int(mm)
    inner, bg_in = crop, bg
    if crop.shape[0] > 4 * mm and crop.shape[1] > 4 * mm:
        inner, bg_in = crop[e:-e, e:-e], bg[e:-e, e:-e]
    patch_grain = _sigma(inner, np.abs(inner - bg_in) < 0.05)
    a, b = int(round(2 * mm)), int(round(6 * mm))
    R0, C0, R1, C1 = max(0, r0 - b), max(0, c0 - b), min(rows, r1 + b), min(cols, c1 + b)
    ring = np.ascontiguousarray(g[R0:R1, C0:C1], dtype=np.float32)
    mask = np.ones(ring.shape, bool)
    mask[max(0, r0 - a - R0):r1 + a - R0, max(0, c0 - a - C0):c1 + a - C0] = False
    film_grain = _sigma(ring, mask)
    s0, s1, f0, f1 = max(1, int(round(0.3 * mm))), max(2, int(round(2 * mm))), int(round(3 * mm)), b
    strips = (
        (g[max(0, r0 - s1):max(0, r0 - s0), c0:c1], g[max(0, r0 - f1):max(0, r0 - f0), c0:c1]),
        (g[r1 + s0:r1 + s1, c0:c1], g[r1 + f0:r1 + f1, c0:c1]),
        (g[r0:r1, max(0, c0 - s1):max(0, c0 - s0)], g[r0:r1, max(0, c0 - f1):max(0, c0 - f0)]),
        (g[r0:r1, c1 + s0:c1 + s1], g[r0:r1, c1 + f0:c1 + f1]),
    )
    shadow = sum(1 for near, far in strips
                 if near.size and far.size and float(np.median(far)) - float(np.median(near)) > _SHADOW_DROP)
    return level, patch_grain, film_grain, shadow


def _patch(g: np.ndarray, box: tuple[int, int, int, int], dpi: float) -> tuple[np.ndarray, np.ndarray]:
    """(crop, crop with the text removed by a 2.5 mm grey closing)."""
    r0, c0, r1, c1 = box
    crop = np.ascontiguousarray(g[r0:r1, c0:c1], dtype=np.float32)
    k = max(3, int(round(2.5 * dpi / 25.4)) | 1)
    return crop, cv2.morphologyEx(crop, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))


def _check(g: np.ndarray, box: tuple[int, int, int, int], dpi: float) -> None:
    if not isinstance(g, np.ndarray) or g.ndim != 2 or g.dtype not in (np.float32, np.float64):
        raise ValueError("g must be a 2-D float32/float64 array")
    if not dpi > 0:
        raise ValueError("dpi must be positive")
    r0, c0, r1, c1 = box
    if not (0 <= r0 < r1 <= g.shape[0] and 0 <= c0 < c1 <= g.shape[1]):
        raise ValueError("box must be a non-empty region inside g")


def kind_features(g: np.ndarray, box: tuple[int, int, int, int], dpi: float) -> KindFeatures:
    """Measure every feature :func:`classify_label` may use (for the benchmark and tests).

    Parameters
    ----------
    g : ndarray of shape (M, N), float32 or float64 in [0, 1]
        The film with the label's text dark (inverted beforehand for light-on-dark labels).
    box : (row0, col0, row1, col1)
        The label region in ``g`` pixels, half-open.
    dpi : float
        Scan resolution, dots per inch.

    Returns
    -------
    KindFeatures

    Raises
    ------
    ValueError
        ``g`` not 2-D float32, ``dpi`` not positive, or ``box`` empty / outside ``g``.
    """
    _check(g, box, dpi)
    crop, bg = _patch(g, box, dpi)
    level, pg, fg, shadow = _paper(g, box, dpi, crop, bg)
    spread, n = _height_spread(_ink(crop, bg, dpi, _HEIGHT_DPI))
    wcv = _width_cv(_ink(crop, bg, dpi, _WIDTH_DPI))
    return KindFeatures(level=level, patch_grain=pg, film_grain=fg, shadow_sides=shadow,
                        height_spread=spread, n_components=n, width_cv=wcv)


def classify_label(g: np.ndarray, box: tuple[int, int, int, int], dpi: float) -> str:
    """``printed``, ``adhesive`` or ``handwritten`` for a located label region.

    Parameters
    ----------
    g : ndarray of shape (M, N), float32 or float64 in [0, 1]
        The film, label text dark (see :func:`kind_features`).
    box : (row0, col0, row1, col1)
        Label region, half-open, ``g`` pixels.
    dpi : float
        Scan resolution, dots per inch.

    Returns
    -------
    str
        ``handwritten`` when the characters vary in height and the strokes in width like
        hand lettering (whatever it is written on), else ``adhesive`` for a paper sheet
        (no film grain where the film around has some, or bright with a shadow along two
        sides), else ``printed``.

    Raises
    ------
    ValueError
        As :func:`kind_features`.
    """
    _check(g, box, dpi)
    crop, bg = _patch(g, box, dpi)
    spread, n = _height_spread(_ink(crop, bg, dpi, _HEIGHT_DPI))
    if n >= 5 and spread >= _HAND_HEIGHT_SPREAD and _width_cv(_ink(crop, bg, dpi, _WIDTH_DPI)) >= _HAND_WIDTH_CV:
        return "handwritten"
    level, pg, fg, shadow = _paper(g, box, dpi, crop, bg)
    if fg >= _MIN_FILM_GRAIN and pg < _PAPER_GRAIN_RATIO * fg and shadow >= 1:
        return "adhesive"
    if fg < _MIN_FILM_GRAIN and pg < _MIN_FILM_GRAIN and level >= _PAPER_LEVEL and shadow >= 2:
        return "adhesive"
    return "printed"
