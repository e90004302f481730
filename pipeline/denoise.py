"""Mild, edge-preserving denoising of a straightened film (film grain, scanner
noise, dust specks), keeping the dtype and range.

The noise level is estimated from the image itself (Immerkaer's Laplacian-
difference operator with a robust median, so edges and anatomy do not inflate
it), and the filter strength is that sigma times ``strength``.
"""

from __future__ import annotations

import math
from typing import Literal

import cv2
import numpy as np

from pipeline.histogram import exact_histogram, percentile_from_cumulative

Method = Literal["bilateral", "nlmeans", "off"]
#: Immerkaer's noise-estimation kernel (difference of two Laplacians, L2 norm 6) is the outer
#: product of this 1-D second difference with itself: [[1, -2, 1], [-2, 4, -2], [1, -2, 1]].
_LAPLACE_1D = np.array([1, -2, 1], dtype=np.float32)
#: The values the noise estimate counts in its histogram: a median of |response| below 16 384 (a
#: sigma up to ~4 050 levels, 6 % of a 16-bit range); above it, the exact values are sorted.
_MEDIAN_BINS = 1 << 14
#: The |response| the noise estimate gives the pixels it leaves out: above every counted value.
_LEFT_OUT = 65535
#: Pixels the noise estimate looks at (bands of ``_SIGMA_BAND`` rows spread over larger films;
#: the median of 250 000 values is within ~0.3 % of the whole film's statistically).
_SIGMA_SAMPLE_PX = 250_000
_SIGMA_BAND = 32
#: A speck candidate differs from its 3x3 median by more than this many sigmas ...
SPECK_SIGMAS = 6.0
#: ... and lies beyond the range of its 8 neighbours by more than this many sigmas and by more
#: than that range itself: an isolated one-pixel spike, not a point of a line, an edge, texture or
#: a label's stroke.
SPECK_ISOLATION_SIGMAS = 3.0
#: The 3x3 kernel of the 8 neighbours (centre excluded), and their row and column offsets.
_RING = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=np.uint8)
_RING_OFFSETS = tuple(np.nonzero(_RING)[i] - 1 for i in (0, 1))
#: Spatial sigma of each of the bilateral's two passes over the 4-neighbour cross, pixels (see
#: :func:`denoise`): chosen among 0.7 / 0.8 / 1.0 on the evaluation films (bench/README.md).
BILATERAL_SIGMA_SPACE = 0.8
#: Above one candidate in this many pixels, the neighbours' range comes from whole-image morphology.
_MORPHOLOGY_SHARE = 100


