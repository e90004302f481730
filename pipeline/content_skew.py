"""Skew of the image content: text lines and straight structures, when no film edge is seen.

:mod:`pipeline.geometry` measures skew from the film's edges on the bright scanner
bed. When the film fills the scan (no bed) or the input is a document page, the
angle has to come from the content itself: lines of text on labels and documents,
and on radiographs the straight structures a film carries (its printed border,
collimation edges, the edges of the flashed label or of a ruler).

Method: an orientation-gated projection-profile (Radon) search over edge points.

1. Work copy with its longest side at most ``work_side_px`` (area averaging),
   intensities scaled by the 0.5/99.5 percentiles, a light Gaussian blur.
2. Edge points: Canny on the work copy (thresholds from the gradient-magnitude
   distribution), gradient direction from Sobel. Points whose gradient lies
   within ``max_angle_deg + 5`` degrees of the vertical are candidates for
   (near-)horizontal lines, the others within that range of the horizontal are
   candidates for (near-)vertical lines. Each point is weighted by its gradient
   magnitude, so that strong straight edges (label, collimation, printed border)
   outweigh the many weak edges of anatomy and film grain. Each point is moved
   across its line to the sub-pixel maximum of the gradient magnitude: the vertex
   of the parabola through the magnitude at the point and its two neighbours in
   its column (horizontal-line points) or row (vertical-line points) (Devernay
   1995). On integer pixel centres the points of a line tilted by less than ~0.3
   degree lie on a few whole rows, and the energy below had a spurious sharp peak
   at exactly 0 that won (0.219 degree was read as 0.002).
3. For each trial angle ``a``, horizontal-line points are projected on
   ``rho = x sin a + y cos a`` and vertical-line points on ``rho = x cos a - y sin a``
   (x = column, y = row, y down), histogrammed with linear (two-bin) weights, and
   the projection energy ``E(a) = sum(h**2)`` is taken: it peaks when the lines of
   the content line up. Coarse search: 3 px bins, 0.2 degree steps over
   ``+-max_angle_deg``. Fine search: 0.2 px bins, the histogram smoothed by a
   Gaussian of sigma 0.2 px before the energy is taken (so a line's contribution no
   longer depends on where the bin edges fall, which with sharp sub-pixel points and
   unsmoothed 1 px bins varies twofold and makes ``E`` ripple with the angle), 0.02
   degree steps over +-0.4 degree around the coarse peak, refined by a parabola
   through the maximum and its neighbours.
4. Confidence: the height of the coarse peak above the local trend of ``E``
   (running median over +-2 degrees) as a fraction of the median energy. Content
   with no dominant direction (a plain chest film, noise) gives a flat ``E`` and a
   confidence near 0; the angle is then reported as None. The slow variation of
   ``E`` with the angle that the image's own rectangular outline and the layout
   of the anatomy cause is part of the trend, not of the peak. When the coarse
   value reaches ``min_confidence`` it is multiplied by
   ``min(1, fine_contrast / FULL_FINE_CONTRAST)``, ``fine_contrast`` being
   ``1 - E_fine(wings) / E_fine(peak)`` with the wings 0.8 and 1 degree either side
   of the coarse peak: straight structures (text lines, label, collimation, printed
   border) give a fine peak that stands high above its wings, while long but not
   quite straight anatomy (a spine) can make a coarse peak (3 px bins) that hardly
   survives at the 0.2 px scale.

Choices measured (bench/README.md, "Content skew"): an inscribed-disk mask
(rotation-invariant support) lost the labels in the film corners and gave
0.1-1 degree errors on films; unit weights instead of gradient magnitude let
anatomy texture win; a linear detrend of the fine curve (whole window, or its
wings only) made documents and films slightly worse. Refusing an angle when the
near-horizontal and near-vertical families each peak confidently but > 1 degree apart
would catch the oblique-anatomy failure below, but drops two of deskew's pages (their
vertical family peaks confidently away from the text lines); a ratio test between the
two highest coarse peaks does not separate it either (0.10, films up to 0.16).

Sub-pixel precision (issue 3), measured on the 100 bed-less generated films (median /
p95 error of the answered, degrees) and on film_07 (hip) rotated by -1..1 degree in
0.05 steps, both dtypes (max error under 0.3 degree): integer points with 1 px linear
fine bins (before): 0.036 / 0.101, 0.217 (small tilts read as 0). Sub-pixel points
alone: 0.050 / 0.147, 0.070 (the bin-phase ripple above). Smoothed fine histogram
alone (sigma 0.5 px): 0.006 / 0.051, but 0.095 (tilts of 0.1 still read as 0). Both
(bins sigma/2 to sigma), sigma 0.5 / 0.35 / 0.25 / 0.2 / 0.15 px: film p95 0.052 /
0.042 / 0.040 / 0.030 / 0.030, hip median 0.028 / 0.015 / 0.006 / 0.004 / 0.002; 0.2
kept (a narrower fine peak approaches the 0.02 degree step), with bins of sigma
(sigma/2: same results, slower). A float (not 8-bit) blur before Sobel: no gain.
The fine contrast of the oblique-anatomy film is 0.106; the 80 other films the coarse
peak answers: >= 0.355; deskew's 8 pages: >= 0.47 (doc_input.jpeg 0.135, refused by
its coarse confidence 0.10 anyway), so the factor refuses that film alone (its
confidence 0.154 -> 0.065). It is one film: the threshold sits in a wide gap, not at
a measured optimum. On the 11 sample scans straightened and rotated by -15..15
degrees (0.75 steps, two crops; 902 bed-less crops): answered 737 -> 745, none > 0.5
degree off before or after.

The sign convention is that of :mod:`pipeline.geometry`: the angle by which the
content lies rotated, counter-clockwise positive as seen on screen (image y axis
down, as ``cv2.getRotationMatrix2D``); correcting it rotates by minus the angle.

References
----------
W. Postl, "Detection of linear oblique structures and skew scan in digitized
documents", Proc. 8th ICPR, 1986 (projection-profile skew: the angle that
maximises the energy of the projection).
H. S. Baird, "The skew angle of printed documents", Proc. SPSE 40th Conf., 1987.
J. Canny, "A computational approach to edge detection", IEEE TPAMI 8(6), 1986
(``cv2.Canny``).
F. Devernay, "A non-maxima suppression method for edge detection with sub-pixel
accuracy", INRIA Research Report RR-2724, 1995 (the parabola through the gradient
magnitude across the edge).
The ``deskew`` package (sbrunner/deskew, MIT) estimates the same quantity from a
Hough transform of Canny edges and a histogram of peak angles; it served as the
peer in ``bench/image_quality.py``, no code was taken from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi

#: Longest side of the working copy, pixels.
WORK_SIDE_PX = 1200
#: At most this many edge points enter the projections (an even subsample beyond).
MAX_POINTS = 120_000
#: Coarse search: angle step (degrees) and histogram bin (work pixels).
COARSE_STEP_DEG, COARSE_BIN_PX = 0.2, 3.0
#: Fine search: half-range and step (degrees), histogram bin (work pixels).
FINE_RANGE_DEG, FINE_STEP_DEG, FINE_BIN_PX = 0.4, 0.02, 0.2
#: Fine search: standard deviation of the Gaussian that smooths the fine histogram (work pixels).
FINE_SIGMA_PX = 0.2
#: Fine contrast: the wings of the fine peak are taken at these offsets from the coarse peak (degrees).
WING_OFFSETS_DEG = (-1.0, -0.8, 0.8, 1.0)
#: Fine contrast from which the confidence is not reduced (measured: straight structures >= 0.35,
#: the oblique anatomy of a chest film 0.10).
FULL_FINE_CONTRAST = 0.25
#: Half-width of the running median giving the trend of E(a), degrees.
TREND_HALF_DEG = 2.0
#: Default least confidence for an angle (documents measured >= 0.16, crops of plain chest films <= 0.05).
MIN_CONFIDENCE = 0.12


@dataclass(frozen=True)
class ContentSkew:
    """Result of :func:`estimate_content_skew`.

    Attributes
    ----------
    angle_deg : float or None
        Skew of the content in degrees, counter-clockwise positive on screen;
        None when no dominant direction was found (``confidence`` below
        ``min_confidence``, or too few edge points).
    confidence : float
        Sharp peak of the coarse projection energy above its local trend, as a
        fraction of the median energy (0 = flat), times
        ``min(1, fine_contrast / FULL_FINE_CONTRAST)`` where ``fine_contrast`` is
        the height of the fine (sub-pixel) peak above its wings 0.8-1 degree away,
        as a fraction of the peak (the fine search, and so this factor, is only
        run when the coarse value reaches ``min_confidence``). Measured: document
        pages 0.16-2.2, films with their label or collimation 0.1-10, the centre
        of a chest film (anatomy only) <= 0.05, noise ~0.
    n_points : int
        Edge points used.
    """

    angle_deg: float | None
    confidence: float
    n_points: int


def estimate_content_skew(
    image: np.ndarray,
    *,
    max_angle_deg: float = 20.0,
    min_confidence: float = MIN_CONFIDENCE,
    work_side_px: int = WORK_SIDE_PX,
) -> ContentSkew:
    """Estimate the skew of the content of an image (text lines, straight structures).

    Parameters
    ----------
    image : ndarray of shape (M, N), uint8 or uint16
        Grayscale image, either polarity (edges are used, not ink).
    max_angle_deg : float
        Search range, +- degrees (0 < max_angle_deg <= 44).
    min_confidence : float
        Below this confidence the angle is reported as None.
    work_side_px : int
        Longest side of the working copy, pixels (>= 64).

    Returns
    -------
    ContentSkew
        ``angle_deg`` in degrees within ``[-max_angle_deg, max_angle_deg]``,
        counter-clockwise positive on screen (correct by rotating by its negative),
        or None; the image itself is not changed.

    Raises
    ------
    TypeError
        ``image`` is not a 2-D uint8 or uint16 array.
    ValueError
        ``max_angle_deg`` or ``work_side_px`` out of range.

    Notes
    -----
    See the module docstring for the method. Measured (``bench/README.md``): on
    generated films with the bed cropped away, median 0.007, p95 0.027, max 0.078
    degrees over the 80 % answered; within 0.07 degrees of ``deskew``'s fine search
    on 7 of its 8 test pages. Cost ~0.02-0.3 s CPU per image (the resize bounds
    it; ~0.1 s for a 10-Mpx uint16 film). The content's dominant direction need not
    be the film's axis: a radiograph's own oblique structure can win. The one such
    case measured (6.9 degrees off, a spine) is refused by the fine-contrast factor;
    an oblique structure that is straight at sub-pixel scale would not be.

    References
    ----------
    W. Postl, Proc. 8th ICPR, 1986; H. S. Baird, Proc. SPSE 40th Conf., 1987;
    F. Devernay, INRIA RR-2724, 1995.
    """
    img = np.asarray(image)
    if img.ndim != 2 or img.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"expected a 2-D uint8 or uint16 image, got {img.dtype} of shape {img.shape}")
    if not 0 < max_angle_deg <= 44:
        raise ValueError("max_angle_deg must be in (0, 44]")
    if work_side_px < 64:
        raise ValueError("work_side_px must be >= 64")
    pts_h, pts_v = _edge_points(img, max_angle_deg, work_side_px)
    n = len(pts_h) + len(pts_v)
    if n < 200:
        return ContentSkew(None, 0.0, n)

    coarse = np.arange(-max_angle_deg, max_angle_deg + 1e-9, COARSE_STEP_DEG)
    e = _energy(pts_h, pts_v, coarse, COARSE_BIN_PX, 0.0)
    half = max(1, int(round(TREND_HALF_DEG / COARSE_STEP_DEG)))
    trend = ndi.median_filter(e, size=2 * half + 1, mode="reflect")
    base = float(np.median(e))
    sharp = e - trend
    k = int(np.argmax(sharp))
    confidence = float(sharp[k] / base) if base > 0 else 0.0
    if confidence < min_confidence:
        return ContentSkew(None, confidence, n)

    fine = coarse[k] + np.arange(-FINE_RANGE_DEG, FINE_RANGE_DEG + 1e-9, FINE_STEP_DEG)
    wings = coarse[k] + np.asarray(WING_OFFSETS_DEG)
    ew = _energy(pts_h, pts_v, np.concatenate([fine, wings]), FINE_BIN_PX, FINE_SIGMA_PX)
    ef = ew[: len(fine)]
    j = int(np.argmax(ef))
    fine_contrast = float(1.0 - ew[len(fine):].mean() / ef[j]) if ef[j] > 0 else 0.0
    confidence *= min(1.0, max(0.0, fine_contrast) / FULL_FINE_CONTRAST)
    if confidence < min_confidence:
        return ContentSkew(None, confidence, n)
    angle = float(fine[j])
    if 0 < j < len(ef) - 1:
        y0, y1, y2 = ef[j - 1], ef[j], ef[j + 1]
        denom = y0 - 2 * y1 + y2
        if denom < 0:
            angle += float(np.clip(0.5 * (y0 - y2) / denom, -0.5, 0.5)) * FINE_STEP_DEG
    angle = float(np.clip(angle, -max_angle_deg, max_angle_deg))
    return ContentSkew(angle, confidence, n)


# --- helpers -------------------------------------------------------------------------------------
def _edge_points(img: np.ndarray, max_angle_deg: float, work_side_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Edge points of the work copy as two float64 arrays of shape (n, 3), columns (x, y,
    weight): horizontal- and vertical-line candidates by gradient direction; x, y in work
    pixels from the centre, sub-pixel across the line (y for horizontal-line points, x for
    vertical-line points); weight = gradient magnitude."""
    rows, cols = img.shape
    s = min(1.0, work_side_px / max(rows, cols))
    small = img.astype(np.float32)
    if s < 1.0:
        small = cv2.resize(small, (max(1, round(cols * s)), max(1, round(rows * s))), interpolation=cv2.INTER_AREA)
    lo, hi = np.percentile(small, [0.5, 99.5])
    if hi - lo <= 0:
        return np.empty((0, 3)), np.empty((0, 3))
    u8 = np.clip((small - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    u8 = cv2.GaussianBlur(u8, (0, 0), 1.0)
    gx = cv2.Sobel(u8, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(u8, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.hypot(gx, gy)
    strong = mag[mag > 0]
    if strong.size < 200:
        return np.empty((0, 3)), np.empty((0, 3))
    # Canny thresholds: a step well above the typical (noise/texture) gradient
    t_hi = float(max(40.0, np.percentile(strong, 90)))
    edges = cv2.Canny(gx.astype(np.int16), gy.astype(np.int16), 0.5 * t_hi, t_hi, L2gradient=True)
    h, w = u8.shape
    yy, xx = np.nonzero(edges)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    ax, ay = np.abs(gx[yy, xx]), np.abs(gy[yy, xx])
    tol = math.tan(math.radians(min(max_angle_deg + 5.0, 45.0)))
    horiz = ax <= tol * ay  # gradient near vertical: a near-horizontal line
    vert = ay <= tol * ax
    wt = mag[yy, xx]
    # sub-pixel position of the edge across the line: vertex of the parabola through the
    # gradient magnitude at the point and its two neighbours along the column (horizontal-line
    # points) or the row (vertical-line points) (Devernay 1995)
    yh, xh = yy[horiz], xx[horiz]
    dy = _vertex(mag[np.maximum(yh - 1, 0), xh], mag[yh, xh], mag[np.minimum(yh + 1, h - 1), xh])
    yv, xv = yy[vert], xx[vert]
    dx = _vertex(mag[yv, np.maximum(xv - 1, 0)], mag[yv, xv], mag[yv, np.minimum(xv + 1, w - 1)])
    pts_h = np.column_stack([xh - cx, yh - cy + dy, wt[horiz]]).astype(np.float64)
    pts_v = np.column_stack([xv - cx + dx, yv - cy, wt[vert]]).astype(np.float64)
    total = len(pts_h) + len(pts_v)
    if total > MAX_POINTS:
        step = math.ceil(total / MAX_POINTS)
        pts_h, pts_v = pts_h[::step], pts_v[::step]
    return pts_h, pts_v


def _vertex(before: np.ndarray, at: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Offset (pixels, in [-0.5, 0.5]) of the vertex of the parabola through three equally
    spaced samples at -1, 0, +1; 0 where they do not form a maximum."""
    before, at, after = (np.asarray(v, dtype=np.float64) for v in (before, at, after))
    curv = before - 2.0 * at + after
    ok = curv < 0
    off = np.zeros(len(at))
    off[ok] = 0.5 * (before[ok] - after[ok]) / curv[ok]
    return np.clip(off, -0.5, 0.5)


def _energy(pts_h: np.ndarray, pts_v: np.ndarray, angles_deg: np.ndarray, bin_px: float,
            sigma_px: float) -> np.ndarray:
    """Weighted projection energy sum(h**2) for each trial angle (both point sets).

    ``h``: histogram of the projections with ``bin_px`` bins and linear (two-bin) weights,
    smoothed by a Gaussian of standard deviation ``sigma_px`` when ``sigma_px > 0``. With
    ``bin_px <= sigma_px`` the energy hardly depends on where the bin edges fall (the bins'
    phase), so a line's contribution does not change with its sub-pixel position.
    """
    kernel = None
    if sigma_px > 0:
        r = int(math.ceil(3.0 * sigma_px / bin_px))
        kernel = np.exp(-0.5 * (np.arange(-r, r + 1) * (bin_px / sigma_px)) ** 2)
        kernel /= kernel.sum()
    out = np.zeros(len(angles_deg))
    for i, a in enumerate(np.radians(angles_deg)):
        sa, ca = math.sin(a), math.cos(a)
        for pts, (px, py) in ((pts_h, (sa, ca)), (pts_v, (ca, -sa))):
            if len(pts) == 0:
                continue
            rho = (pts[:, 0] * px + pts[:, 1] * py) / bin_px
            rho -= rho.min()
            b = np.floor(rho)
            f = rho - b
            b = b.astype(np.intp)
            wt = pts[:, 2]
            hist = np.bincount(b, weights=wt * (1.0 - f), minlength=b.max() + 2)
            hist[1:] += np.bincount(b, weights=wt * f, minlength=b.max() + 1)[: len(hist) - 1]
            if kernel is not None:
                hist = np.convolve(hist, kernel)
            out[i] += float(np.dot(hist, hist))
    return out
