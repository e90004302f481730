"""Find the flashed ID label on a straightened film and read it.

Steps (each a plain function):

1. :func:`locate_label` -- the label is a flat rectangle (light with dark text,
   or dark with light text) of label-like physical size, usually in a corner.
   Candidates are clusters of printed strokes (black-hat of a 3 mm grey
   closing) whose own background is flat (bone edges are not) at a working
   resolution of ~75 dpi, scored by compactness, background flatness, number
   of characters and corner position, and extended along their text lines to
   words after a wide gap; the box is then fitted to the light patch at full
   resolution (trimmed off film and rim, grown over text lines the search missed).
   When nothing is found, a second search keeps thin low-contrast strokes (min-pool
   before the reduction, shallower strokes) and asks for a higher score.
2. :func:`prepare_label` -- crop, turn upright, deskew the crop itself
   (projection-profile search), rescale so capital letters are
   :data:`TARGET_CAP_PX` high, stretch contrast, pad.
3. :func:`pipeline.ocr.ocr_boxes` then :func:`pipeline.label_fields.parse_label`; the
   180 degree turn is read too only when that reading is not plausible.
4. :func:`reread_tokens` -- the words of the ID, dates and accession number are cut
   out (a quote mark read at their ends, a speck, whitened), rescaled and lightly blurred,
   binarised dark and light, and -- when they hold dotted zeros -- binarised with the dots
   erased (a zero then reads as 0, not 6 or 8; the dark and light binarisations leave the
   dots out too), read again in one Tesseract run, and voted on; doubt lowers the field's
   confidence. A sex letter read with a confidence under the QC threshold is cut out with its
   key (``SEX: M``), read again as it is and shifted by half a pixel in a run of its own, and
   voted on strictly.

The film is never modified; crops are copies.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

import cv2
import numpy as np

from filmflow.config import OCRConfig, QCConfig
from pipeline.label_fields import KEYS, key_value_spans, parse_label
from pipeline.label_kind import classify_label
from pipeline.ocr import BoxedWord, ocr_boxes
from pipeline.types import FieldValue, LabelReading, LabelRegion, OcrLine, OcrWord

__all__ = [
    "locate_label",
    "read_label",
    "prepare_label",
    "read_laterality_marker",
    "TARGET_CAP_PX",
    "LABEL_WHITELIST",
    "reread_tokens",
    "REREAD_FIELDS",
    "REREAD_VARIANTS",
]

log = logging.getLogger(__name__)

#: Capital-letter height (pixels) the label crop is rescaled to before OCR.
TARGET_CAP_PX = 30
#: Characters a printed label may carry (Tesseract whitelist).
LABEL_WHITELIST = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:,./-#'^&()"
#: Working resolution of the label search, dots per inch.
_WORK_DPI = 75.0
#: Plausible label size, mm (width or height, whichever is longer / shorter).
_LONG_MM = (15.0, 180.0)
_SHORT_MM = (5.0, 90.0)
#: A stroke blob counts as printed text when the grey-closed background around it varies by
#: less than this (fraction of full scale) within 1.5 mm: labels are flat, bone edges are not.
_FLAT_RANGE = 0.08
#: A row/column of a label box belongs to the patch when this fraction of it is at patch level
#: (text lines keep well over half of their pixels at background level).
_PATCH_LIKE = 0.6
#: Black-hat depth (fraction of full scale) that makes a pixel a stroke in the first search.
_STROKE_DIFF = 0.2
#: Second search, run only when the first finds nothing: strokes kept by a min-pool
#: (grey erosion) before the reduction to :data:`_WORK_DPI`, which keeps a thin low-contrast
#: stroke at its full depth instead of averaging it away, a lower stroke depth, and a higher
#: minimum score (noise speckle on a dark film scores up to ~0.2 there; labels 0.4-1.0 on the
#: bench set).
_STROKE_DIFF_LOW = 0.15
_MIN_SCORE = 0.15
_MIN_SCORE_LOW = 0.3
#: A stroke cluster (strokes closed by 6 x 3 mm) must fill this fraction of its box: ragged
#: line ends and lines further apart than the closing leave gaps (labels measured 0.4-0.9).
_MIN_FILL = 0.35


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _check_film(film: np.ndarray, dpi: float) -> None:
    if not isinstance(film, np.ndarray) or film.ndim != 2 or film.dtype not in (np.uint8, np.uint16):
        raise ValueError("film must be a 2-D uint8 or uint16 array")
    if not dpi > 0:
        raise ValueError("dpi must be positive")


def _unit(film: np.ndarray) -> np.ndarray:
    """Film as float32 in [0, 1] by robust full scale (a working copy)."""
    if film.dtype == np.uint8:  # full scale: no clipping needed
        return film.astype(np.float32) * np.float32(1.0 / 255.0)
    f = film.astype(np.float32)
    lo, hi = np.percentile(f[:: max(1, f.shape[0] // 512), :: max(1, f.shape[1] // 512)], (0.5, 99.9))
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((f - lo) / (hi - lo), 0.0, 1.0)


def _odd(n: float) -> int:
    n = max(3, int(round(n)))
    return n if n % 2 else n + 1


def _strokes(g: np.ndarray, px_mm: float, depth: float = _STROKE_DIFF) -> tuple[np.ndarray, np.ndarray]:
    """(closed, strokes): a 3 mm grey closing of ``g`` and the mask of character-sized dark
    stroke blobs (at least ``depth`` below the closing) lying on a flat bright background
    (bone edges and the film rim are not flat)."""
    k = _odd(3.0 * px_mm)
    closed = cv2.morphologyEx(g, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    w = _odd(1.5 * px_mm)
    se = cv2.getStructuringElement(cv2.MORPH_RECT, (w, w))
    bg_range = cv2.dilate(closed, se) - cv2.erode(closed, se)
    strokes = (((closed - g) > depth) & (closed > 0.5)).astype(np.uint8)
    n, lab, st, _ = cv2.connectedComponentsWithStats(strokes, connectivity=8)
    mean_range = np.bincount(lab.ravel(), weights=bg_range.ravel(), minlength=n) / np.maximum(st[:, 4], 1)
    keep = ((st[:, cv2.CC_STAT_WIDTH] <= 8 * px_mm) & (st[:, cv2.CC_STAT_HEIGHT] <= 8 * px_mm)
            & (mean_range < _FLAT_RANGE))
    keep[0] = False
    return closed, keep[lab]


def _candidates(g: np.ndarray, wdpi: float, dark_text: bool,
                depth: float = _STROKE_DIFF) -> list[tuple[float, tuple[int, int, int, int], bool]]:
    """Text-like clusters of dark strokes on a flat bright background: (score, box, horizontal)."""
    px_mm = wdpi / 25.4
    closed, strokes = _strokes(g, px_mm, depth)
    out: list[tuple[float, tuple[int, int, int, int], bool]] = []
    long_k, short_k = _odd(6.0 * px_mm), _odd(3.0 * px_mm)
    for horizontal, kshape in ((True, (long_k, short_k)), (False, (short_k, long_k))):
        merged = cv2.morphologyEx(strokes.astype(np.uint8), cv2.MORPH_CLOSE,
                                  cv2.getStructuringElement(cv2.MORPH_RECT, kshape))
        _, _, stats, _ = cv2.connectedComponentsWithStats(merged, connectivity=8)
        for score, box in _score_clusters(stats, strokes, closed, px_mm, dark_text):
            box = _extend(box, strokes, px_mm, horizontal=(box[3] - box[1]) >= (box[2] - box[0]))
            out.append((score, box, horizontal))
    return out


def _extend(box: tuple[int, int, int, int], strokes: np.ndarray, px_mm: float,
            horizontal: bool) -> tuple[int, int, int, int]:
    """Take in stroke blobs up to 5 mm beyond ``box`` along its text lines (a word after a
    wide gap, e.g. ``SEX: M``), as long as they stay within the box's extent across the lines."""
    if not horizontal:  # the same search on the transposed strokes
        c0, r0, c1, r1 = _extend((box[1], box[0], box[3], box[2]), strokes.T, px_mm, True)
        return (r0, c0, r1, c1)
    r0, c0, r1, c1 = box
    gap = int(round(5.0 * px_mm))
    cols = strokes.shape[1]
    for _ in range(8):
        a, b = max(0, c0 - gap), min(cols, c1 + gap)
        hit = np.flatnonzero(strokes[r0:r1, a:b].any(axis=0))
        n0, n1 = (a + hit[0], a + hit[-1] + 1) if hit.size else (c0, c1)
        n0, n1 = min(n0, c0), max(n1, c1)
        if (n0, n1) == (c0, c1):
            break
        c0, c1 = n0, n1
    return (r0, c0, r1, c1)