def estimate_noise_sigma(image: np.ndarray) -> float:
    """Standard deviation of additive white noise, in image units.

    Parameters
    ----------
    image : ndarray of shape (M, N), uint8 or uint16

    Returns
    -------
    float
        ``1.4826 * median(|image * N|) / 6`` with Immerkaer's kernel ``N``, over
        the pixels whose 3x3 neighbourhood holds no clipped value (the image's
        own minimum or maximum: a clipped or padded area has no noise to
        measure); over all pixels when every one is next to a clipped value;
        0.0 for an image that is not 2-D or is smaller than 3 x 3.

    Raises
    ------
    ValueError
        When ``image`` is not uint8 or uint16 (the median is taken from an exact
        integer histogram).

    Notes
    -----
    Films larger than :data:`_SIGMA_SAMPLE_PX` pixels are sampled in bands of
    :data:`_SIGMA_BAND` rows spread over their height; the rows where two bands
    meet are left out. Measured against the former estimate (all pixels, 1 Mpx
    sample): the digitized film SC1_UNC, half of it one clipped black value,
    0.74 -> 5.93 (its anatomy's noise); 100 generated films and two large ones:
    median change 0, p95 2.8 %, at most 7 % (bench/README.md).

    References
    ----------
    J. Immerkaer, "Fast noise variance estimation", Computer Vision and Image
    Understanding 64(2), 300-302, 1996 (here with a median instead of the mean
    absolute value, for robustness to edges).
    """
    img = np.asarray(image)
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"estimate_noise_sigma expects uint8 or uint16, got {img.dtype}")
    if img.ndim != 2 or min(img.shape) < 3:
        return 0.0
    vmin, vmax, _, _ = cv2.minMaxLoc(img)
    seams = np.empty(0, np.intp)
    if img.size > _SIGMA_SAMPLE_PX and img.shape[0] >= _SIGMA_BAND:
        # bands spread over the film; the rows where two bands meet are left out below
        step = max(1, int(round(img.shape[0] * _SIGMA_BAND / (_SIGMA_SAMPLE_PX / img.shape[1]))))
        starts = np.arange(0, img.shape[0] - _SIGMA_BAND + 1, step)
        img = img[(starts[:, None] + np.arange(_SIGMA_BAND)).ravel()]
        seams = np.concatenate([np.arange(_SIGMA_BAND, img.shape[0], _SIGMA_BAND) + d for d in (-1, 0)]) - 1
    # Immerkaer's kernel is separable ([1, -2, 1] by [1, -2, 1]); on an integer image its response
    # is an integer, exact in the float32 rows of the separable filter (|response| <= 16 * 65535 <
    # 2**24) and saturated to int16 on output: every |response| below _MEDIAN_BINS is exact, and
    # the histogram counts only those
    resp = cv2.sepFilter2D(img, cv2.CV_16S, _LAPLACE_1D, _LAPLACE_1D, borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1]
    # |response| as uint16 (-32768 stays 32768 in that view: above the bins, as it should)
    mag = np.abs(resp, out=resp).view(np.uint16)
    seams = seams[(seams >= 0) & (seams < mag.shape[0])]  # distinct rows, by construction
    # the pixels counted: none next to a clipped value (the image's own min or max) nor on a seam
    inside = cv2.inRange(img, vmin + 1, vmax - 1)
    count = cv2.erode(inside, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1]
    count[seams] = 0
    kept = cv2.countNonZero(count)
    if kept == 0:  # every pixel is next to a clipped one: all of them count (but the seams)
        count[:] = 255
        count[seams] = 0
        kept = cv2.countNonZero(count)
    if kept == 0:
        return 0.0
    # the values below _MEDIAN_BINS counted exactly (the pixels left out set above them: faster
    # than a calcHist mask); the rest of the kept pixels lie above them too
    mag[count == 0] = _LEFT_OUT
    cum = np.cumsum(exact_histogram(mag, 0, _MEDIAN_BINS))
    if cum[-1] <= kept // 2:
        # the median lies above the counted values (a sigma above ~4 050 levels): the exact values
        diffs = cv2.sepFilter2D(img, cv2.CV_32F, _LAPLACE_1D, _LAPLACE_1D, borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1]
        return float(1.4826 * np.median(np.abs(diffs[count > 0]).astype(np.float64)) / 6.0)
    return float(1.4826 * percentile_from_cumulative(np.append(cum, kept), 50.0) / 6.0)


