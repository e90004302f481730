"""Read the L/R lead marker exposed on a film, and the quarter turn in which it reads upright.

A lead marker is a lead letter ``L`` or ``R`` (sometimes framed or circled, next to tech
initials) laid on the cassette. Lead stops the X-rays, so on a MONOCHROME2 film it is a
bright, flat, letter-shaped blob 5..30 mm high, brighter than what surrounds it.

Steps (plain functions, no OCR engine: one Tesseract call per candidate and turn would
cost more than this whole reading; the templates also see mirror images, which Tesseract
does not report):

1. :func:`find_candidates` -- at a working resolution of :data:`WORK_DPI`, a white top-hat
   (image minus its grey opening by a :data:`TOPHAT_MM` square, Soille 2003, ch. 4.4) keeps
   bright structures narrower than a marker's strokes are long; pixels that are both
   bright on the film and well above their surroundings (at two contrast levels, see
   :data:`TOPHAT_LEVELS`) are grouped into 8-connected components, kept when letter-sized (physical size from the DPI), compact, not
   filled (a letter covers 15..80 % of its box) and not on the film's rim (:data:`EDGE_MM`).
2. :func:`classify_glyph` -- each candidate is cut from the full-resolution film,
   binarised 60 % (then, if need be, 80 %) of the way from its surroundings to its own
   plateau, its two largest components each normalised to a
   :data:`GLYPH_PX` square (aspect ratio kept) and compared by normalised correlation
   with a bank of rendered characters (letters, digits; several sans fonts) in eight
   directions (45-degree steps: markers are often laid diagonally), straight and
   mirrored. Only a candidate whose nearest template is an ``L`` or ``R`` (not an ``E``,
   ``P``, ``1``...) is a marker; the direction and the mirror flag of that template are
   the reading, and a quarter-turn direction is an orientation cue (a diagonal one is not).
3. :func:`read_marker` -- the best candidate wins; confidence falls with a weak match or a
   close runner-up of another letter or mirror image; disagreeing confident candidates
   (an ``L`` and an ``R``) give no letter, the same letter at two turns gives no turn.

A mirrored letter (marker laid back to front, or film scanned from its back) is reported
with ``mirrored=True`` and is never confident: its side cannot be trusted.

The film is never modified.
"""

from __future__ import annotations

import dataclasses
import functools
import string
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "MarkerReading",
    "read_marker",
    "find_candidates",
    "classify_glyph",
    "glyph_vector",
    "MIN_CONFIDENCE",
    "WORK_DPI",
]

#: Working resolution of the candidate search, dots per inch.
WORK_DPI = 60.0
#: Physical size of a marker letter, mm (longer side of its box).
LETTER_MM = (4.0, 35.0)
#: Largest candidate blob, mm: a letter with its frame or holder.
BLOB_MM = 55.0
#: Blobs closer than this to the film's edge (its rim, a cut-off letter) are not candidates, mm.
EDGE_MM = 3.0
#: Margin round the excluded label box, mm; a candidate reaching into it is dropped.
EXCLUDE_MARGIN_MM = 2.0
#: Square of the grey opening whose residue (white top-hat) keeps marker strokes, mm.
TOPHAT_MM = 12.0
#: Top-hat levels (fraction of the film's range) at which candidate blobs are cut.
TOPHAT_LEVELS = (0.12, 0.22)
#: Side of the normalised glyph compared with the templates, pixels.
GLYPH_PX = 24
#: Confidence (0..100) from which a reading is used for laterality and orientation.
MIN_CONFIDENCE = 60.0
#: Confidence below which a candidate is not reported at all (noise, not a weak marker).
REPORT_CONFIDENCE = 30.0
#: At most this many candidates (brightest contrast first) are classified.
MAX_CANDIDATES = 24
#: Fonts of the template bank (Debian fonts-urw-base35, fonts-dejavu-core, fonts-liberation).
TEMPLATE_FONTS = (
    "/usr/share/fonts/opentype/urw-base35/NimbusSans-Bold.otf",
    "/usr/share/fonts/opentype/urw-base35/NimbusSans-Regular.otf",
    "/usr/share/fonts/opentype/urw-base35/NimbusSans-Italic.otf",
    "/usr/share/fonts/opentype/urw-base35/NimbusSansNarrow-Bold.otf",
    "/usr/share/fonts/opentype/urw-base35/URWGothic-Demi.otf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-BoldOblique.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
)
#: Characters of the bank: the two marker letters and the distractors they must beat (lower-case
#: r, p, q left out: blurred, they are an L or an R, and markers are capitals).
TEMPLATE_CHARS = string.ascii_uppercase + "abdehkty" + string.digits