def _score_clusters(stats, strokes, closed, px_mm, dark_text):
    rows, cols = strokes.shape
    out: list[tuple[float, tuple[int, int, int, int]]] = []
    for i in range(1, stats.shape[0]):
        x, y, w, h, area = (int(v) for v in stats[i])
        long_mm, short_mm = max(w, h) / px_mm, min(w, h) / px_mm
        if not (_LONG_MM[0] <= long_mm <= _LONG_MM[1] and 3.0 <= short_mm <= _SHORT_MM[1]):
            continue
        fill = area / float(w * h)
        density = float(strokes[y:y + h, x:x + w].mean())
        if fill < _MIN_FILL or not 0.04 <= density <= 0.6:
            continue
        bg = closed[y:y + h, x:x + w]
        level = float(np.median(bg))
        flat = 1.0 - min(1.0, float(np.percentile(bg, 90) - np.percentile(bg, 10)) * 3.0)
        if level < 0.5 or flat <= 0.2:
            continue
        n_chars = cv2.connectedComponents(strokes[y:y + h, x:x + w].astype(np.uint8))[0] - 1
        dr = min(y, rows - (y + h)) / rows
        dc = min(x, cols - (x + w)) / cols
        corner = 1.0 if (dr < 0.2 and dc < 0.2) else 0.4
        score = corner * flat * min(1.0, fill / 0.5) * min(1.0, n_chars / 60.0) * (1.0 if dark_text else 0.9)
        out.append((score, (y, x, y + h, x + w)))
    return out