def denoise(image: np.ndarray, *, method: Method = "bilateral", strength: float = 1.0, despeckle: bool = True) -> np.ndarray:
    """Denoise a film mildly, preserving edges, shape, dtype and range.

    Parameters
    ----------
    image : ndarray of shape (M, N), uint8 or uint16
    method : {'bilateral', 'nlmeans', 'off'}
        ``bilateral``: two passes of cv2.bilateralFilter on float32 over the
        4-neighbour cross (d = 3, sigmaSpace = :data:`BILATERAL_SIGMA_SPACE` px,
        sigmaColor = 2 * strength * sigma; see Notes). ``nlmeans``: cv2.fastNlMeansDenoising
        (L1 norm for 16-bit; h = strength * sigma * 0.8, 5x5 template, 15x15 search).
        ``off``: return a copy.
    strength : float
        Multiplier of the estimated noise sigma (0 returns a copy).
    despeckle : bool
        Repair isolated dust specks before filtering (see Notes); False leaves
        every spot to the filter alone.

    Returns
    -------
    ndarray of shape (M, N), same dtype as ``image``
        Values rounded and clipped to the input's own [min, max].

    Raises
    ------
    ValueError
        Unknown method, negative strength, or an image that is not 2-D uint8/uint16.

    Notes
    -----
    Isolated dust specks are first replaced by their 3x3 median: a pixel that
    differs from that median by more than :data:`SPECK_SIGMAS` sigmas and lies
    beyond the range (max - min) of its 8 neighbours by more than both
    :data:`SPECK_ISOLATION_SIGMAS` sigmas and that range. Lines, edges, textured
    anatomy and label strokes, whose neighbours share or bracket the value, are
    spared: the median test alone flagged 0.3 % of the pixels of low-noise films
    (fine anatomy, PSNR -1.3 dB) and erased one-pixel label strokes at low DPI
    (bench/README.md, "Speck repair"). Specks of 2x2 pixels and more are left
    to the filter: a rule that takes them (the 16 pixels at distance 2 as the
    ring) also took parts of 60-dpi label glyphs and changed a read Z into 2.
    A dotted one-pixel line (every other pixel) is taken for specks. A real
    one-pixel spot on a flat background (e.g. a microcalcification) cannot be
    told from dust: ``despeckle=False`` (``denoise.despeckle = false``) or
    ``method='off'`` keeps it.

    The bilateral's two cross passes reach the same 13 pixels as one pass
    over OpenCV's d = 5 disc (the cross convolved with itself is that disc)
    at about half its cost: five weights per pixel and pass instead of 13.
    Iterating a small-support bilateral is a discrete nonlinear diffusion
    (Barash 2002). Against that single pass (sigmaSpace 1.5 px), on the 100
    evaluation films' centre patches, per noise level and bit depth: +0.14 to
    +0.37 dB PSNR at 1-2 % noise (SSIM higher, or 0.0005 lower on 16-bit at
    2 %); within 0.06 dB and 0.001 SSIM at 4 %; 0.02 dB (8-bit) and 0.33 dB
    (16-bit) lower at 0.3 %, SSIM 0.0006 / 0.0003 lower
    (bench/README.md, "Session 5").

    References
    ----------
    C. Tomasi and R. Manduchi, "Bilateral filtering for gray and color images",
    ICCV 1998. D. Barash, "A fundamental relationship between bilateral
    filtering, adaptive smoothing, and the nonlinear diffusion equation", IEEE
    TPAMI 24(6), 844-847, 2002. A. Buades, B. Coll and J.-M. Morel, "A non-local algorithm for
    image denoising", CVPR 2005. OpenCV documentation of ``bilateralFilter`` and
    ``fastNlMeansDenoising``.
    """
    img = np.asarray(image)
    if img.ndim != 2 or img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"denoise expects a 2-D uint8 or uint16 image, got {img.dtype} {img.shape}")
    if method not in ("bilateral", "nlmeans", "off"):
        raise ValueError(f"unknown denoise method {method!r}")
    if strength < 0:
        raise ValueError("strength must be >= 0")
    if method == "off" or strength == 0 or img.size == 0:
        return img.copy()
    sigma = estimate_noise_sigma(img)
    if sigma <= 0:
        return img.copy()

    med = cv2.medianBlur(img, 3)  # medianBlur supports uint16 for ksize 3 and 5
    speck = _specks(img, med, sigma) if despeckle else (np.empty(0, np.intp), np.empty(0, np.intp))
    if method == "bilateral":
        # the one float copy bilateralFilter needs (it takes 8U or 32F), specks repaired in it
        work = img.astype(np.float32, order="C")  # C order: the second pass writes into it (cv2 dst)
        work[speck] = med[speck]
        del speck
        out = _bilateral(work, 2.0 * strength * sigma)
        # a bilateral output is a positive-weighted mean of the (repaired) input, so it stays within
        # the input's [min, max] after each pass: rounding back to the dtype is the only pass needed
        # (cvRound, saturating; same values as np.rint + clip + astype), into the median's buffer
        return cv2.add(out, 0.0, dst=med, dtype=cv2.CV_8U if img.dtype == np.uint8 else cv2.CV_16U)
    work = img.copy()
    work[speck] = med[speck]
    del med, speck
    h = float(strength * sigma * 0.8)
    if img.dtype == np.uint16:
        out = cv2.fastNlMeansDenoising(work, [h], templateWindowSize=5, searchWindowSize=15, normType=cv2.NORM_L1)
    else:
        out = cv2.fastNlMeansDenoising(work, h=h, templateWindowSize=5, searchWindowSize=15)
    vmin, vmax, _, _ = cv2.minMaxLoc(img)
    return np.clip(out, int(vmin), int(vmax)).astype(img.dtype, copy=False)


def _bilateral(work: np.ndarray, sigma_colour: float) -> np.ndarray:
    """The bilateral of :func:`denoise`: two cv2.bilateralFilter passes over the 4-neighbour
    cross of a float32 image (shape (M, N)); ``work`` is overwritten with the result."""
    once = cv2.bilateralFilter(work, d=3, sigmaColor=sigma_colour, sigmaSpace=BILATERAL_SIGMA_SPACE)
    return cv2.bilateralFilter(once, d=3, sigmaColor=sigma_colour, sigmaSpace=BILATERAL_SIGMA_SPACE, dst=work)