@dataclasses.dataclass(frozen=True)
class MarkerReading:
    """What the lead marker on a film says.

    Attributes
    ----------
    letter : str
        ``'L'``, ``'R'``, or ``''`` when no marker letter was found (or an ``L`` and an ``R``).
    confidence : float
        0..100; a reading is used only from :data:`MIN_CONFIDENCE` (see :attr:`confident`).
    box : tuple (row0, col0, row1, col1) or None
        The letter's box in the film, pixels, half-open.
    rotation_k : int or None
        Quarter turns (counter-clockwise, as ``numpy.rot90``) that make the letter upright;
        None without a letter, or when it lies diagonally (no orientation cue).
    mirrored : bool
        True when the letter reads mirrored (never confident).
    score : float
        Normalised correlation with the best template, -1..1.
    """

    letter: str = ""
    confidence: float = 0.0
    box: tuple[int, int, int, int] | None = None
    rotation_k: int | None = None
    mirrored: bool = False
    score: float = 0.0

    @property
    def confident(self) -> bool:
        """True for a non-mirrored ``L``/``R`` read with at least :data:`MIN_CONFIDENCE`."""
        return bool(self.letter) and not self.mirrored and self.confidence >= MIN_CONFIDENCE

    def as_record(self) -> dict:
        """JSON-ready dict for the per-film record."""
        return {"letter": self.letter, "confidence": round(self.confidence, 1),
                "box": list(self.box) if self.box else None, "rotation_k": self.rotation_k,
                "mirrored": self.mirrored, "confident": self.confident}


def _range(small: np.ndarray, dtype: np.dtype) -> tuple[float, float]:
    """Robust (black, white) levels of a film from its reduced copy."""
    if dtype == np.uint8:
        return 0.0, 255.0
    lo, hi = np.percentile(small[::2, ::2], (0.5, 99.9))
    return float(lo), max(float(hi), float(lo) + 1.0)


def glyph_vector(mask: np.ndarray) -> np.ndarray | None:
    """Normalise a binary glyph to a zero-mean, unit-norm vector of ``GLYPH_PX**2`` floats.

    Parameters
    ----------
    mask : ndarray of shape (M, N), bool or uint8
        The glyph's pixels (nonzero = ink).

    Returns
    -------
    ndarray of shape (GLYPH_PX * GLYPH_PX,), float32, or None when the mask is empty.
        The glyph's bounding box, scaled so its longer side fills the square, centred;
        aspect ratio kept (a wide turned ``L`` differs from a tall mirrored one).
    """
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    g = (mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1] > 0).astype(np.float32)
    h, w = g.shape
    s = (GLYPH_PX - 2) / max(h, w)
    nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
    g = cv2.resize(g, (nw, nh), interpolation=cv2.INTER_AREA)
    out = np.zeros((GLYPH_PX, GLYPH_PX), np.float32)
    r0, c0 = (GLYPH_PX - nh) // 2, (GLYPH_PX - nw) // 2
    out[r0:r0 + nh, c0:c0 + nw] = g
    v = out.ravel() - out.mean()
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else None


