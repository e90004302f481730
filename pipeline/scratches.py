"""Thin film scratches: find long, thin, nearly straight lines brighter (emulsion scraped off) or
darker than both their sides, and inpaint only their pixels, keeping the dtype and range.

A guidewire, a catheter, a pacemaker lead or a thin bone cortex also draw thin lines on a film,
and nothing in the pixels tells a straight catheter from a straight scratch: on the generated
set, planted straight catheters lose 15 % of their pixels on average (up to all of them) and a
stretch of a real tube in one radiograph was inpainted (bench/README.md, "Scratch repair"). The
flow therefore runs this step only when ``denoise.scratches`` is set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.denoise import estimate_noise_sigma

#: Widest scratch repaired, pixels (across the line).
MAX_WIDTH_PX = 3
#: Shortest straight run taken for a scratch, millimetres.
MIN_LENGTH_MM = 25.0
#: A pixel is a line candidate when its top-hat residual exceeds this many noise sigmas ...
CANDIDATE_SIGMAS = 3.0
#: ... and is in the top 5 % of the residual (on low-noise films fine texture would otherwise fill a
#: third of the image and drown the lines in the Hough transform).
CANDIDATE_SHARE = 0.05
#: ... and a scratch is a chain of windows of :data:`WINDOW_PX` px along a straight run in each of
#: which the line, averaged, exceeds both its sides by this many sigmas ...
WINDOW_SIGMAS = 2.0
WINDOW_PX = 16
#: ... with at most 2 gaps: pixels along the line whose contrast is below
#: this share of the window's.
MAX_GAP_CONTRAST = 0.5
#: Largest wander of the line's centre across its straight run (a gently curved scratch), pixels.
MAX_WANDER_PX = 2.0
#: Lines within this many inches (+ 7 px) of the image's edge are not looked for: the film's rim,
#: rounded corners and any sliver of scanner bed left by the crop draw straight lines there.
EDGE_BAND_IN = 0.06
#: Radius of the neighbourhood the inpainting takes values from, pixels.
INPAINT_RADIUS = 3
#: Half-width of the cross-section sampled on each side of a candidate line, pixels.
_HALF = 7
#: How far the line's centre is looked for on either side of a Hough segment, pixels.
_SEARCH = 4
#: Cross-section offsets of the line itself (|s| <= 2) and of its two sides (4 <= |s| <= 7).
_CORE = 2
_SIDE = (4, 7)


@dataclass
class ScratchReport:
    """What :func:`repair_scratches` did.

    ``segments``: one (row0, col0, row1, col1, polarity, width_px, contrast) tuple per repaired
    straight run (end points in pixels; polarity ``'bright'`` or ``'dark'``; contrast in image
    units; overlapping runs of one line each appear); ``lines``: separate lines inpainted (connected
    groups of repaired pixels); ``pixels``: pixels inpainted; ``candidates``: straight runs
    tested; ``sigma``: the noise sigma used (image units).
    """

    segments: list[tuple[int, int, int, int, str, float, float]] = field(default_factory=list)
    lines: int = 0
    pixels: int = 0
    candidates: int = 0
    sigma: float = 0.0


#: Residual values the candidate threshold is taken from (a fixed pseudo-random sample).
_THRESHOLD_SAMPLE = 200_000


def _threshold_sample(a: np.ndarray) -> np.ndarray:
    """Up to :data:`_THRESHOLD_SAMPLE` values of ``a`` at fixed pseudo-random positions (seed 0:
    the same image gives the same sample), or all of them when ``a`` is smaller."""
    flat = a.ravel()
    if flat.size <= _THRESHOLD_SAMPLE:
        return flat
    return flat[np.random.default_rng(0).integers(0, flat.size, _THRESHOLD_SAMPLE)]


def repair_scratches(
    image: np.ndarray,
    *,
    dpi: float,
    sigma: float | None = None,
    min_length_mm: float = MIN_LENGTH_MM,
    max_width_px: int = MAX_WIDTH_PX,
    polarity: str = "both",
) -> tuple[np.ndarray, ScratchReport]:
    """Find thin straight scratches on a straightened positive film and inpaint them.

    Parameters
    ----------
    image : ndarray of shape (M, N), uint8 or uint16
        The straightened film, positive (bone bright, clear film brightest).
    dpi : float
        Scan resolution, dots per inch (turns ``min_length_mm`` into pixels).
    sigma : float, optional
        Noise standard deviation, image units; default
        :func:`pipeline.denoise.estimate_noise_sigma` of ``image``.
    min_length_mm : float
        Shortest straight run repaired, millimetres.
    max_width_px : int
        Widest line repaired, pixels across (1 to 5).
    polarity : {'both', 'bright', 'dark'}
        Which lines to look for: brighter than both sides (emulsion scraped off), darker, or both.

    Returns
    -------
    out : ndarray of shape (M, N), same dtype as ``image``
        A new array: ``image`` with the scratch pixels inpainted, every value within the input's
        own [min, max]; equal to ``image`` where no scratch was found.
    report : ScratchReport

    Raises
    ------
    ValueError
        ``image`` not 2-D uint8/uint16, ``dpi`` not finite and positive, ``max_width_px`` not an
        integer in 1..5, ``min_length_mm`` not finite and positive, ``sigma`` given but not finite
        and >= 0, or an unknown ``polarity``.

    Notes
    -----
    1. Residual: white (bright lines) and black (dark lines) top-hat of ``image`` with a
       disc of ``2 * max_width_px + 1`` px (what is narrower than the disc), averaged over
       2 x 2 pixels (a 1-px line keeps its contrast-to-noise ratio; the Hough transform gets
       a quarter of the points).
    2. Candidates: residual above its median by :data:`CANDIDATE_SIGMAS` times its noise
       (sigma / 2) and in its top :data:`CANDIDATE_SHARE`, outside a band of
       :data:`EDGE_BAND_IN` in + 7 px along the image's edges (the film's rim, rounded
       corners and any sliver of bed draw lines there); straight runs of at least half of
       ``min_length_mm`` found among them by the progressive probabilistic Hough transform
       (``cv2.HoughLinesP`` at half resolution, 1 deg steps, votes >= half the run's
       length, gaps <= 2 half-resolution px): a gently curved line leaves Hough's 1-px
       corridor, so runs are looked for shorter than the scratches kept.
    3. Each run is moved onto the line (a straight fit of the line's centre, searched +-4 px,
       in windows of :data:`WINDOW_PX` px), extended along it to the edge band, and tested
       on the image itself: cross-sections (+-7 px, bilinear, one per pixel along the
       run) averaged per window; a window is good when the line (the extreme of the centre
       +-2 px) exceeds *both* sides (4-7 px away) by :data:`WINDOW_SIGMAS` sigma (an edge
       fails) and at most 2 of its pixels (the extreme of the centre +-1 px) fall below
       :data:`MAX_GAP_CONTRAST` of that contrast (a row of text or a chain of blobs fails).
       A chain of good windows at least ``min_length_mm`` long whose centre wanders by at
       most :data:`MAX_WANDER_PX` px and whose width at half contrast is at most
       ``max_width_px + 1`` px is a scratch.
    4. Repair: the line's pixels (its traced centre, width + 2 px) are inpainted with
       ``cv2.inpaint`` (Telea), which takes 8-bit, 16-bit unsigned and 32-bit float
       single-channel images; nothing else changes.

    Measured (bench/scratches.py, 100 generated patches, bench/README.md): 66 % of the visible
    pixels of scratches >= 25 mm inpainted, 55 % within 3 sigma of the noise-free film; curved
    guidewires, plain anatomy, label text and two real digitized films untouched; planted
    straight catheters lose 15 % of their pixels on average, and a real tube was partly
    inpainted: a straight device line that passes these tests is repaired as a scratch. The
    flow runs this step only when asked (``denoise.scratches``). Not looked for: scratches
    shorter than ``min_length_mm`` or within :data:`EDGE_BAND_IN` in + 7 px of the edge.

    References
    ----------
    J. Matas, C. Galambos and J. Kittler, "Robust detection of lines using the progressive
    probabilistic Hough transform", CVIU 78(1), 119-137, 2000 (``cv2.HoughLinesP``).
    A. Telea, "An image inpainting technique based on the fast marching method", Journal of
    Graphics Tools 9(1), 23-34, 2004; OpenCV documentation of ``cv::inpaint`` (photo module).
    A. C. Kokaram, "Motion picture restoration", Springer 1998, ch. on line scratches (a
    scratch as a thin line brighter or darker than both sides, with a smooth cross-section).
    """
    img = np.asarray(image)
    if img.ndim != 2 or img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"repair_scratches expects a 2-D uint8 or uint16 image, got {img.dtype} {img.shape}")
    if not (math.isfinite(dpi) and dpi > 0):
        raise ValueError("dpi must be finite and > 0")
    if isinstance(max_width_px, bool) or not isinstance(max_width_px, (int, np.integer)) or not 1 <= max_width_px <= 5:
        raise ValueError("max_width_px must be an integer 1..5")
    if not (math.isfinite(min_length_mm) and min_length_mm > 0):
        raise ValueError("min_length_mm must be finite and > 0")
    if sigma is not None and not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError("sigma must be finite and >= 0")
    if polarity not in ("both", "bright", "dark"):
        raise ValueError(f"unknown polarity {polarity!r}")
    max_width_px = int(max_width_px)
    s = estimate_noise_sigma(img) if sigma is None else float(sigma)
    report = ScratchReport(sigma=s)
    min_len = int(math.ceil(min_length_mm / 25.4 * dpi))
    if img.size == 0 or min(img.shape) < 2 * _HALF + 1 or min_len > max(img.shape):
        return img.copy(), report
    s = max(s, 0.5)  # a noise-free (synthetic) image: one grey level
    band = int(round(EDGE_BAND_IN * dpi)) + _HALF  # the film's rim and edges: no line taken there
    if min(img.shape) <= 2 * band + 2 * _HALF:
        return img.copy(), report
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * max_width_px + 1,) * 2)
    work = img.astype(np.float32)
    mask = np.zeros(img.shape, np.uint8)
    half_len = max(8, min_len // 4)  # runs of half the length: the chain test decides
    for pol in (("bright", "dark") if polarity == "both" else (polarity,)):
        op = cv2.MORPH_TOPHAT if pol == "bright" else cv2.MORPH_BLACKHAT
        # residual at half resolution (2x2 means: a 1-px line keeps its contrast-to-noise ratio,
        # 2-3 px lines gain, the Hough transform has a quarter of the points)
        resid = cv2.resize(cv2.morphologyEx(img, op, disc, borderType=cv2.BORDER_REPLICATE), None, fx=0.5, fy=0.5,
                           interpolation=cv2.INTER_AREA)
        # above the median (the residual of noise alone is biased upwards) by CANDIDATE_SIGMAS times
        # its noise, and in its top CANDIDATE_SHARE (fine texture of a low-noise film)
        # (from a fixed pseudo-random sample: a regular [::k, ::k] grid lined up with periodic lines,
        # e.g. a grid's, and saw all of them or none)
        base, cap = np.percentile(_threshold_sample(resid), [50, 100 - 100 * CANDIDATE_SHARE])
        cand = cv2.compare(resid, max(float(base) + CANDIDATE_SIGMAS * s / 2, float(cap)), cv2.CMP_GT)
        del resid
        hb = (band + 1) // 2
        cand[:hb], cand[-hb:], cand[:, :hb], cand[:, -hb:] = 0, 0, 0, 0
        lines = cv2.HoughLinesP(cand, 1, math.pi / 180, threshold=max(8, half_len // 2), minLineLength=half_len,
                                maxLineGap=2)
        del cand
        if lines is None:
            continue
        sign = 1.0 if pol == "bright" else -1.0
        for x0, y0, x1, y1 in 2 * lines.reshape(-1, 4).astype(np.float64) + 0.5:
            report.candidates += 1
            run = _refine(work, sign, (x0, y0), (x1, y1), s, band)
            for centre, width, contrast in ([] if run is None else _test_run(work, sign, *run, s, max_width_px, min_len)):
                cv2.polylines(mask, [np.round(centre).astype(np.int32)], False, 255, thickness=int(math.ceil(width)) + 2)
                (c0, r0), (c1, r1) = np.round(centre[[0, -1]]).astype(int)
                report.segments.append((int(r0), int(c0), int(r1), int(c1), pol, round(width, 2), round(contrast, 1)))
    del work
    report.pixels = int(cv2.countNonZero(mask))
    out = img.copy()
    if report.pixels == 0:
        return out, report
    vmin, vmax, _, _ = cv2.minMaxLoc(img)
    # inpaint each repaired line in its own box (the fast-marching method looks INPAINT_RADIUS px out)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    report.lines = int(n - 1)
    m = INPAINT_RADIUS + 2
    for x, y, w, h, _ in stats[1:]:
        r0, c0, r1, c1 = max(0, y - m), max(0, x - m), min(img.shape[0], y + h + m), min(img.shape[1], x + w + m)
        sub = mask[r0:r1, c0:c1]
        fixed = cv2.inpaint(img[r0:r1, c0:c1], sub, INPAINT_RADIUS, cv2.INPAINT_TELEA)
        np.copyto(out[r0:r1, c0:c1], np.clip(fixed, int(vmin), int(vmax)).astype(img.dtype, copy=False), where=sub > 0)
    return out, report


def _sample(work: np.ndarray, sign: float, p0: tuple[float, float], p1: tuple[float, float], half: int
            ) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    """Cross-sections of ``work`` along ``p0``-``p1`` ((x, y) px): (``sign`` * samples of shape
    (windows * WINDOW_PX, 2 * half + 1), positions along the run (px from ``p0``), unit vector
    x, y, length). Offsets run along the normal (-uy, ux)."""
    (x0, y0), (x1, y1) = p0, p1
    length = math.hypot(x1 - x0, y1 - y0)
    n_win = int(length // WINDOW_PX)
    t = np.arange(n_win * WINDOW_PX, dtype=np.float32) + (length - n_win * WINDOW_PX) / 2
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    off = np.arange(-half, half + 1, dtype=np.float32)
    mx = (x0 + t[:, None] * ux - off[None, :] * uy).astype(np.float32)
    my = (y0 + t[:, None] * uy + off[None, :] * ux).astype(np.float32)
    prof = sign * cv2.remap(work, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return prof, t, ux, uy, length


def _refine(work: np.ndarray, sign: float, p0: tuple[float, float], p1: tuple[float, float], sigma: float,
            band: int) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The run ``p0``-``p1`` (a half-resolution Hough segment: off by a pixel or two, and maybe
    short of the line's ends) moved onto the line (a straight fit of the line's centre in the
    windows of the run where it stands out) and extended along it to ``band`` px from the image's
    edges; None when fewer than two windows show it."""
    half = _HALF + _SEARCH
    prof, t, ux, uy, length = _sample(work, sign, p0, p1, half)
    n_win = prof.shape[0] // WINDOW_PX
    if n_win < 2:
        return None
    win = prof.reshape(n_win, WINDOW_PX, -1).mean(axis=1)
    best_c, best_v = np.zeros(n_win), np.full(n_win, -np.inf)
    for c in range(-_SEARCH, _SEARCH + 1):
        k = half + c
        v = win[:, k] - np.maximum(win[:, k - _SIDE[1]: k - _SIDE[0] + 1].mean(axis=1),
                                   win[:, k + _SIDE[0]: k + _SIDE[1] + 1].mean(axis=1))
        better = v > best_v
        best_c[better], best_v[better] = c, v[better]
    ok = best_v > WINDOW_SIGMAS * sigma
    if ok.sum() < 2:
        return None
    tc = t.reshape(n_win, WINDOW_PX).mean(axis=1)
    fit = np.polyfit(tc[ok], best_c[ok], 1)
    res = np.abs(np.polyval(fit, tc) - best_c)
    keep = ok & (res <= 1.5)
    if keep.sum() >= 2 and keep.sum() < ok.sum():
        fit = np.polyfit(tc[keep], best_c[keep], 1)
    (x0, y0), (x1, y1) = p0, p1
    a0, a1 = np.polyval(fit, 0.0), np.polyval(fit, length)
    x0, y0, x1, y1 = x0 - a0 * uy, y0 + a0 * ux, x1 - a1 * uy, y1 + a1 * ux
    length = math.hypot(x1 - x0, y1 - y0)
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    h, w = work.shape
    ends = []
    for (x, y), d in (((x0, y0), -1.0), ((x1, y1), 1.0)):  # extend to the edge band
        k = float(max(h, w))
        for lim, q, u in ((w - 1, x, ux), (h - 1, y, uy)):
            if d * u > 1e-9:
                k = min(k, (lim - band - q) / (d * u))
            elif d * u < -1e-9:
                k = min(k, (q - band) / (-d * u))
        ends.append((x + d * max(k, 0.0) * ux, y + d * max(k, 0.0) * uy))
    return ends[0], ends[1]