def _refine(g: np.ndarray, box: tuple[int, int, int, int], dpi: float) -> tuple[int, int, int, int]:
    """Fit a text box to its label patch at full resolution.

    The text is removed by a 2.5 mm grey closing; a side of the box is then moved in while
    its outermost row or column is not patch-like (film, bone or the film rim outside the
    patch), and out, by at most 8 mm, while the next one is (text lines the search missed,
    the patch margin). Patch-like: at least :data:`_PATCH_LIKE` of the closed strip, and the 75th percentile of the strip
    itself, within 0.1 of the patch level.
    """
    rows, cols = g.shape
    m = int(round(8.0 / 25.4 * dpi))
    R0, C0 = max(0, box[0] - m), max(0, box[1] - m)
    R1, C1 = min(rows, box[2] + m), min(cols, box[3] + m)
    sub = g[R0:R1, C0:C1]
    k = _odd(2.5 / 25.4 * dpi)  # about a character: fills the text, keeps the patch edges
    closed = cv2.morphologyEx(sub, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    r0, c0, r1, c1 = box[0] - R0, box[1] - C0, box[2] - R0, box[3] - C0
    level = float(np.median(closed[r0:r1, c0:c1]))
    like = np.abs(closed - level) < 0.1
    # the strip's 75th percentile is within 0.1 of the level when no more than 75 % of it lies
    # below level - 0.1 and at least 75 % lies below level + 0.1 (counts, not a sort per step)
    below_lo, below_hi = sub < level - 0.1, sub < level + 0.1

    def ok(i0: int, i1: int, j0: int, j1: int) -> bool:
        strip = like[i0:i1, j0:j1]
        return (strip.size > 0 and float(strip.mean()) >= _PATCH_LIKE
                and float(below_lo[i0:i1, j0:j1].mean()) <= 0.75 and float(below_hi[i0:i1, j0:j1].mean()) >= 0.75)

    min_px = int(round(3.0 / 25.4 * dpi))
    changed = True
    while changed:  # trim
        changed = False
        if r1 - r0 > min_px and not ok(r0, r0 + 1, c0, c1):
            r0, changed = r0 + 1, True
        if r1 - r0 > min_px and not ok(r1 - 1, r1, c0, c1):
            r1, changed = r1 - 1, True
        if c1 - c0 > min_px and not ok(r0, r1, c0, c0 + 1):
            c0, changed = c0 + 1, True
        if c1 - c0 > min_px and not ok(r0, r1, c1 - 1, c1):
            c1, changed = c1 - 1, True
    changed = True
    while changed:  # grow
        changed = False
        if r0 > 0 and ok(r0 - 1, r0, c0, c1):
            r0, changed = r0 - 1, True
        if r1 < like.shape[0] and ok(r1, r1 + 1, c0, c1):
            r1, changed = r1 + 1, True
        if c0 > 0 and ok(r0, r1, c0 - 1, c0):
            c0, changed = c0 - 1, True
        if c1 < like.shape[1] and ok(r0, r1, c1, c1 + 1):
            c1, changed = c1 + 1, True
    return (r0 + R0, c0 + C0, r1 + R0, c1 + C0)


def _best_candidate(dark: np.ndarray, light: np.ndarray, wdpi: float, depth: float):
    """Best (score, box, dark_text) over the dark-text image and the inverted one, or None."""
    best: tuple[float, tuple[int, int, int, int], bool] | None = None
    for dark_text, g in ((True, dark), (False, light)):
        for score, box, _ in _candidates(g, wdpi, dark_text, depth):
            if best is None or score > best[0]:
                best = (score, box, dark_text)
    return best


def locate_label(film: np.ndarray, *, dpi: float, kind_from: np.ndarray | None = None) -> LabelRegion | None:
    """Find the flashed ID label on a straightened, cropped film.

    Parameters
    ----------
    film : ndarray of shape (M, N), uint8 or uint16
        MONOCHROME2 film (high = bright). Not modified.
    dpi : float
        Scan resolution, dots per inch (sets the physical size limits:
        label sides 5..180 mm).
    kind_from : ndarray of shape (M, N), uint8 or uint16, optional
        The same film before denoising, to measure the label's ``kind`` on
        (default ``film``): the adhesive-paper test compares the film's grain
        with the patch's, and denoising removes most grain, after which a
        flashed patch next to dark anatomy can pass for a grain-free sticker.

    Returns
    -------
    LabelRegion or None
        ``box`` (row0, col0, row1, col1) in ``film`` pixels, half-open;
        ``rotation_k`` the quarter turns (``numpy.rot90``) that make text
        lines horizontal, judged from the box's aspect (0 or 1; the 180 degree
        ambiguity is settled by :func:`read_label`, which tries both);
        ``dark_text`` False for a dark patch with light text; ``kind``
        ``printed``, ``adhesive`` or ``handwritten``
        (:func:`pipeline.label_kind.classify_label`). None when no label-like
        region is found.

    Raises
    ------
    ValueError
        ``film`` (or ``kind_from``) is not 2-D uint8/uint16, their shapes differ,
        or ``dpi`` is not positive.
    """
    _check_film(film, dpi)
    f = _unit(film)
    scale = min(1.0, _WORK_DPI / dpi)
    small = cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1.0 else f
    wdpi = dpi * scale
    best = _best_candidate(small, 1.0 - small, wdpi, _STROKE_DIFF)
    if best is None or best[0] < _MIN_SCORE:
        # low contrast / thin strokes: min-pool (dark text) or max-pool (light text) first
        if scale < 1.0:
            se = cv2.getStructuringElement(cv2.MORPH_RECT, (int(np.ceil(1.0 / scale)),) * 2)
            lo = cv2.resize(cv2.erode(f, se), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            hi = 1.0 - cv2.resize(cv2.dilate(f, se), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        else:
            lo, hi = small, 1.0 - small
        best = _best_candidate(lo, hi, wdpi, _STROKE_DIFF_LOW)
        if best is None or best[0] < _MIN_SCORE_LOW:
            return None
    _, (r0, c0, r1, c1), dark_text = best
    inv = 1.0 / scale
    box = (int(r0 * inv), int(c0 * inv), int(np.ceil(r1 * inv)), int(np.ceil(c1 * inv)))
    box = (max(0, box[0]), max(0, box[1]), min(film.shape[0], box[2]), min(film.shape[1], box[3]))
    g_full = f if dark_text else 1.0 - f
    for _ in range(4):  # a box short of its patch by more than the 8 mm window: grow again
        new = _refine(g_full, box, dpi)
        if new == box:
            break
        box = new
    h, w = box[2] - box[0], box[3] - box[1]
    if kind_from is not None:
        _check_film(kind_from, dpi)
        if kind_from.shape != film.shape:
            raise ValueError("kind_from must have the film's shape")
        k = _unit(kind_from)
        g_full = k if dark_text else 1.0 - k
    return LabelRegion(box=box, rotation_k=1 if h > w else 0, dark_text=dark_text,
                       kind=classify_label(g_full, box, dpi))


# --------------------------------------------------------------------------------------------
# preparing
# --------------------------------------------------------------------------------------------
def _ink_mask(crop: np.ndarray) -> np.ndarray:
    """Dark-ink mask of a light-background crop in [0, 1] (Otsu)."""
    u8 = (crop * 255).astype(np.uint8)
    _, m = cv2.threshold(u8, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    return m


def estimate_skew(crop: np.ndarray, *, max_deg: float = 5.0, step_deg: float = 0.25) -> float:
    """Skew of the text lines in an upright label crop, degrees counter-clockwise.

    Parameters
    ----------
    crop : ndarray of shape (M, N), float32 in [0, 1]
        Light background, dark text, lines roughly horizontal.
    max_deg, step_deg : float
        Search range and step, degrees.

    Returns
    -------
    float
        The angle whose counter-rotation maximises the variance of the row
        profile of ink (projection-profile method).

    References
    ----------
    Postl, W. "Detection of linear oblique structures and skew scan in
    digitized documents", Proc. 8th ICPR, 1986 (projection profiles).
    """
    m = _ink_mask(crop).astype(np.float32)
    h, w = m.shape
    # work on a small copy: ~400 px wide is plenty for +-0.25 degree
    s = min(1.0, 400.0 / max(w, 1))
    if s < 1.0:
        m = cv2.resize(m, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        h, w = m.shape
    best_a, best_v = 0.0, -1.0
    for a in np.arange(-max_deg, max_deg + 1e-9, step_deg):
        rot = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), -float(a), 1.0)
        r = cv2.warpAffine(m, rot, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)
        v = float(np.var(r.sum(axis=1)))
        if v > best_v + 1e-9 or (abs(v - best_v) <= 1e-9 and abs(a) < abs(best_a)):
            best_a, best_v = float(a), v
    return best_a


def estimate_cap_height(crop: np.ndarray) -> float:
    """Median height (pixels) of character-sized ink components in an upright crop."""
    m = _ink_mask(crop)
    n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    hs = [int(stats[i, 3]) for i in range(1, n)
          if stats[i, 3] >= 4 and stats[i, 2] <= 3 * stats[i, 3] and stats[i, 3] < 0.5 * m.shape[0]]
    if len(hs) < 3:
        return float("nan")
    return float(np.percentile(hs, 60))


def _clear_border(crop: np.ndarray) -> np.ndarray:
    """Whiten dark blobs touching the crop's edge that are not characters (the patch's blurred
    edge, film showing past a tilted patch): thinner than a fifth of a capital across that
    edge, or longer than three capitals. Characters keep their pixels (the thinnest stroke of
    an ``I`` in the sans fonts is about a quarter of a capital). Returns a new array."""
    ink = (crop < 0.5).astype(np.uint8)
    n, lab, st, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    if n <= 1:
        return crop
    rows, cols = crop.shape
    x, y, w, h = st[:, 0], st[:, 1], st[:, 2], st[:, 3]
    edge = (x == 0) | (y == 0) | (x + w >= cols) | (y + h >= rows)
    horiz = (y == 0) | (y + h >= rows)
    vert = (x == 0) | (x + w >= cols)
    thin = (horiz & (h < 0.2 * TARGET_CAP_PX)) | (vert & (w < 0.2 * TARGET_CAP_PX))
    long_ = (w > 3 * TARGET_CAP_PX) | (h > 3 * TARGET_CAP_PX)
    drop = edge & (thin | long_)
    drop[0] = False
    if not drop.any():
        return crop
    m = cv2.dilate(drop[lab].astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    out = crop.copy()
    out[m] = 1.0
    return out


def prepare_label(film: np.ndarray, region: LabelRegion, *, rotation_k: int | None = None) -> np.ndarray:
    """Crop a label, make it upright, deskew, rescale and stretch it for OCR.

    Parameters
    ----------
    film : ndarray of shape (M, N), uint8 or uint16
        The straightened film (not modified).
    region : LabelRegion
        From :func:`locate_label`.
    rotation_k : int, optional
        Quarter turns overriding ``region.rotation_k``.

    Returns
    -------
    ndarray of shape (P, Q), uint8
        Dark text on a light background, capital letters about
        :data:`TARGET_CAP_PX` pixels high, with a light margin.
    """
    r0, c0, r1, c1 = region.box
    crop = _unit(film)[r0:r1, c0:c1]
    if not region.dark_text:
        crop = 1.0 - crop
    crop = np.ascontiguousarray(np.rot90(crop, region.rotation_k if rotation_k is None else rotation_k))
    # contrast stretch: background -> 1, ink -> 0
    lo, hi = np.percentile(crop, (2, 90))
    if hi > lo:
        # float32 throughout: OpenCV's warpAffine fills BORDER_REPLICATE borders of float64
        # images with garbage (seen with opencv-python 5.0), which read as a line of text
        crop = np.clip((crop - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0).astype(np.float32)
    cap = estimate_cap_height(crop)
    if np.isfinite(cap) and cap > 0:
        s = float(np.clip(TARGET_CAP_PX / cap, 0.25, 8.0))
        if abs(s - 1.0) > 0.05:
            crop = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC if s > 1 else cv2.INTER_AREA)
            crop = np.clip(crop, 0.0, 1.0)
    crop = _clear_border(crop)
    a = estimate_skew(crop)
    if abs(a) >= 0.25:
        h, w = crop.shape
        rot = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), -a, 1.0)
        crop = cv2.warpAffine(crop, rot, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    pad = TARGET_CAP_PX
    crop = cv2.copyMakeBorder(crop, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=1.0)
    return (np.clip(crop, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def _quality(fields: dict, lines: Sequence[OcrLine]) -> float:
    confs = [w.confidence for ln in lines for w in ln.words]
    return len(fields) + (float(np.mean(confs)) / 100.0 if confs else 0.0)


#: Fields whose value words are read again, one crop at a time (:func:`reread_tokens`).
REREAD_FIELDS = ("PatientID", "PatientBirthDate", "StudyDate", "AccessionNumber", "PatientSex")
#: Variants of each token crop read again: (capital height px, Gaussian blur sigma in
#: capital-height units). A light blur merges the dot of a dotted zero (DejaVu Sans Mono)
#: into its ring, which Tesseract then reads as 0 rather than 6 or 8.
REREAD_VARIANTS = ((30, 1.0 / 30), (40, 1.0 / 30))
#: Binarised re-readings of each token crop: thresholds as a fraction of the way from the ink
#: level (2nd percentile) to the background (90th percentile), at capital height
#: :data:`_UNDOT_CAP`. A dark and a light threshold thin and thicken the strokes, so a
#: misread that depends on stroke weight (8 read as 6 at 100 DPI) shows up as a split vote.
#: The dots of dotted zeros (:func:`_dot_holes`) are left out of both: the light threshold
#: thickens a dot into a bar across its ring, read 6 or 66 on every such zero (the Courier and
#: DejaVu Sans Mono sample labels: ``1970-08-01`` read ``1976-68-61``).
REREAD_THRESHOLDS = (0.35, 0.65)
#: Dark thresholds (fraction of the way from ink, 2nd percentile, to background, 90th percentile,
#: of the token crop) of the dot-free re-reading (:func:`_undot`); the one that sets the most
#: dots apart is used (ties: the lightest, which keeps strokes whole). At a mid (Otsu-like)
#: threshold the dot of DejaVu Sans Mono Bold's zero merges with its ring at 150 DPI; at
#: 0.2-0.3 it stands apart.
UNDOT_THRESHOLDS = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45)
#: Capital height (px) of the dot-free re-reading.
_UNDOT_CAP = 40
#: Re-readings of a one-letter value with its key (:data:`_KEYED_FIELDS`, ``SEX: M``), read on a
#: sheet of their own: (capital height px, shift px along both axes): the crop as prepared and
#: the same crop shifted by half a pixel (bicubic) -- the sub-pixel change a one-letter
#: confidence is fragile to (film_05's ``M``: 68.7 as scanned, 0 to 79 with the film shifted
#: by a quarter pixel). No blur, rescale or binarisation: on the bench labels (seed 4, 281 sex
#: values, 0 wrong letters in any variant) the 40 px blurred, 34 px grey and 40 px
#: dark-threshold crops each left the letter unread 2 to 5 times as often, and every unread
#: re-reading caps the confidence (:func:`_vote`).
LETTER_VARIANTS = ((30, 0.0), (30, 0.5))
#: Fields that settle the orientation: a reading with this many keyed fields at or above
#: :data:`_PLAUSIBLE_CONF` is not tried upside down.
_PLAUSIBLE_FIELDS = 3
_PLAUSIBLE_CONF = 60.0
#: Confidence ceiling of a field whose re-readings do not all agree with the vote
#: (below the default QC threshold of 50: the film goes to review); under a lower site
#: threshold, :data:`_SPLIT_VOTE_SHARE` of it (:func:`split_vote_cap`).
_SPLIT_VOTE_CONF = 40.0
_SPLIT_VOTE_SHARE = 0.8
#: QC's default threshold (``qc.min_field_confidence``): the label reader's default when no site
#: threshold is passed.
DEFAULT_MIN_FIELD_CONFIDENCE = QCConfig.model_fields["min_field_confidence"].default


def split_vote_cap(min_field_confidence: float) -> float:
    """Confidence ceiling of a disputed field: :data:`_SPLIT_VOTE_CONF`, or
    :data:`_SPLIT_VOTE_SHARE` of the QC threshold ``min_field_confidence`` (0-100) when that is
    lower, so that a disputed field stays under the site's threshold and is held for review
    (a threshold of 0 holds nothing: the site accepts every reading)."""
    return min(_SPLIT_VOTE_CONF, _SPLIT_VOTE_SHARE * min_field_confidence)


def _plausible(fields: dict[str, FieldValue]) -> bool:
    keyed = [kw for kw, fv in fields.items() if kw != "InstitutionName" and fv.confidence >= _PLAUSIBLE_CONF]
    return len(keyed) >= _PLAUSIBLE_FIELDS and ("PatientID" in keyed or "PatientName" in keyed)


def _undot(crop: np.ndarray, frac: float) -> tuple[np.ndarray, list[float]]:
    """Binarise a token crop darkly and erase ink lying inside a hole of a character.

    Parameters
    ----------
    crop : ndarray of shape (M, N), uint8
        Dark text on light (a word of the prepared label, rescaled).
    frac : float
        Threshold as a fraction of the way from the ink level (2nd percentile) to the
        background (90th percentile).

    Returns
    -------
    (ndarray of shape (M, N), uint8, list of float)
        The binary image (0 ink, 255 background) and the column (pixels) of the centre of
        each inner blob erased.

    Notes
    -----
    The only printed characters of a label with ink inside a hole are dotted zeros (the
    whitelist has no ``@`` or ``%``); without its dot such a zero is a plain ring, which
    Tesseract reads as 0 rather than 6 or 8. Holes and the blobs inside them are found as
    the third level of OpenCV's contour tree (``cv2.findContours``, ``RETR_TREE``: Suzuki &
    Abe, "Topological structural analysis of digitized binary images by border following",
    CVGIP 30(1), 1985).
    """
    lo, hi = np.percentile(crop, (2, 90))
    ink = (crop < lo + frac * max(hi - lo, 1.0)).astype(np.uint8)
    cnts, hier = cv2.findContours(ink, cv2.RETR_TREE, cv2.CHAIN_APPROX_NONE)
    out = np.where(ink > 0, 0, 255).astype(np.uint8)
    xs: list[float] = []
    for i, _hole in _ink_in_holes(hier):
        cv2.drawContours(out, cnts, i, 255, -1)
        cv2.drawContours(out, cnts, i, 255, 1)
        xs.append(float(cnts[i][:, 0, 0].mean()))
    return out, xs


def _ink_in_holes(hier: np.ndarray | None) -> list[tuple[int, int]]:
    """(contour, its hole) for every ink contour lying in a hole of top-level ink, from
    ``cv2.findContours``'s RETR_TREE hierarchy (the dot of a dotted zero)."""
    if hier is None:
        return []
    h = hier[0]
    return [(i, int(h[i][3])) for i in range(len(h))
            if h[i][3] >= 0 and h[h[i][3]][3] >= 0 and h[h[h[i][3]][3]][3] < 0]


def _dot_holes(crop: np.ndarray, frac: float) -> np.ndarray:
    """Mask of the inside of every hole that holds ink (the dot of a dotted zero), as
    :func:`_undot` finds them at threshold ``frac``; the ink bordering the hole is not in it.

    Returns
    -------
    ndarray of shape (M, N), bool
    """
    lo, hi = np.percentile(crop, (2, 90))
    ink = (crop < lo + frac * max(hi - lo, 1.0)).astype(np.uint8)
    cnts, hier = cv2.findContours(ink, cv2.RETR_TREE, cv2.CHAIN_APPROX_NONE)
    fill = np.zeros(crop.shape, np.uint8)
    border = np.zeros(crop.shape, np.uint8)
    for _i, hole in _ink_in_holes(hier):
        cv2.drawContours(fill, cnts, hole, 1, -1)
        cv2.drawContours(border, cnts, hole, 1, 1)  # a hole's border is the ring's inner edge
    return (fill > 0) & (border == 0)


def _token_sheet(img: np.ndarray, boxes: list[tuple[int, int, int, int]], letters: Collection[int] = ()):
    """Stack every variant of every token crop of ``img`` on one white sheet, one per row,
    well apart: the :data:`REREAD_VARIANTS`, the :data:`REREAD_THRESHOLDS` binarisations
    (without the dots of dotted zeros, :func:`_dot_holes`, when the token has some),
    then the dot-free variant (:func:`_undot`) when the token has a dotted zero. The crops
    whose index is in ``letters`` (a key and a one-letter value) get the
    :data:`LETTER_VARIANTS` instead, and no dot handling. Returns
    (sheet uint8, rows: list of (token index, row0, row1, dots, scale)); ``dots`` is None but
    for the dot-free row: (the erased dots' columns, first and last ink column), in its pixels;
    ``scale`` the row's size over the crop's (its crop's column ``c`` is the sheet's column
    ``_SHEET_GAP + scale * c``)."""
    gap = _SHEET_GAP
    pieces, rows = [], []
    y = gap

    def put(t, v, cap, dots):
        nonlocal y
        pieces.append((y, v))
        rows.append((t, y, y + v.shape[0], dots, cap / TARGET_CAP_PX))
        y += v.shape[0] + gap + cap // 2

    for t, (r0, c0, r1, c1) in enumerate(boxes):
        crop = img[r0:r1, c0:c1].astype(np.float32)
        if t in letters:
            for cap, shift in LETTER_VARIANTS:
                s = cap / TARGET_CAP_PX
                size = (int(round(crop.shape[1] * s)), int(round(crop.shape[0] * s)))
                m = np.float32([[s, 0, shift], [0, s, shift]])
                v = cv2.warpAffine(crop, m, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
                put(t, np.clip(v, 0, 255).astype(np.uint8), cap, None)
            continue
        for cap, blur in REREAD_VARIANTS:
            s = cap / TARGET_CAP_PX
            v = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC)
            if blur > 0:
                v = cv2.GaussianBlur(v, (0, 0), blur * cap)
            put(t, np.clip(v, 0, 255).astype(np.uint8), cap, None)
        s = _UNDOT_CAP / TARGET_CAP_PX
        big = np.clip(cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)
        lo, hi = np.percentile(big, (2, 90))
        n, neg = max(((len(_undot(big, frac)[1]), -i) for i, frac in enumerate(UNDOT_THRESHOLDS)), key=lambda e: e)
        # the dots of dotted zeros, where found, are kept out of the binarised variants: the light
        # threshold thickens a dot into a bar across the ring (read 6, 8 or 66), which is the dot's
        # misread, not the stroke-weight doubt these variants are there to show
        holes = _dot_holes(big, UNDOT_THRESHOLDS[-neg]) if n else None
        for frac in REREAD_THRESHOLDS:
            v = np.where(big < lo + frac * max(hi - lo, 1.0), 0, 255).astype(np.uint8)
            if holes is not None:
                v[holes] = 255
            put(t, v, _UNDOT_CAP, None)
        if n:
            v, xs = _undot(big, UNDOT_THRESHOLDS[-neg])
            cols = np.flatnonzero((v == 0).any(axis=0))
            put(t, v, _UNDOT_CAP, (tuple(xs), float(cols[0]), float(cols[-1] + 1)))
    width = max(v.shape[1] for _, v in pieces) + 2 * gap
    sheet = np.full((y, width), 255, np.uint8)
    for yy, v in pieces:
        sheet[yy:yy + v.shape[0], gap:gap + v.shape[1]] = v
    return sheet, rows


#: Left margin of the re-read sheet, pixels (:func:`_token_sheet`).
_SHEET_GAP = 24


#: Marks that are never part of an identifier or a date: one read at either end of such a
#: value's words is a speck or scratch beside it, whitened in the re-read crops.
_STRAY_MARKS = frozenset("'\"`")


def _erase_stray_marks(img: np.ndarray, words: Sequence[BoxedWord]) -> np.ndarray:
    """``img``, or a copy of it with the boxes of the :data:`_STRAY_MARKS` symbols that lead
    or trail ``words`` (a value's words) whitened, the boxes of their other symbols kept.

    A speck next to a date is read as an apostrophe glued to it (``2019-04-02'``), which
    Tesseract scores near 0 as a word however sure it is of the digits; it is erased so
    the re-readings read the value alone. Needs the words' symbols (the tesserocr engine);
    without them ``img`` is returned as it is.
    """
    syms = [sym for w in words for sym in w.symbols]
    a, b = 0, len(syms)
    while a < b and syms[a][0] in _STRAY_MARKS:
        a += 1
    while b > a and syms[b - 1][0] in _STRAY_MARKS:
        b -= 1
    if a == b or (a == 0 and b == len(syms)):  # nothing but marks, or no stray mark
        return img
    out = img.copy()
    for _, (r0, c0, r1, c1) in syms[:a] + syms[b:]:
        out[r0:r1, c0:c1] = 255
    for _, (r0, c0, r1, c1) in syms[a:b]:
        out[r0:r1, c0:c1] = img[r0:r1, c0:c1]
    return out


#: Fields whose value is one word: a re-read crop of one is joined into a single word (for the
#: sex, ``M`` and a speck read ``M'`` then fail to parse instead of counting as ``M``).
_ONE_WORD_FIELDS = ("PatientID", "AccessionNumber", "PatientSex")
#: Fields re-read with their key in the crop (``SEX: M``), the value being the words right of the
#: gap between key and value: Tesseract's LSTM leaves a lone capital letter unread or reads it as
#: punctuation often (bench labels, seed 4, 39 sex values x 4 re-read variants: 26-35 of 156
#: readings, in a sheet or alone with ``--psm 10``), and reads it as in the label with its key
#: beside it (8 of 156). Re-read only when the first reading gave a value below the QC threshold
#: (``qc.min_field_confidence``) or :data:`_KEYED_DOUBT_BELOW` (a sex the label reading missed
#: stays missing, one read confidently stays as read), on a sheet of their own (:data:`LETTER_VARIANTS`; the identifiers'
#: and dates' sheet is left as it was: Tesseract's reading of a sheet depends on all its rows),
#: and voted strictly (:func:`_vote`): any reading that differs, the first included, or an
#: unread one keeps the field under the QC threshold. One-letter confidences swing by tens of
#: points with sub-pixel changes (film_05's ``M``: 0.0 to 79.4 over 11 shifts and +-0.02 degree
#: turns); agreeing re-readings settle at ~90 (71.3 to 92.7 there).
_KEYED_FIELDS = ("PatientSex",)
#: A keyed field read with less confidence than this is re-read even when the site's QC threshold
#: is lower (it is re-read below that threshold too, when higher): a reading this weak is doubtful
#: whatever the site accepts, and the re-read either confirms it (three agreeing readings) or
#: finds the dispute and holds the film (capped under the threshold); it never passes a letter the
#: re-readings contradict.
_KEYED_DOUBT_BELOW = 50.0
#: What a dotted zero is misread as when its dot is seen as a stroke.
_DOTTED_ZERO_MISREADS = frozenset("689")


def _explained_by_dots(value: str, undotted: str, at: frozenset[int] | None = None) -> bool:
    """``value`` differs from the dot-free reading only by 6/8/9 where that reads 0 (and,
    when ``at`` is given, only at those character positions: where a dot was erased)."""
    return len(value) == len(undotted) and value != undotted and all(
        a == b or (b == "0" and a in _DOTTED_ZERO_MISREADS and (at is None or i in at))
        for i, (a, b) in enumerate(zip(value, undotted)))


def _dot_positions(raw: str, dots) -> frozenset[int]:
    """Character positions in ``raw`` (the dot-free reading of a token) of the erased dots,
    assuming a fixed pitch across the token's ink (dotted zeros are a monospace feature)."""
    xs, x0, x1 = dots
    n = len(raw)
    if n == 0 or x1 <= x0:
        return frozenset()
    pitch = (x1 - x0) / n
    return frozenset(int(np.clip((x - x0) // pitch, 0, n - 1)) for x in xs)


def _vote(first: FieldValue | None, rereads: Sequence[FieldValue | None],
          undotted: FieldValue | None = None, dots: frozenset[int] | None = None,
          *, strict: bool = False, cap: float = _SPLIT_VOTE_CONF) -> FieldValue | None:
    """Settle a field from its first reading and its re-readings.

    The value most readings agree on wins (ties: higher summed confidence). Its confidence is
    the median of the agreeing readings' confidences scaled by the fraction agreeing (a
    failed reading counts against), and at most ``cap`` (:func:`split_vote_cap` of the QC
    threshold: under it) unless every re-reading gave that value: the re-readings are the better
    readers of dotted zeros, so the first reading alone may be outvoted, but any doubt among
    them sends the film to review instead of guessing.

    ``undotted`` is the reading of the token with the dots of its dotted zeros erased
    (:func:`_undot`; given only when such dots were found), ``dots`` the positions in its
    raw text where a dot was erased. It is one more re-reading, and a reading that differs
    from it only by 6, 8 or 9 where it reads 0 -- the misread the dot causes -- counts as
    agreeing with it when another reading gave the dot-free value too, or when every such
    difference sits where a dot was erased (its raw text compared). Otherwise it explains
    nothing (an 8 whose waist opened at the dark threshold would read 0).

    ``strict``: the first reading must agree too (else the confidence is capped as well): for
    fields whose re-readings are no better readers than the first, only steadier ones (the sex).
    """
    if undotted is not None:
        seconded = any(f is not None and f.value == undotted.value for f in (first, *rereads))

        def fix(f: FieldValue | None) -> FieldValue | None:
            if f is None:
                return f
            if (seconded and _explained_by_dots(f.value, undotted.value)) or (
                    dots and _explained_by_dots(f.raw, undotted.raw, dots)):
                return FieldValue(undotted.value, f.confidence, f.raw)
            return f

        first, rereads = fix(first), [fix(r) for r in rereads]
    if undotted is not None:
        rereads = [*rereads, undotted]
    readings = [first, *rereads]
    tally: dict[str, list[FieldValue]] = {}
    for fv in readings:
        if fv is not None:
            tally.setdefault(fv.value, []).append(fv)
    if not tally:
        return None
    value, votes = max(tally.items(), key=lambda kv: (len(kv[1]), sum(f.confidence for f in kv[1])))
    conf = float(np.median([f.confidence for f in votes])) * len(votes) / len(readings)
    conf = round(conf, 1)
    if not all(r is not None and r.value == value for r in (*rereads, *((first,) if strict else ()))):
        conf = min(conf, cap)  # after the rounding: the cap stays under the threshold it is made for
    return FieldValue(value, conf, votes[0].raw)


def reread_tokens(
    img: np.ndarray,
    boxed: Sequence[Sequence[BoxedWord]],
    fields: dict[str, FieldValue],
    *,
    config: OCRConfig,
    min_field_confidence: float = DEFAULT_MIN_FIELD_CONFIDENCE,
) -> dict[str, FieldValue]:
    """Read the identifier, date and sex words of a label again, one crop at a time, and vote.

    Parameters
    ----------
    img : ndarray of shape (P, Q), uint8
        The prepared label (:func:`prepare_label`) that ``boxed`` was read from.
    boxed : sequence of lines of BoxedWord
        :func:`pipeline.ocr.ocr_boxes` of ``img``.
    fields : dict
        :func:`pipeline.label_fields.parse_label` of those lines.
    config : OCRConfig
    min_field_confidence : float
        QC's threshold (``qc.min_field_confidence``, 0-100): a disputed field's confidence is
        capped under it (:func:`split_vote_cap`), and the sex is re-read below it (and below
        :data:`_KEYED_DOUBT_BELOW` whatever the threshold).

    Returns
    -------
    dict
        ``fields`` with each of :data:`REREAD_FIELDS` whose key was found replaced by the
        vote over the first reading and the :data:`REREAD_VARIANTS` of its value crop
        (rescaled, lightly blurred, read in one Tesseract run as a sheet of single
        lines; quote marks read at the ends of its words are whitened first,
        :func:`_erase_stray_marks`). A value the first reading missed may be found; when the readings
        disagree the confidence drops (see :func:`_vote`), so QC sends the film to review
        instead of trusting a guess. The sex (:data:`_KEYED_FIELDS`), when the first reading
        gave one below ``min_field_confidence`` or :data:`_KEYED_DOUBT_BELOW`, is re-read with its key in the crop, in the
        :data:`LETTER_VARIANTS`, in a Tesseract run of its own, and any differing or unread
        reading caps its confidence.
    """
    lines = [OcrLine(tuple(b.word for b in ln)) for ln in boxed]
    spans = key_value_spans(lines, config=config)
    todo = [kw for kw in REREAD_FIELDS if kw in spans
            and (kw not in _KEYED_FIELDS or (kw in fields and fields[kw].confidence < max(min_field_confidence, _KEYED_DOUBT_BELOW)))]
    if not todo:
        return fields
    mh, mw = int(0.35 * TARGET_CAP_PX), int(0.4 * TARGET_CAP_PX)
    boxes = []
    splits: list[float | None] = []  # keyed fields: the crop column between key and value
    for kw in todo:  # stray marks of the other fields' values: the sheet they are read on
        if kw not in _KEYED_FIELDS:
            li, _, a, b = spans[kw]
            img = _erase_stray_marks(img, boxed[li][a:b])
    kimg = img  # ... and those of the keyed fields too: the keyed fields' sheet
    for kw in todo:
        li, k, a, b = spans[kw]
        if kw in _KEYED_FIELDS:
            kimg = _erase_stray_marks(kimg, boxed[li][a:b])
        with_key = kw in _KEYED_FIELDS and k < a  # (a key glued to its value, SEX:M, is one word)
        bs = [bw.box for bw in boxed[li][k if with_key else a:b]]
        r0, c0 = min(x[0] for x in bs) - mh, min(x[1] for x in bs) - mw
        r1, c1 = max(x[2] for x in bs) + mh, max(x[3] for x in bs) + mw
        boxes.append((max(0, r0), max(0, c0), min(img.shape[0], r1), min(img.shape[1], c1)))
        splits.append(0.5 * (boxed[li][a - 1].box[3] + boxed[li][a].box[1]) - boxes[-1][1] if with_key else None)
    rows: list[tuple] = []
    got: dict[int, list[tuple[float, OcrWord]]] = {}
    keyed_t = [t for t, kw in enumerate(todo) if kw in _KEYED_FIELDS]
    # the keyed crops are read in a Tesseract run of their own: Tesseract's page segmentation of
    # a sheet depends on all of its rows, so the identifiers and dates are read on the very same
    # sheet whether or not the label has a sex
    for group, gimg in (([t for t in range(len(todo)) if t not in keyed_t], img), (keyed_t, kimg)):
        if not group:
            continue
        sheet, grows = _token_sheet(gimg, [boxes[t] for t in group],
                                    range(len(group)) if group is keyed_t else ())
        grows = [(group[tt], y0, y1, dots, scale) for tt, y0, y1, dots, scale in grows]
        base = len(rows)
        rows += grows
        for ln in ocr_boxes(sheet, config=config, psm=6, whitelist=LABEL_WHITELIST):
            for bw in ln:
                yc = 0.5 * (bw.box[0] + bw.box[2])
                for j, (t, y0, y1, _, scale) in enumerate(grows):
                    if y0 - 4 <= yc <= y1 + 4:
                        # a keyed crop's key is context, not value: words centred left of the gap go
                        if splits[t] is None or 0.5 * (bw.box[1] + bw.box[3]) > _SHEET_GAP + scale * splits[t]:
                            got.setdefault(base + j, []).append((bw.box[1], bw.word))
                        break
    out = dict(fields)
    for t, kw in enumerate(todo):
        key = OcrWord(KEYS[kw][0] + ":", 100.0)
        readings: list[FieldValue | None] = []
        undotted: FieldValue | None = None
        at: frozenset[int] | None = None
        for i, (tt, _, _, dots, _) in enumerate(rows):
            if tt != t:
                continue
            words = tuple(w for _, w in sorted(got.get(i, []), key=lambda e: e[0]))
            if kw in _ONE_WORD_FIELDS and len(words) > 1:
                # the crop holds one identifier: a gap Tesseract saw inside it (wide letter
                # spacing at low DPI) is not a word break
                words = (OcrWord("".join(w.text for w in words), min(w.confidence for w in words)),)
            # a keyed crop whose key was glued to the value (SEX:M) is parsed as read, key and all
            line = words if kw in _KEYED_FIELDS and splits[t] is None else (key, *words)
            fv = parse_label([OcrLine(line)], config=config).get(kw) if words else None
            if dots:
                undotted = fv
                at = _dot_positions(fv.raw, dots) if fv is not None else None
            else:
                readings.append(fv)
        fv = _vote(fields.get(kw), readings, undotted, at, strict=kw in _KEYED_FIELDS,
                   cap=split_vote_cap(min_field_confidence))
        if fv is None:
            out.pop(kw, None)
        else:
            out[kw] = fv
    return out


def read_label(film: np.ndarray, *, dpi: float, config: OCRConfig,
               kind_from: np.ndarray | None = None,
               min_field_confidence: float = DEFAULT_MIN_FIELD_CONFIDENCE) -> LabelReading:
    """Locate, prepare, OCR and parse the film's ID label.

    Parameters
    ----------
    film : ndarray of shape (M, N), uint8 or uint16
        Straightened, cropped MONOCHROME2 film. Not modified.
    dpi : float
        Scan resolution, dots per inch.
    config : OCRConfig
    kind_from : ndarray, optional
        The film before denoising, for the label's ``kind`` (see :func:`locate_label`).
    min_field_confidence : float
        The site's QC threshold (``qc.min_field_confidence``, 0-100), see :func:`reread_tokens`.

    Returns
    -------
    LabelReading
        ``fields`` by DICOM keyword (see :func:`pipeline.label_fields.parse_label`),
        ``lines`` the OCR text lines, ``region`` the label found (its
        ``rotation_k`` the orientation that read best). With no label found:
        empty fields and ``region`` None. Nothing readable is not an error.

    Raises
    ------
    ToolMissingError
        Tesseract is not installed.
    OCRError
        Tesseract failed or timed out.
    ValueError
        ``film`` is not 2-D uint8/uint16, or ``dpi`` is not positive.

    Notes
    -----
    The label is read in the orientation suggested by its aspect and, unless
    that reading is plausible (:data:`_PLAUSIBLE_FIELDS` keyed fields, among them
    the ID or the name, at confidence :data:`_PLAUSIBLE_CONF` or more), also turned
    by 180 degrees; the reading with more fields (then higher mean confidence)
    wins. Its identifier and date words are then read again (:func:`reread_tokens`):
    two or three Tesseract runs per label in all, one more when the sex was read with a
    confidence under the QC threshold or :data:`_KEYED_DOUBT_BELOW`.
    """
    region = locate_label(film, dpi=dpi, kind_from=kind_from)
    if region is None:
        return LabelReading(fields={})
    best = None
    for k in (region.rotation_k, (region.rotation_k + 2) % 4):
        img = prepare_label(film, region, rotation_k=k)
        boxed = ocr_boxes(img, config=config, psm=6, whitelist=LABEL_WHITELIST)
        lines = [OcrLine(tuple(b.word for b in ln)) for ln in boxed]
        fields = parse_label(lines, config=config)
        q = _quality(fields, lines)
        if best is None or q > best[0]:
            best = (q, k, img, boxed, lines, fields)
        if _plausible(fields):
            break
    _, k, img, boxed, lines, fields = best
    fields = reread_tokens(img, boxed, fields, config=config, min_field_confidence=min_field_confidence)
    reg = LabelRegion(box=region.box, rotation_k=k, dark_text=region.dark_text, kind=region.kind)
    return LabelReading(fields=fields, lines=tuple(ln.text for ln in lines), region=reg)


def read_laterality_marker(
    film: np.ndarray,
    *,
    dpi: float,
    exclude_box: tuple[int, int, int, int] | None = None,
    config: OCRConfig | None = None,
) -> str:
    """The L/R lead marker's letter when read confidently; a thin wrapper of
    :func:`pipeline.marker.read_marker` (which also gives the box, turn and mirror flag).

    Parameters
    ----------
    film : ndarray of shape (M, N), uint8 or uint16
        MONOCHROME2 film (lead markers are bright).
    dpi : float
        Scan resolution, dots per inch (markers are 4..35 mm letters).
    exclude_box : tuple (row0, col0, row1, col1), optional
        Region to ignore, normally the label box.
    config : OCRConfig, optional
        Unused (the marker is read by template matching, not Tesseract); kept for callers.

    Returns
    -------
    str
        ``'L'``, ``'R'``, or ``''`` when no marker is read with confidence, it reads
        mirrored, or both letters are read.

    Raises
    ------
    ValueError
        If ``film`` is not a 2-D uint8/uint16 array or ``dpi`` is not positive.
    """
    from pipeline.marker import read_marker

    reading = read_marker(film, dpi=dpi, exclude_box=exclude_box)
    return reading.letter if reading.confident else ""