def _specks(img: np.ndarray, med: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the isolated one-pixel specks of ``img`` (see :func:`denoise`, Notes);
    ``med`` is its 3x3 median."""
    # candidates: |image - median| > threshold, i.e. > its floor for integer differences
    cand = cv2.compare(cv2.absdiff(img, med), float(math.floor(SPECK_SIGMAS * sigma)), cv2.CMP_GT)
    k = cv2.countNonZero(cand)
    rows, cols = img.shape
    if k == 0 or rows < 2 or cols < 2:
        return np.empty(0, np.intp), np.empty(0, np.intp)
    # x beyond the ring by more than max(gap, ring range) <=> by more than max(floor(gap), range)
    gap = min(math.floor(SPECK_ISOLATION_SIGMAS * sigma), int(np.iinfo(img.dtype).max))
    if k * _MORPHOLOGY_SHARE > img.size:
        # many candidates (fine texture, label strokes, a low noise estimate): the neighbours' max /
        # min over the whole image (OpenCV morphology, ~0.2 ms per Mpx each); the candidates beyond
        # them by more than gap lie outside [lo - gap, hi + gap] (saturating: no value lies beyond
        # the dtype's range), and only those few are tested against the neighbours' range
        hi = cv2.dilate(img, _RING, borderType=cv2.BORDER_REFLECT_101)
        lo = cv2.erode(img, _RING, borderType=cv2.BORDER_REFLECT_101)
        near = cv2.inRange(img, cv2.subtract(lo, gap), cv2.add(hi, gap))
        pts = cv2.findNonZero(cv2.subtract(cand, near))  # cand and not near (0/255 masks); None when none
        if pts is None:
            return np.empty(0, np.intp), np.empty(0, np.intp)
        pts = pts.reshape(-1, 2)
        r, c = pts[:, 1].astype(np.intp), pts[:, 0].astype(np.intp)
        return _beyond_range(img[r, c], lo[r, c], hi[r, c], r, c, gap)
    # few candidates: the neighbours of each, gathered (cv2.findNonZero: ~5x faster than np.flatnonzero)
    pts = cv2.findNonZero(cand).reshape(-1, 2)  # (K, 1, 2) or (K, 2) by OpenCV version
    return _isolated(img, pts[:, 1].astype(np.intp), pts[:, 0].astype(np.intp), gap)


def _isolated(img: np.ndarray, r: np.ndarray, c: np.ndarray, gap: int) -> tuple[np.ndarray, np.ndarray]:
    """The candidates ``(r, c)`` that lie beyond the range of their 8 neighbours (mirrored at
    the image border, as OpenCV's BORDER_REFLECT_101) by more than ``gap`` and that range."""
    rows, cols = img.shape
    lo = np.empty(r.size, dtype=img.dtype)
    hi = np.empty(r.size, dtype=img.dtype)
    inner = (r > 0) & (r < rows - 1) & (c > 0) & (c < cols - 1)
    flat = np.ascontiguousarray(img).ravel()
    nb = flat[(r[inner] * cols + c[inner])[:, None] + (_RING_OFFSETS[0] * cols + _RING_OFFSETS[1])]
    lo[inner], hi[inner] = nb.min(axis=1), nb.max(axis=1)
    edge = ~inner
    if edge.any():
        nr, nc = np.abs(r[edge, None] + _RING_OFFSETS[0]), np.abs(c[edge, None] + _RING_OFFSETS[1])
        nr, nc = np.where(nr > rows - 1, 2 * (rows - 1) - nr, nr), np.where(nc > cols - 1, 2 * (cols - 1) - nc, nc)
        nb = img[nr, nc]
        lo[edge], hi[edge] = nb.min(axis=1), nb.max(axis=1)
    return _beyond_range(img[r, c], lo, hi, r, c, gap)


def _beyond_range(
    v: np.ndarray, lo: np.ndarray, hi: np.ndarray, r: np.ndarray, c: np.ndarray, gap: int
) -> tuple[np.ndarray, np.ndarray]:
    """The points ``(r, c)`` whose value ``v`` lies above ``hi`` or below ``lo`` (their
    neighbours' max and min) by more than ``gap`` and than ``hi - lo``."""
    v, lo64, hi64 = v.astype(np.int64), lo.astype(np.int64), hi.astype(np.int64)
    g = np.maximum(gap, hi64 - lo64)
    keep = (v - hi64 > g) | (lo64 - v > g)
    return r[keep], c[keep]