def _test_run(work: np.ndarray, sign: float, p0: tuple[float, float], p1: tuple[float, float], sigma: float,
              max_width: int, min_len: int) -> list[tuple[np.ndarray, float, float]]:
    """The scratches along the straight run ``p0``-``p1`` ((x, y) pixels) of ``work`` (float32):
    for each, its traced centre ((K, 2) x, y points), width (px) and contrast (image units); see
    :func:`repair_scratches` (Notes, 3). ``sign`` +1 bright, -1 dark.

    Windows of :data:`WINDOW_PX` px where the line stands out (contrast over both sides >
    :data:`WINDOW_SIGMAS` sigma, and no more than 2 of its pixels below
    :data:`MAX_GAP_CONTRAST` of that contrast) are chained; each chain at least ``min_len`` px
    long whose centre wanders by at most :data:`MAX_WANDER_PX` and whose width at half contrast
    is at most ``max_width + 1`` px is a scratch."""
    prof, t, ux, uy, length = _sample(work, sign, p0, p1, _HALF)
    n_win = prof.shape[0] // WINDOW_PX
    if n_win < 2:
        return []
    x0, y0 = p0
    win = prof.reshape(n_win, WINDOW_PX, -1).mean(axis=1)  # (windows, offsets)
    core = win[:, _HALF - _CORE: _HALF + _CORE + 1]
    peak_i = core.argmax(axis=1)
    peak = core[np.arange(n_win), peak_i]
    left = win[:, _HALF - _SIDE[1]: _HALF - _SIDE[0] + 1].mean(axis=1)
    right = win[:, _HALF + _SIDE[0]: _HALF + _SIDE[1] + 1].mean(axis=1)
    contrast = peak - np.maximum(left, right)
    # pixel by pixel, the extreme of the window's centre offset +-1 (a 1-px line lies between two
    # samples): a row of text or a chain of blobs falls back to its sides between characters
    col = _HALF - _CORE + np.repeat(peak_i, WINDOW_PX)
    side = np.maximum(prof[:, _HALF - _SIDE[1]: _HALF - _SIDE[0] + 1].mean(axis=1),
                      prof[:, _HALF + _SIDE[0]: _HALF + _SIDE[1] + 1].mean(axis=1))
    r = np.arange(col.size)
    per = np.maximum(np.maximum(prof[r, col - 1], prof[r, col]), prof[r, col + 1]) - side
    pw = per.reshape(n_win, WINDOW_PX)
    gaps = (pw < MAX_GAP_CONTRAST * contrast[:, None]).sum(axis=1)
    good = (contrast > WINDOW_SIGMAS * sigma) & (gaps <= 2)
    hits = []
    edges = np.flatnonzero(np.diff(np.r_[0, good.astype(np.int8), 0]))
    for a, b in zip(edges[::2], edges[1::2]):
        if (b - a) * WINDOW_PX < min_len:
            continue
        shift = peak_i[a:b].astype(np.float64) - _CORE
        if shift.max() - shift.min() > MAX_WANDER_PX:
            continue
        # width at half contrast of the mean cross-section, aligned on each window's peak
        aligned = np.stack([np.roll(w, -int(d)) for w, d in zip(win[a:b], shift)]).mean(axis=0)
        base = max(aligned[: _HALF - _SIDE[0] + 1].mean(), aligned[_HALF + _SIDE[0]:].mean())
        c = float(aligned[_HALF] - base)
        if c <= 0:
            continue
        above = aligned - base > c / 2
        lo = hi = _HALF
        while lo > 0 and above[lo - 1]:
            lo -= 1
        while hi < aligned.size - 1 and above[hi + 1]:
            hi += 1
        width = float(hi - lo + 1)
        if width > max_width + 1:
            continue
        tw = t[a * WINDOW_PX: b * WINDOW_PX]
        # the ends: the first and last pixels of the end windows where the line is at half contrast
        head = np.flatnonzero(per[a * WINDOW_PX: (a + 1) * WINDOW_PX] >= contrast[a] / 2)
        tail = np.flatnonzero(per[(b - 1) * WINDOW_PX: b * WINDOW_PX] >= contrast[b - 1] / 2)
        t0 = tw[head[0]] if head.size else tw[0]
        t1 = tw[(b - a - 1) * WINDOW_PX + tail[-1]] if tail.size else tw[-1]
        tc = np.r_[t0, tw.reshape(b - a, WINDOW_PX).mean(axis=1), t1]
        sh = np.r_[shift[0], shift, shift[-1]]
        hits.append((np.column_stack([x0 + tc * ux - sh * uy, y0 + tc * uy + sh * ux]), width, c))
    return hits