def _turned(glyph: np.ndarray, eighths: int) -> np.ndarray:
    """``glyph`` (bool) turned clockwise by ``45 * eighths`` degrees (exact for quarter turns)."""
    if eighths % 2 == 0:
        return np.rot90(glyph, -(eighths // 2))
    g = glyph.astype(np.float32)
    side = int(np.ceil(np.hypot(*g.shape))) + 2
    pad = np.zeros((side, side), np.float32)
    r0, c0 = (side - g.shape[0]) // 2, (side - g.shape[1]) // 2
    pad[r0:r0 + g.shape[0], c0:c0 + g.shape[1]] = g
    m = cv2.getRotationMatrix2D(((side - 1) / 2.0, (side - 1) / 2.0), -45.0 * eighths, 1.0)
    return cv2.warpAffine(pad, m, (side, side), flags=cv2.INTER_LINEAR) > 0.5


@functools.lru_cache(maxsize=1)
def _bank() -> tuple[np.ndarray, tuple[tuple[str, int, bool], ...]]:
    """(templates of shape (T, GLYPH_PX**2) float32, labels (char, eighths, mirrored)).

    ``eighths``: the template is the upright character (mirrored first when ``mirrored``)
    turned clockwise by ``45 * eighths`` degrees; for an even value it reads upright after
    ``eighths // 2`` counter-clockwise quarter turns (``numpy.rot90``).
    """
    vecs, labels = [], []
    fonts = [p for p in TEMPLATE_FONTS if Path(p).is_file()]
    if not fonts:
        raise FileNotFoundError("no template font found; install Debian's fonts-dejavu-core")
    for path in fonts:
        fnt = ImageFont.truetype(path, 64)
        for ch in TEMPLATE_CHARS:
            img = Image.new("L", (110, 110), 0)
            ImageDraw.Draw(img).text((20, 10), ch, fill=255, font=fnt)
            glyph = np.asarray(img) > 127
            for mirrored in (False, True):
                g0 = np.fliplr(glyph) if mirrored else glyph
                for e in range(8):
                    v = glyph_vector(_turned(g0, e))
                    if v is not None:
                        vecs.append(v)
                        labels.append((ch, e, mirrored))
    # fonts that draw a character alike add nothing but cost: keep one of near-duplicates
    bank = np.stack(vecs)
    keep: dict[tuple[str, int, bool], list[int]] = {}
    for i, lab in enumerate(labels):
        kept = keep.setdefault(lab, [])
        if not kept or float(np.max(bank[kept] @ bank[i])) < 0.97:
            kept.append(i)
    idx = sorted(i for v in keep.values() for i in v)
    return np.ascontiguousarray(bank[idx]), tuple(labels[i] for i in idx)


def _coarse(v: np.ndarray) -> np.ndarray:
    """Glyph vectors (..., GLYPH_PX**2) pooled 3x3 to (..., (GLYPH_PX // 3)**2), zero mean, unit norm."""
    n = GLYPH_PX // 3
    c = v.reshape(v.shape[:-1] + (n, 3, n, 3)).mean(axis=(-3, -1)).reshape(v.shape[:-1] + (n * n,))
    c = c - c.mean(axis=-1, keepdims=True)
    return (c / np.maximum(np.linalg.norm(c, axis=-1, keepdims=True), 1e-9)).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _coarse_bank() -> np.ndarray:
    return np.ascontiguousarray(_coarse(_bank()[0]))


#: Templates kept by the coarse (8x8) comparison for the full 24x24 one.
_SHORTLIST = 256


def classify_glyph(mask: np.ndarray) -> tuple[str, int | None, bool, float, float]:
    """Nearest template of a binary glyph.

    Parameters
    ----------
    mask : ndarray of shape (M, N), bool or uint8
        The glyph (nonzero = ink), as it lies on the film.

    Returns
    -------
    char : str
        Best-matching character ('' for an empty mask).
    rotation_k : int or None
        Quarter turns (``numpy.rot90``) that make it upright; None when it lies
        diagonally (nearest to a 45-degree template) or the neighbouring turn of the same
        character scores within 0.02.
    mirrored : bool
    score : float
        Normalised correlation with the best template, -1..1.
    margin : float
        ``score`` minus the best score of a template of another character or mirror flag.
    """
    v = glyph_vector(mask)
    if v is None:
        return "", None, False, 0.0, 0.0
    bank, all_labels = _bank()
    # coarse to fine: an 8x8 comparison with every template shortlists the full one
    # (einsum, not BLAS: BLAS's thread start-up costs more than these small products)
    coarse = np.einsum("ij,j->i", _coarse_bank(), _coarse(v))
    short = np.argpartition(coarse, -_SHORTLIST)[-_SHORTLIST:]
    scores = np.einsum("ij,j->i", bank[short], v)
    labels = [all_labels[i] for i in short]
    order = np.argsort(scores)[::-1]
    ch, e, mirrored = labels[order[0]]
    best = float(scores[order[0]])
    rival = next((float(scores[i]) for i in order[1:] if (labels[i][0], labels[i][2]) != (ch, mirrored)), -1.0)
    other_turn = next((float(scores[i]) for i in order[1:] if (labels[i][0], labels[i][2]) == (ch, mirrored)
                       and labels[i][1] != e), -1.0)
    k = e // 2 if e % 2 == 0 and best - other_turn >= 0.02 else None
    return ch, k, mirrored, best, best - rival


def find_candidates(
    film: np.ndarray, *, dpi: float, exclude_box: tuple[int, int, int, int] | None = None
) -> list[tuple[tuple[int, int, int, int], float]]:
    """Bright, letter-sized, locally contrasting blobs that may be a lead marker.

    Parameters
    ----------
    film : ndarray of shape (M, N), uint8 or uint16
        MONOCHROME2 film, straightened and cropped.
    dpi : float
        Scan resolution, dots per inch.
    exclude_box : tuple (row0, col0, row1, col1), optional
        Region to ignore in film pixels (normally the ID label).

    Returns
    -------
    list of (box, contrast)
        ``box`` (row0, col0, row1, col1) in film pixels, half-open; ``contrast`` the mean
        top-hat residue of the blob (0..1 of the film's range); strongest first, at most
        :data:`MAX_CANDIDATES`.
    """
    scale = min(1.0, WORK_DPI / dpi)
    small = cv2.resize(film, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1.0 else film
    lo_, hi_ = _range(small, film.dtype)
    small = np.clip((small.astype(np.float32) - lo_) / (hi_ - lo_), 0.0, 1.0)
    px_mm = dpi * scale / 25.4
    k = max(3, int(round(TOPHAT_MM * px_mm)) | 1)
    tophat = cv2.morphologyEx(small, cv2.MORPH_TOPHAT, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    bright = float(np.percentile(small, 99.0))
    keep = np.ones(small.shape, bool)
    zone = None
    if exclude_box is not None:
        # the label and a margin round it; a blob that reaches this zone is cut by it (the corner
        # of a bright label patch next to anatomy can pass for an L), so it is not a letter
        m = max(2, int(round(EXCLUDE_MARGIN_MM * px_mm)))
        r0, c0, r1, c1 = (int(v * scale) for v in exclude_box)
        zone = (max(0, r0 - m), max(0, c0 - m), r1 + m + 1, c1 + m + 1)
        keep[zone[0]:zone[2], zone[1]:zone[3]] = False
    lo, hi = LETTER_MM[0] * px_mm, BLOB_MM * px_mm
    edge = max(1, int(round(EDGE_MM * px_mm)))
    out: list[tuple[tuple[int, int, int, int], float]] = []
    # a second, higher contrast level separates a letter from bright bone it touches at the first
    for level in TOPHAT_LEVELS:
        mask = ((tophat >= level) & (small >= min(0.6, bright - 0.25)) & keep).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        for i in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[i])
            long, short = max(w, h), min(w, h)
            if not (lo <= long <= hi and short >= 0.25 * long and short >= 2):
                continue
            if not 0.15 <= area / float(w * h) <= 0.8:
                continue
            if min(x, y, small.shape[1] - x - w, small.shape[0] - y - h) < edge:
                continue  # on the film's rim or cut by its edge: not a whole letter
            if zone is not None and y <= zone[2] and y + h >= zone[0] and x <= zone[3] and x + w >= zone[1]:
                continue  # touches the label's zone: cut by it, not a whole letter
            box = (int(y / scale), int(x / scale), int(np.ceil((y + h) / scale)), int(np.ceil((x + w) / scale)))
            if any(_iou(box, b) > 0.7 for b, _ in out):
                continue
            contrast = float(tophat[y:y + h, x:x + w][labels[y:y + h, x:x + w] == i].mean())
            out.append((box, contrast))
    out.sort(key=lambda t: -t[1])
    return out[:MAX_CANDIDATES]


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _glyph_masks(film: np.ndarray, box: tuple[int, int, int, int], full_scale: float,
                 dpi: float, levels: tuple[float, ...] = (0.6,)) -> list[np.ndarray]:
    """The two largest letter-sized components in a crop around ``box``, thresholded at each
    of ``levels`` of the way from the surround to the blob's plateau (0.6: a penumbra does not
    close the letter's counters; 0.8: cuts a fainter wire or bone edge touching the letter or
    its frame)."""
    r0, c0, r1, c1 = box
    m = max(2, int(0.25 * max(r1 - r0, c1 - c0)))
    R0, C0 = max(0, r0 - m), max(0, c0 - m)
    crop = film[R0:min(film.shape[0], r1 + m), C0:min(film.shape[1], c1 + m)].astype(np.float32) / full_scale
    s = 64.0 / max(r1 - r0, c1 - c0)
    crop = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1.0 else cv2.INTER_CUBIC)
    inner = np.zeros(crop.shape, bool)
    inner[int((r0 - R0) * s):int(np.ceil((r1 - R0) * s)), int((c0 - C0) * s):int(np.ceil((c1 - C0) * s))] = True
    fg = float(np.percentile(crop[inner], 95))
    bg = float(np.median(crop[~inner])) if (~inner).any() else float(crop.min())
    if fg - bg < 0.05:
        return []
    px_mm = dpi * s / 25.4
    out = []
    for level in levels:
        ink = (crop >= bg + level * (fg - bg)).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
        inside = np.bincount(labels[inner], minlength=n)
        inside[0] = 0
        for i in np.argsort(inside)[::-1][:2]:
            if inside[i] == 0:
                break
            x, y, w, h = (int(v) for v in stats[i][:4])
            if w >= crop.shape[1] - 1 or h >= crop.shape[0] - 1:  # leaks into a bright surround
                continue
            if not LETTER_MM[0] * px_mm <= max(w, h) <= LETTER_MM[1] * px_mm:
                continue
            out.append(labels[y:y + h, x:x + w] == i)
    return out


def read_marker(
    film: np.ndarray,
    *,
    dpi: float,
    exclude_box: tuple[int, int, int, int] | None = None,
) -> MarkerReading:
    """Find and read the L/R lead marker of a film.

    Parameters
    ----------
    film : ndarray of shape (M, N), uint8 or uint16
        MONOCHROME2 film (lead markers are bright), straightened and cropped; any
        orientation.
    dpi : float
        Scan resolution, dots per inch (marker letters are 4..35 mm).
    exclude_box : tuple (row0, col0, row1, col1), optional
        Region to ignore, film pixels (normally the label box: its letters are dark on light
        and are not markers, but its bright patch edges must not be taken either).

    Returns
    -------
    MarkerReading
        ``letter`` ``''`` when no candidate reads as an L or R with at least
        :data:`REPORT_CONFIDENCE`; the letter with ``confidence`` 0 when an ``L`` and an
        ``R`` both read confidently.

    Raises
    ------
    ValueError
        If ``film`` is not a 2-D uint8/uint16 array or ``dpi`` is not positive.

    References
    ----------
    P. Soille, *Morphological Image Analysis*, 2nd ed., Springer 2003, ch. 4.4 (top-hat).
    J. P. Lewis, "Fast normalized cross-correlation", Vision Interface 1995 (template score).

    Notes
    -----
    Cost is a resize, one morphological top-hat at :data:`WORK_DPI` and a 24x24
    correlation against ~6,300 templates per candidate glyph: a few tens of milliseconds
    per film (bench/marker_accuracy.py), plus ~1 s once per process to render the bank.
    """
    if not isinstance(film, np.ndarray) or film.ndim != 2 or film.dtype not in (np.uint8, np.uint16):
        raise ValueError("film must be a 2-D uint8 or uint16 array")
    if not dpi > 0:
        raise ValueError("dpi must be positive")
    cands = find_candidates(film, dpi=dpi, exclude_box=exclude_box)
    if not cands:
        return MarkerReading()
    full_scale = 255.0 if film.dtype == np.uint8 else float(max(1, int(film.max())))
    reads: list[MarkerReading] = []
    for box, _contrast in cands:
        best = None
        for levels in ((0.6,), (0.8,)):  # the higher threshold only when the first gave no clear letter
            for mask in _glyph_masks(film, box, full_scale, dpi, levels):
                ch, k, mirrored, score, margin = classify_glyph(mask)
                if ch not in ("L", "R"):
                    continue
                floor = 0.55 if k is not None else 0.62  # a diagonal read has twice the rivals: ask more
                conf = 100.0 * float(np.clip((score - floor) / 0.25, 0, 1)) * float(np.clip(margin / 0.08, 0, 1))
                if best is None or conf > best.confidence:
                    best = MarkerReading(ch, round(conf, 1), box, k, mirrored, round(score, 3))
            if best is not None and best.confidence >= MIN_CONFIDENCE:
                break
        if best is not None and best.confidence >= REPORT_CONFIDENCE:
            reads.append(best)
    if not reads:
        return MarkerReading()
    reads.sort(key=lambda r: (-r.confidence, -r.score))
    best = reads[0]
    rivals = [r for r in reads[1:] if r.confident and (r.letter, r.rotation_k) != (best.letter, best.rotation_k)]
    if best.confident and any(r.letter != best.letter for r in rivals):  # an L and an R: say nothing
        return dataclasses.replace(best, confidence=0.0)
    if best.confident and rivals:  # the same letter at two turns: the side holds, the turn does not
        return dataclasses.replace(best, rotation_k=None)
    return best
