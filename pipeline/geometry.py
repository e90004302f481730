"""Find the film on the scanner bed, measure its skew, straighten and crop it.

A film scan is a darker film (with its anatomy) lying on a bright scanner bed,
rotated by a few degrees and sometimes running off the bed. The steps here:

1. :func:`find_film` segments the film on a downsampled copy (bed level from
   the scan border, threshold, morphology, largest component), takes the
   minimum-area rectangle of its outline as a first estimate, then refines each
   of the four film edges at full resolution: many intensity profiles across
   the edge, the sub-pixel position of the steepest bed/film step on each, and a
   robust total-least-squares line through those points. The skew is the
   weighted mean of the four side angles; the corners are the intersections of
   the four lines.
2. :func:`straighten` rotates by ``-skew_deg`` and crops to the film in a single
   ``cv2.warpAffine`` (one interpolation), keeping the dtype.

Conventions
-----------
Coordinates are (x, y) = (column, row) for points and corners, (row, col) for
boxes and shapes. ``skew_deg`` is the angle in degrees by which the film lay
rotated in the scan, counter-clockwise positive as seen on screen (image y axis
pointing down), the same sense as ``cv2.getRotationMatrix2D``. Correcting it
rotates by ``-skew_deg``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import cv2
import numpy as np

from filmflow.errors import BlankScanError, FilmNotFoundError
from pipeline.content_skew import estimate_content_skew
from pipeline.types import Geometry

#: Skews below this are not corrected, degrees: 0.01 deg moves the far corner of a 3000-px film by
#: half a pixel, while a bicubic resampling softens every pixel of it.
MIN_ROTATION_DEG = 0.01
#: Longest side of the working copy used for segmentation, pixels.
WORK_SIDE_PX = 400
#: A component must cover this fraction of the scan to count as a film.
MIN_FILM_FRACTION = 0.02
#: Share of each side (at each end) skipped when sampling edge points (rounded corners).
CORNER_SKIP = 0.1
#: A side's edge points scattered more than this (rms about their line, px) are no film edge; film
#: edges of the generated set fit within 0.5 px, wavy ones included.
MAX_EDGE_RMS_PX = 2.0
#: Most edge profiles per side (at least 2 px apart).
EDGE_PROFILES = 250


@dataclass(frozen=True)
class FilmDetection:
    """Result of :func:`find_film`.

    Attributes
    ----------
    quad : tuple of 4 (x, y) pairs
        Film corners in scan pixel coordinates (x = column, y = row; pixel
        centres at integers), clockwise from top-left. Corners of a film that
        runs off the scan may lie outside the image.
    skew_deg : float
        Angle in degrees, counter-clockwise positive on screen, in [-45, 45).
    film_count : int
        Number of film-sized regions on the bed (>1 means several films).
    touches_bed_edge : bool
        True when the film runs off the scan.
    bed_level : float
        Intensity of the bare scanner bed, in image units.
    sides_measured : int
        How many of the four edges were refined at sub-pixel precision (0 means
        the skew is the coarse minimum-area-rectangle estimate).
    skew_source : str
        Where ``skew_deg`` came from: ``edges`` (the film's edges on the bed),
        ``content`` (no film edge seen; :mod:`pipeline.content_skew` on the whole
        scan) or ``none`` (no film edge and no dominant direction: skew 0).
    """

    quad: tuple[tuple[float, float], ...]
    skew_deg: float
    film_count: int
    touches_bed_edge: bool
    bed_level: float
    sides_measured: int
    skew_source: str = "edges"


def find_film(image: np.ndarray) -> FilmDetection:
    """Locate the film on the bright scanner bed and measure its skew.

    Parameters
    ----------
    image : ndarray of shape (M, N), uint8 or uint16
        A positive scan: bright bed, darker film (invert negatives first, see
        :mod:`pipeline.polarity`).

    Returns
    -------
    FilmDetection

    Raises
    ------
    FilmNotFoundError
        Blank, all-black or all-white scan, or no film-sized dark region on the bed.

    Notes
    -----
    When no bright bed surrounds the film (a scan already cropped to the film),
    the whole image is returned as the film with ``skew_deg = 0`` and
    ``touches_bed_edge = True``; no content-based skew estimate is made.

    Edge points: for each side, intensity profiles along the outward normal
    (every ~2 px along the middle 80 % of the side, 0.5 px sampling, bilinear),
    smoothed (Gaussian, 1 sample), and the maximum of their derivative located
    to sub-pixel precision by a parabola through its three neighbours. Points
    within 3 px of the scan border are discarded (scanner-edge artefacts). Each
    side's line is a total-least-squares fit with iterative 3-MAD trimming; the
    skew is the mean of the four side angles weighted by ``n * L**2 / rms**2``
    (the inverse variance of a fitted line's angle).

    References
    ----------
    H. Freeman and R. Shapira, "Determining the minimum-area encasing rectangle
    for an arbitrary closed curve", Comm. ACM 18(7), 1975 (``cv2.minAreaRect``).
    OpenCV documentation, "Geometric Image Transformations" (``warpAffine``,
    ``getRotationMatrix2D`` angle convention).
    """
    img = _check_image(image)
    return _find_film(img, *_block_means(img))


def _block_means(img: np.ndarray) -> tuple[np.ndarray, int]:
    """The scan's working copy: means over ``s`` x ``s`` blocks (``s`` = ceil(longest side /
    :data:`WORK_SIDE_PX`); the last ``rows % s`` rows and ``cols % s`` columns dropped), float32,
    straight from the integer scan (no full-size float copy); and ``s``."""
    rows, cols = img.shape
    s = max(1, math.ceil(max(rows, cols) / WORK_SIDE_PX))
    small = cv2.resize(img[: max(1, rows // s) * s, : max(1, cols // s) * s], (max(1, cols // s), max(1, rows // s)),
                       interpolation=cv2.INTER_AREA).astype(np.float32)
    return small, s


def _find_film(img: np.ndarray, block_means: np.ndarray, s: int) -> FilmDetection:
    """:func:`find_film` on a checked scan and its :func:`_block_means` copy."""
    small = cv2.medianBlur(block_means, 3)  # median: dust specks
    cv2.GaussianBlur(small, (0, 0), 1.0, dst=small)  # in place: one fresh copy fewer (same values)

    lo, hi = _percentiles(small[::2, ::2], (0.5, 99.5))  # every 4th pixel of the smoothed copy suffices
    # the scan's maximum matters only for a contrast below 0.03 * 0.05 of the dtype's range
    low_contrast = hi - lo < 0.0015 * np.iinfo(img.dtype).max
    full_scale = 255.0 if img.dtype == np.uint8 else (max(cv2.minMaxLoc(img)[1], 1.0) if low_contrast else 0.0)
    if hi - lo < 0.03 * max(hi, 0.05 * full_scale):
        raise BlankScanError("scan is blank (no contrast): no film on the bed; check the scanner and rescan")

    ring_w = max(2, min(small.shape) // 100)
    ry, rx = _ring_coords(small.shape, ring_w)
    ring = small[ry, rx]
    # the bed is the brightest part of the border (a film may run off some sides)
    whole = _whole_image(img.shape)
    if _percentiles(ring, (90,))[0] < lo + 0.6 * (hi - lo):
        return whole  # no bright bed around the film: already cropped (or a negative)
    plane, sigma = _fit_bed_plane(rx, ry, ring, ring >= lo + 0.6 * (hi - lo))
    # uneven illumination of the bed, bed_map = col_term[None, :] + row_term[:, None] (float64)
    col_term = plane[1] * np.arange(small.shape[1], dtype=np.float32)
    row_term = plane[0] + plane[2] * np.arange(small.shape[0], dtype=np.float32)
    bed = _sorted_median(np.sort(plane[0] + plane[1] * rx + plane[2] * ry))
    margin = max(5.0 * sigma, 0.08 * (bed - lo))

    # share of the border ring not darker than the bed by the margin (small - bed_map there)
    if np.count_nonzero(ring - (col_term[rx] + row_term[ry]) >= -margin) / ring.size < 0.02:
        return whole  # (almost) no bed visible on the border
    mask = _darker_than_bed(small, col_term, row_term, margin)
    thr = bed - margin
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    # outer outlines of the 8-connected regions = the components of the hole-filled mask (padded:
    # findContours ignores the image's outermost pixels, where a film running off the scan lies)
    contours, _ = cv2.findContours(cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0),
                                   cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE, offset=(-1, -1))
    if not contours:
        raise FilmNotFoundError("no film found on the scanner bed (bed only); check the scan")
    # pixel count of a filled outline: polygon area through the pixel centres + half its perimeter + 1
    areas = np.array([cv2.contourArea(c) + 0.5 * cv2.arcLength(c, True) + 1.0 for c in contours])
    big = int(np.argmax(areas))
    total = small.shape[0] * small.shape[1]
    if areas.max() < MIN_FILM_FRACTION * total:
        raise FilmNotFoundError("no film-sized region on the scanner bed (only specks); check the scan")
    film_count = int(np.sum(areas >= max(MIN_FILM_FRACTION * total, 0.2 * areas.max())))
    x, y, w, h = cv2.boundingRect(contours[big])
    touches = bool(x <= 1 or y <= 1 or x + w >= small.shape[1] - 1 or y + h >= small.shape[0] - 1)

    rect = cv2.minAreaRect(contours[big])
    corners = cv2.boxPoints(rect).astype(np.float64) * s + (s - 1) / 2.0
    corners = _order_corners(corners)

    # one pass of profiles across the coarse rectangle's sides, wide enough for its error (the
    # edge points lie on the film edge whatever the profiles' slight tilt; a second, narrower pass
    # around the first lines changed skews by 0.0004 degrees median, 0.005 at most, on eval films
    # 0-199; on films with edges wobbling by more than 2 px it helped one in 236: 0.051 -> 0.014)
    lines, weights, angles = [], [], []
    fits = _refine_sides(img, corners, search=3.0 * s + 10.0, min_step=0.5 * (bed - thr), max_profiles=EDGE_PROFILES)
    for i, fit in enumerate(fits):
        p0, p1 = corners[i], corners[(i + 1) % 4]
        if fit is None:
            d = (p1 - p0) / _length(p1 - p0)
            lines.append((p0, d))
            continue
        c, d, npts, rms = fit
        lines.append((c, d))
        angles.append(_side_angle(i, d))
        length = _length(p1 - p0)
        weights.append(npts * length**2 / max(rms, 0.05) ** 2)
    corners = np.array([_intersect(lines[(i - 1) % 4], lines[i]) for i in range(4)])

    if angles:
        # the side angles are close to each other; average them as unit vectors
        a = np.radians(np.asarray(angles))
        wts = np.asarray(weights)
        skew = math.degrees(math.atan2(np.sum(wts * np.sin(a)), np.sum(wts * np.cos(a))))
    else:
        skew = _side_angle(0, (corners[1] - corners[0]) / _length(corners[1] - corners[0]))
    quad = tuple((float(x), float(y)) for x, y in corners)
    return FilmDetection(
        quad=quad,
        skew_deg=float(skew),
        film_count=film_count,
        touches_bed_edge=touches,
        bed_level=bed,
        sides_measured=len(angles),
    )


def _darker_than_bed(small: np.ndarray, col_term: np.ndarray, row_term: np.ndarray, margin: float) -> np.ndarray:
    """Pixels darker than the fitted bed by more than ``margin``.

    Parameters
    ----------
    small : ndarray of shape (R, C), float32
        The smoothed working copy, image units.
    col_term, row_term : ndarray of shape (C,) and (R,), float64
        The bed plane as ``bed_map = col_term[None, :] + row_term[:, None]``, image units.
    margin : float
        Image units.

    Returns
    -------
    ndarray of shape (R, C), uint8
        1 where ``small - bed_map < -margin`` (float64, as that expression), else 0. Computed
        over blocks of rows in one reused buffer: no (R, C) float64 map or difference is
        allocated (2-3x faster on the working copy, and no fresh memory pages).
    """
    rows, cols = small.shape
    out = np.empty((rows, cols), dtype=bool)
    # rows per block: a 112 KiB float64 buffer (below glibc's default 128 KiB mmap threshold)
    chunk = max(1, 14336 // cols)
    buf = np.empty((chunk, cols), dtype=np.float64)
    for i0 in range(0, rows, chunk):
        i1 = min(rows, i0 + chunk)
        b = buf[: i1 - i0]
        np.add(col_term[None, :], row_term[i0:i1, None], out=b)
        np.subtract(small[i0:i1], b, out=b)
        np.less(b, -margin, out=out[i0:i1])
    return out.view(np.uint8)


def estimate_skew(image: np.ndarray) -> float:
    """Skew of the film on the bed, degrees, counter-clockwise positive on screen.

    Parameters
    ----------
    image : ndarray of shape (M, N), uint8 or uint16

    Returns
    -------
    float
        Angle in degrees in [-45, 45); correcting rotates by its negative.

    Raises
    ------
    FilmNotFoundError
        See :func:`find_film`.
    """
    return find_film(image).skew_deg


def straighten(
    image: np.ndarray,
    *,
    max_skew_deg: float,
    margin_px: int = 0,
    detection: FilmDetection | None = None,
    content_min_confidence: float | None = None,
) -> tuple[np.ndarray, Geometry]:
    """Rotate the scan by ``-skew_deg`` and crop it to the film, in one interpolation.

    Parameters
    ----------
    image : ndarray of shape (M, N), uint8 or uint16
        The positive scan.
    max_skew_deg : float
        Largest skew corrected, degrees; a larger measured skew raises.
    margin_px : int
        Extra bed kept around the film on every side, pixels (>= 0).
    detection : FilmDetection, optional
        A detection already made on ``image`` (otherwise :func:`find_film` runs,
        or :func:`find_film_or_content` when ``content_min_confidence`` is set).
    content_min_confidence : float, optional
        When no film edge is found, take the skew from the image content if
        :func:`pipeline.content_skew.estimate_content_skew` is at least this
        confident (``geometry.content_skew_min_confidence``); None: edges only.
        A content-skewed scan is rotated onto an expanded canvas (its bounding
        box), so no corner is cut; the new corners get the scan's border level.

    Returns
    -------
    film : ndarray of shape (R, C), same dtype as ``image``
        The straightened film. Bicubic interpolation, clipped to the input's own
        [min, max] so that no value leaves the scanner's range. A skew below
        :data:`MIN_ROTATION_DEG` is not corrected: the film is cropped from the
        scan as it lies, with no resampling (a bed-less scan left unrotated is
        returned as it is, pixel for pixel).
    geometry : Geometry
        ``rotation_k`` 0 and ``orientation_decided`` False: orientation is
        decided later, from the label.

    Raises
    ------
    FilmNotFoundError
        No film found, or its skew exceeds ``max_skew_deg``.
    """
    img = _check_image(image)
    if margin_px < 0:
        raise ValueError("margin_px must be >= 0")
    if detection is not None:
        det = detection
    elif content_min_confidence is not None:
        det = find_film_or_content(img, min_confidence=content_min_confidence, max_angle_deg=min(max_skew_deg, 44.0))
    else:
        det = find_film(img)
    if abs(det.skew_deg) > max_skew_deg:
        raise FilmNotFoundError(
            f"film lies rotated by {det.skew_deg:.1f} degrees, more than geometry.max_skew_deg={max_skew_deg}; "
            "place the film straighter on the bed and rescan"
        )
    rows, cols = img.shape
    centre = ((cols - 1) / 2.0, (rows - 1) / 2.0)
    m = cv2.getRotationMatrix2D(centre, -det.skew_deg, 1.0)
    q = np.asarray(det.quad, dtype=np.float64)
    qr = q @ m[:, :2].T + m[:, 2]
    top, bottom = (qr[0, 1] + qr[1, 1]) / 2, (qr[2, 1] + qr[3, 1]) / 2
    left, right = (qr[0, 0] + qr[3, 0]) / 2, (qr[1, 0] + qr[2, 0]) / 2
    # keep pixels whose centre lies inside the film edge (the 50 % transition)
    # (pixel centres within _GRID_TOL of an integer count as on it: at 0 degrees the rotated corners
    # are the scan's own, up to rounding, and must give the scan's own size)
    r0, r1 = _ceil(top - margin_px), _floor(bottom + margin_px) + 1
    c0, c1 = _ceil(left - margin_px), _floor(right + margin_px) + 1
    if det.skew_source == "content":
        # the whole scan rotated: expand the canvas to its bounding box (no corner cut)
        r0, c0 = _floor(qr[:, 1].min()), _floor(qr[:, 0].min())
        r1, c1 = _ceil(qr[:, 1].max()) + 1, _ceil(qr[:, 0].max()) + 1
    elif det.touches_bed_edge:
        # never extend the crop beyond the rotated scan itself
        box = np.array([[0, 0], [cols - 1, 0], [cols - 1, rows - 1], [0, rows - 1]], dtype=np.float64) @ m[:, :2].T + m[:, 2]
        r0, c0 = max(r0, _ceil(box[:, 1].min())), max(c0, _ceil(box[:, 0].min()))
        r1, c1 = min(r1, _floor(box[:, 1].max()) + 1), min(c1, _floor(box[:, 0].max()) + 1)
    if r1 - r0 < 2 or c1 - c0 < 2:
        raise FilmNotFoundError("film region is degenerate after straightening; check the scan")
    m_crop = m.copy()
    m_crop[:, 2] -= (c0, r0)
    fill = float(np.clip(round(det.bed_level), 0, np.iinfo(img.dtype).max))
    if abs(det.skew_deg) < MIN_ROTATION_DEG:
        # no rotation (a straight film, a bed-less scan left unrotated, or a skew too small to be
        # worth a resampling): the crop of the unrotated quad's box, no interpolation
        r0, c0 = max(0, _ceil(q[:, 1].min() - margin_px)), max(0, _ceil(q[:, 0].min() - margin_px))
        r1, c1 = min(rows, _floor(q[:, 1].max() + margin_px) + 1), min(cols, _floor(q[:, 0].max() + margin_px) + 1)
        if r1 - r0 < 2 or c1 - c0 < 2:
            raise FilmNotFoundError("film region is degenerate; check the scan")
        film = img[r0:r1, c0:c1].copy()
    else:
        film = cv2.warpAffine(
            img, m_crop, (c1 - c0, r1 - r0), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=fill
        )
        # bicubic overshoot: back into the input's own range (one min/max pass over the input;
        # no clip pass when that range is the whole dtype, where the warp already saturates)
        vmin, vmax, _, _ = cv2.minMaxLoc(img)
        lo, hi = int(min(vmin, fill)), int(max(vmax, fill))
        # (in place with cv2.max/cv2.min: same values as np.clip, ~5x faster on uint16)
        if lo > 0:
            cv2.max(film, lo, dst=film)
        if hi < np.iinfo(img.dtype).max:
            cv2.min(film, hi, dst=film)
    fb = (
        max(0, math.floor(q[:, 1].min())),
        max(0, math.floor(q[:, 0].min())),
        min(rows, math.ceil(q[:, 1].max()) + 1),
        min(cols, math.ceil(q[:, 0].max()) + 1),
    )
    geom = Geometry(
        skew_deg=det.skew_deg,
        film_quad=det.quad,
        film_box=fb,
        crop_shape=film.shape,
        touches_bed_edge=det.touches_bed_edge,
        film_count=det.film_count,
        rotation_k=0,
        orientation_decided=False,
        inverted=False,
        skew_source=det.skew_source,
        bed_level=float(det.bed_level),
    )
    return film, geom


# --- helpers -------------------------------------------------------------------------------------
#: Distance from an integer below which a pixel coordinate counts as that integer (float rounding).
_GRID_TOL = 1e-6


def _ceil(x: float) -> int:
    return math.ceil(x - _GRID_TOL)


def _floor(x: float) -> int:
    return math.floor(x + _GRID_TOL)


def _check_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 2 or img.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"expected a 2-D uint8 or uint16 image, got {img.dtype} of shape {img.shape}")
    return img


def _fit_bed_plane(x: np.ndarray, y: np.ndarray, v: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares plane ``v = a + b x + c y`` through the bed pixels of the
    border, trimming outliers (film, dust) at 3 MAD; returns (a, b, c) and the
    robust residual sigma.

    Parameters
    ----------
    x, y : ndarray of shape (P,), int
        Column and row of each border pixel (working-copy pixels).
    v : ndarray of shape (P,), float32
        Their values, image units.
    keep : ndarray of shape (P,), bool
        The pixels taken as bed to start with.

    Returns
    -------
    coef : ndarray of shape (3,), float64
        (a, b, c): image units, and image units per working-copy pixel.
    sigma : float
        1.4826 x the median absolute deviation of the kept pixels' residuals, image units.

    Raises
    ------
    numpy.linalg.LinAlgError
        The kept pixels do not span a plane (all on one line).
    """
    a = np.column_stack([np.ones_like(x, dtype=np.float64), x, y])
    for _ in range(4):
        # np.compress: the rows of a[keep] (the same values), several times faster on (P, 3)
        ak = np.compress(keep, a, axis=0)
        coef = np.linalg.solve(ak.T @ ak, ak.T @ np.compress(keep, v))  # normal equations of the fit
        r = v - a @ coef
        rs = np.sort(np.compress(keep, r))
        rs -= _sorted_median(rs)
        np.abs(rs, out=rs)
        rs.sort()
        sigma = 1.4826 * _sorted_median(rs)
        new = np.abs(r)
        new = new <= max(3.0 * sigma, 1e-6)
        new &= keep
        if np.count_nonzero(new) < 10 or np.array_equal(new, keep):
            break
        keep = new
    return coef, sigma


def _ring_coords(shape: tuple[int, int], w: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the border ring ``w`` pixels wide, in row-major order (as ``np.nonzero``
    of the ring's mask, without scanning the whole mask)."""
    rows, cols = shape
    if rows <= 2 * w or cols <= 2 * w:
        border = np.zeros(shape, dtype=bool)
        border[:w], border[-w:], border[:, :w], border[:, -w:] = True, True, True, True
        return np.nonzero(border)
    mid = np.arange(w, rows - w)
    every = np.arange(cols)
    sides = np.concatenate([np.arange(w), np.arange(cols - w, cols)])
    ry = np.concatenate([np.repeat(np.arange(w), cols), np.repeat(mid, 2 * w), np.repeat(np.arange(rows - w, rows), cols)])
    rx = np.concatenate([np.tile(every, w), np.tile(sides, mid.size), np.tile(every, w)])
    return ry, rx


def _length(v: np.ndarray) -> float:
    """Euclidean length of a 2-vector: ``np.linalg.norm``'s own arithmetic (the square root of
    ``v.dot(v)``, the same value) without its per-call overhead."""
    return math.sqrt(float(v.dot(v)))


def _whole_image(shape: tuple[int, int]) -> FilmDetection:
    rows, cols = shape
    quad = ((0.0, 0.0), (cols - 1.0, 0.0), (cols - 1.0, rows - 1.0), (0.0, rows - 1.0))
    return FilmDetection(
        quad=quad, skew_deg=0.0, film_count=1, touches_bed_edge=True, bed_level=0.0, sides_measured=0, skew_source="none"
    )


def _order_corners(pts: np.ndarray) -> np.ndarray:
    """Order 4 rectangle corners clockwise on screen, starting with the one whose
    outgoing edge points within [-45, 45) degrees of +x (the top edge)."""
    c = pts.mean(axis=0)
    order = np.argsort(np.arctan2(pts[:, 1] - c[1], pts[:, 0] - c[0]))  # clockwise on screen (y down)
    pts = pts[order]
    for i in range(4):
        d = pts[(i + 1) % 4] - pts[i]
        phi = math.degrees(math.atan2(d[1], d[0]))
        if -45.0 <= phi < 45.0:
            return np.roll(pts, -i, axis=0)
    return pts


def _side_angle(i: int, d: np.ndarray) -> float:
    """Skew (ccw positive on screen) implied by the direction ``d`` of side ``i``
    (0 top going +x, 1 right going +y, 2 bottom going -x, 3 left going -y)."""
    dx, dy = float(d[0]), float(d[1])
    a = [(-dy, dx), (dx, dy), (dy, -dx), (-dx, -dy)][i]
    return math.degrees(math.atan2(*a))


def _refine_sides(
    img: np.ndarray, corners: np.ndarray, *, search: float, min_step: float, max_profiles: int = 500
) -> list[tuple[np.ndarray, np.ndarray, int, float] | None]:
    """Sub-pixel edge points across each side ``corners[i] -> corners[i + 1]`` and a robust line
    through each side's points (the profiles of all four sides sampled and differentiated in one pass).

    Parameters
    ----------
    img : ndarray of shape (M, N), uint8 or uint16
        The scan.
    corners : ndarray of shape (4, 2), float64
        Current film corners (x, y), clockwise from top-left, scan pixels.
    search : float
        Half-length of each profile across the edge, pixels (at least 2: about ``4 search + 1``
        samples per profile, 0.5 px apart).
    min_step : float
        Least rise from the film to the bed along a profile (mean of its 4 smoothed samples at
        each end), image units.
    max_profiles : int
        Most profiles per side (at least 2 px apart).

    Returns
    -------
    list of 4 (tuple or None)
        Per side, (point on line (2,), unit direction p0->p1 (2,), inlier count, rms residual px),
        or None when fewer than 12 usable edge points were found or they scatter (rms above
        :data:`MAX_EDGE_RMS_PX`).
    """
    rows, cols = img.shape
    k = np.arange(-search, search + 0.25, 0.5)
    # per live side: (index, profile rows a:b, base x, base y, direction t, outward normal (nx, ny))
    sides = []
    start = 0
    for i in range(4):
        p0, p1 = corners[i], corners[(i + 1) % 4]
        length = _length(p1 - p0)
        t = (p1 - p0) / length
        tx, ty = float(t[0]), float(t[1])
        step = max(2.0, length / max_profiles)
        u = np.arange(CORNER_SKIP * length, (1 - CORNER_SKIP) * length, step)
        if u.size < 12:
            continue
        bx, by = p0[0] + u * tx, p0[1] + u * ty
        # base points beyond the scan are dropped (its samples would repeat the border value:
        # flat, no false edge there); bx and by are monotonic along the side, so when both ends
        # are inside, all are
        x_lo, x_hi = sorted((float(bx[0]), float(bx[-1])))
        y_lo, y_hi = sorted((float(by[0]), float(by[-1])))
        n_ok = u.size
        if not (x_lo >= 0 and x_hi <= cols - 1 and y_lo >= 0 and y_hi <= rows - 1):
            ok = (bx >= 0) & (bx <= cols - 1) & (by >= 0) & (by <= rows - 1)
            n_ok = int(np.count_nonzero(ok))
            if n_ok < 12:
                continue
            bx, by = bx[ok], by[ok]
        # left normal of a clockwise outline points outward
        sides.append((i, start, start + n_ok, bx, by, t, ty, -tx))
        start += n_ok
    if not sides:
        return [None] * 4
    # the (U, K) sample coordinates base + k * normal, computed in float64 and stored in float32
    # (remap rounds them to 1/32 px); the normal is constant along a side, so k * normal is one
    # (K,) row per side; bilinear samples, beyond the scan its border value
    map_x = np.empty((start, k.size), dtype=np.float32)
    map_y = np.empty((start, k.size), dtype=np.float32)
    for _, a, b, bx, by, _, nx, ny in sides:
        np.add(bx[:, None], (k * nx)[None, :], out=map_x[a:b])
        np.add(by[:, None], (k * ny)[None, :], out=map_y[a:b])
    samples = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # Gaussian smoothing (sigma 1 sample, mirrored ends) and its central difference, each one
    # correlation along the profiles; outward: film (dark) -> bed (bright) is a rise. Only the
    # 4 smoothed samples at each end are used: smoothed on the end 8 columns (the kernel reaches
    # 4 beyond them; the ends' mirroring is the whole profile's)
    grad = cv2.filter2D(samples, cv2.CV_64F, _PROFILE_DERIV, borderType=cv2.BORDER_REFLECT)
    n_k = k.size
    head = cv2.filter2D(samples[:, :8], cv2.CV_64F, _PROFILE_SMOOTH, borderType=cv2.BORDER_REFLECT)
    tail = cv2.filter2D(samples[:, -8:], cv2.CV_64F, _PROFILE_SMOOTH, borderType=cv2.BORDER_REFLECT)
    # steepest rise inside the profile (columns 1 .. K-2): the first maximum of each row with the
    # end columns set to -inf for the search (argmax of the strided grad[:, 1:-1] would copy it)
    ends = grad[:, [0, -1]]
    grad[:, [0, -1]] = -np.inf
    j = np.argmax(grad, axis=1)
    grad[:, [0, -1]] = ends
    flat = grad.ravel()
    at = np.arange(0, start * n_k, n_k) + j
    g0, g1, g2 = flat[at - 1], flat[at], flat[at + 1]
    denom = g0 - 2 * g1 + g2
    off = np.where(denom < 0, 0.5 * (g0 - g2) / np.where(denom == 0, -1, denom), 0.0)
    off = np.clip(off, -0.5, 0.5)
    stepsize = _mean4(tail[:, -4:]) - _mean4(head[:, :4])
    good = (stepsize > min_step) & (j > 1) & (j < n_k - 2)
    pos = k[0] + (j + off) * 0.5
    # edge points of all profiles at once, base + pos * normal; steps right at the scan border
    # are scanner-edge artefacts, not the film edge
    counts = [sd[2] - sd[1] for sd in sides]
    ex = np.concatenate([sd[3] for sd in sides]) + pos * np.repeat([sd[6] for sd in sides], counts)
    ey = np.concatenate([sd[4] for sd in sides]) + pos * np.repeat([sd[7] for sd in sides], counts)
    usable = good & (ex > 3.0) & (cols - 1 - ex > 3.0) & (ey > 3.0) & (rows - 1 - ey > 3.0)
    fits: list[tuple[np.ndarray, np.ndarray, int, float] | None] = [None] * 4
    for i, a, b, _, _, t, _, _ in sides:
        use = usable[a:b]
        if np.count_nonzero(use) < 12:
            continue
        fit = _robust_line(ex[a:b][use], ey[a:b][use], t)
        # scattered points (anatomy inside a film that fills the scan) are not a straight film edge
        fits[i] = None if fit is not None and fit[3] > MAX_EDGE_RMS_PX else fit
    return fits


def _mean4(a: np.ndarray) -> np.ndarray:
    """Row means of an (N, 4) float64 array: ``a.mean(axis=1)``'s value (numpy adds fewer than 8
    values left to right, then divides by the count), ~4x faster on these short rows."""
    s = a[:, 0] + a[:, 1]
    s += a[:, 2]
    s += a[:, 3]
    s /= 4
    return s


def _profile_kernels() -> tuple[np.ndarray, np.ndarray]:
    """1 x 9 Gaussian (sigma 1 sample, radius 4, as ``scipy.ndimage.gaussian_filter1d``) and
    1 x 11 kernel of its central difference ``(s[i+1] - s[i-1]) / 2`` (``np.gradient`` inside a
    profile), for ``cv2.filter2D`` (a correlation)."""
    x = np.arange(-4, 5, dtype=np.float64)
    g = np.exp(-0.5 * x * x)
    g /= g.sum()
    gp = np.pad(g, 2)  # g at offsets -6..6
    d = 0.5 * (gp[:-2] - gp[2:])  # offsets -5..5: coefficient of s[i + o] is (g(o - 1) - g(o + 1)) / 2
    return g[None, :], d[None, :]


_PROFILE_SMOOTH, _PROFILE_DERIV = _profile_kernels()


def _robust_line(
    x: np.ndarray, y: np.ndarray, t_hint: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int, float] | None:
    """Total-least-squares line through the points (x, y) with iterative trimming of outliers.

    Parameters
    ----------
    x, y : ndarray of shape (P,), float64
        Point coordinates, pixels (contiguous).
    t_hint : ndarray of shape (2,), float64
        Approximate direction of the line; the returned direction points the same way.

    Returns
    -------
    (centre, direction, inliers, rms) or None
        ``centre`` (2,) float64, the inliers' centroid; ``direction`` (2,) float64, unit vector;
        the inlier count; their rms distance from the line, pixels. None when fewer than 12
        points survive the trimming (|residual - median| <= max(3 MAD, 0.3 px), up to 5 rounds).
    """
    xk, yk, keep = x, y, None
    for _ in range(5):
        n = xk.size
        # centroid (the float64 sum / count of ndarray.mean) and principal axis of the 2x2 scatter
        # matrix (closed form of the SVD's first vector)
        cx, cy = float(np.add.reduce(xk)) / n, float(np.add.reduce(yk)) / n
        dx, dy = xk - cx, yk - cy
        theta = 0.5 * math.atan2(2.0 * float(dx.dot(dy)), float(dx.dot(dx)) - float(dy.dot(dy)))
        d = np.array([math.cos(theta), math.sin(theta)])
        if d.dot(t_hint) < 0:
            d = -d
        # signed distance of every point along the normal (-d_y, d_x); with no point trimmed yet,
        # dx and dy are already x - cx and y - cy (and are not needed any more)
        r, ry = (dx, dy) if keep is None else (x - cx, y - cy)
        r *= -d[1]
        ry *= d[0]
        r += ry
        rk = r if keep is None else r[keep]
        rs = np.sort(rk)
        med = _sorted_median(rs)
        rs -= med
        np.abs(rs, out=rs)
        rs.sort()
        mad = 1.4826 * _sorted_median(rs)
        dev = r - med
        np.abs(dev, out=dev)
        new = dev <= max(3.0 * mad, 0.3)
        n_new = int(np.count_nonzero(new))
        if n_new < 12:
            return None
        if keep is None and n_new == new.size or keep is not None and n_new == n and np.array_equal(new, keep):
            break
        keep = new
        xk, yk = x[keep], y[keep]
    rk = r if keep is None else r[keep]
    rms = math.sqrt(float(np.add.reduce(rk * rk)) / rk.size)
    return np.array([cx, cy]), d, int(rk.size), rms


def _sorted_median(x: np.ndarray) -> float:
    """Median of a sorted non-empty 1-D array (``np.median``'s value: the mean of the two middle
    values, as numpy's lerp at t = 0.5)."""
    n = x.size
    xa, xb = float(x[(n - 1) // 2]), float(x[n // 2])
    return xb - (xb - xa) * 0.5


def _percentiles(a: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """``np.percentile(a, q)`` (its default linear method, the same formula and float64
    arithmetic) for each ``q`` in ``qs``, from one ``np.sort`` of ``a`` (flattened)."""
    x = np.sort(a, axis=None)
    n = x.size
    out = []
    for q in qs:
        f = q / 100.0
        virtual = n * f + (1 + f * (1 - 1 - 1)) - 1  # numpy's (alpha, beta) = (1, 1) virtual index
        lo = math.floor(virtual)
        t = virtual - lo
        lo = min(max(lo, 0), n - 1)
        xa, xb = x[lo], x[min(lo + 1, n - 1)]
        d = float(xb - xa)  # the difference in the array's dtype, as numpy's lerp
        out.append(float(xb) - d * (1 - t) if t >= 0.5 else float(xa) + d * t)
    return out


def _intersect(l1: tuple[np.ndarray, np.ndarray], l2: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    (c1, d1), (c2, d2) = l1, l2
    # c1 + s d1 = c2 + u d2, by Cramer's rule on the 2 x 2 system [d1, -d2] (s, u) = c2 - c1
    det = float(d2[0] * d1[1] - d1[0] * d2[1])
    if abs(det) < 1e-9:
        return (c1 + c2) / 2
    e = c2 - c1
    s = float(d2[0] * e[1] - e[0] * d2[1]) / det
    return c1 + s * d1


# --- content-based skew when no film edge is seen (issue 3) --------------------------------------
#: Below this share of the scan border looking like bare bed (bright and flat), the film may fill the scan.
BED_BORDER_MIN = 0.5
#: With little bed on the border, >= 3 film edges within this of a confident content skew are kept, degrees.
EDGES_CONTENT_AGREE_DEG = 1.0
#: With little bed and no content skew, edges are kept only if at least this many sides were measured,
FRAME_MIN_SIDES = 3
#: their quadrilateral's corners are within this of 90 degrees,
FRAME_SQUARE_DEG = 1.5
#: and the middle of each side lies within this share of the scan's shorter side of its scan border.
FRAME_BORDER_FRACTION = 0.1


def find_film_or_content(image: np.ndarray, *, min_confidence: float, max_angle_deg: float = 20.0) -> FilmDetection:
    """:func:`find_film`, falling back to the skew of the image content when no film edge is seen.

    Parameters
    ----------
    image : ndarray of shape (M, N), uint8 or uint16
        The positive scan.
    min_confidence : float
        Least :attr:`pipeline.content_skew.ContentSkew.confidence` accepted.
    max_angle_deg : float
        Content skew search range, +- degrees (at most 44).

    Returns
    -------
    FilmDetection
        From :func:`find_film` when it measured film edges (``skew_source``
        ``edges``) or found a film smaller than 90 % of the scan. Otherwise (no
        bright bed around the film, no film-sized region on the bed, or a
        "film" covering the scan with no edge measured) :func:`content_detection`.
        Also :func:`content_detection` when less than :data:`BED_BORDER_MIN`
        of the scan border is bare bed (bright and flat: the film may fill the
        scan, and bright anatomy pass for bed) and the content skew is
        confident, unless three or more edges were measured and agree with it
        within :data:`EDGES_CONTENT_AGREE_DEG`. With little bare bed and no
        confident content skew, the edges are kept only when they frame the scan
        (:data:`FRAME_MIN_SIDES` or more measured, a rectangle within
        :data:`FRAME_SQUARE_DEG`, every side within :data:`FRAME_BORDER_FRACTION`
        of its scan border); otherwise the whole scan with ``skew_source``
        ``none`` and skew 0 (no rotation rather than a wrong one; QC holds it:
        ``no_bed_visible`` for the whole scan, ``skew_unmeasured`` otherwise).

    Raises
    ------
    FilmNotFoundError
        As :func:`find_film` when it found no film and the content has no
        dominant direction either, on a blank scan (:class:`BlankScanError`) or
        a scan whose border is mostly bare bed (a bed with only specks on it).
        A scan with no bed on its border is a film filling the frame: it is
        returned whole with ``skew_source`` ``none``, not refused.
    """
    img = _check_image(image)
    block_means, s = _block_means(img)
    try:
        det, missed = _find_film(img, block_means, s), None
    except FilmNotFoundError as exc:
        det, missed = None, exc
    if det is not None and (det.sides_measured > 0 or cv2.contourArea(np.float32(det.quad)) < 0.9 * img.size):
        if _bed_border_fraction(block_means) >= BED_BORDER_MIN:
            return det  # film edges measured (or a film smaller than the scan) on a visible bed
        content = content_detection(img, min_confidence=min_confidence, max_angle_deg=max_angle_deg)
        if content.skew_source == "none":
            # the content cannot tell: keep only edges that frame the scan (anatomy passes for
            # one or two "edges" at any angle); else no rotation, and QC holds it (no_bed_visible)
            return det if _edges_frame_scan(det, img.shape) else dataclasses.replace(content, film_count=det.film_count)
        if det.sides_measured >= 3 and abs(content.skew_deg - det.skew_deg) <= EDGES_CONTENT_AGREE_DEG:
            return det  # three or more film edges agree with the content
        return dataclasses.replace(content, film_count=det.film_count)
    content = content_detection(img, min_confidence=min_confidence, max_angle_deg=max_angle_deg)
    if content.skew_source == "none" and missed is not None and (
        isinstance(missed, BlankScanError) or _bed_border_fraction(block_means) >= BED_BORDER_MIN
    ):
        # a blank scan, or a bed with no film-sized region on it; with no bed on the border the
        # scan is a film filling the frame, left unrotated for review (no_bed_visible)
        raise missed
    return content if det is None else dataclasses.replace(content, film_count=det.film_count)


def content_detection(image: np.ndarray, *, min_confidence: float, max_angle_deg: float = 20.0) -> FilmDetection:
    """The whole scan as the film, skewed as its content (text lines, straight structures).

    Parameters
    ----------
    image : ndarray of shape (M, N), uint8 or uint16
        A scan with no film edge visible (the film or page fills it).
    min_confidence : float
        Least :attr:`pipeline.content_skew.ContentSkew.confidence` accepted.
    max_angle_deg : float
        Content skew search range, +- degrees (at most 44).

    Returns
    -------
    FilmDetection
        ``quad`` the scan's corners, ``touches_bed_edge`` True, ``sides_measured``
        0; ``skew_deg`` from :func:`pipeline.content_skew.estimate_content_skew`
        with ``skew_source`` ``content`` when at least ``min_confidence``, else
        0 and ``none``. ``bed_level`` is the median of the scan's border ring
        (1 % of the shorter side): :func:`straighten` fills the corners that the
        rotation uncovers with it.
    """
    img = _check_image(image)
    whole = _whole_image(img.shape)
    est = estimate_content_skew(img, max_angle_deg=max_angle_deg, min_confidence=min_confidence)
    if est.angle_deg is None:
        return whole
    w = max(2, min(img.shape) // 100)
    ring = np.concatenate([img[:w].ravel(), img[-w:].ravel(), img[:, :w].ravel(), img[:, -w:].ravel()])
    return dataclasses.replace(whole, skew_deg=est.angle_deg, bed_level=float(np.median(ring)), skew_source="content")


def _edges_frame_scan(det: FilmDetection, shape: tuple[int, int]) -> bool:
    """True when ``det``'s edges can be a film filling the scan: :data:`FRAME_MIN_SIDES` or more
    sides measured, corners within :data:`FRAME_SQUARE_DEG` of square, and the middle of each
    side (top, right, bottom, left) within :data:`FRAME_BORDER_FRACTION` of the shorter side
    from the matching scan border. Measured on bed-less generated films: edges found inside the
    anatomy had 0-2 sides or corners 0.5-0.9 of the shorter side away from the scan's."""
    if det.sides_measured < FRAME_MIN_SIDES:
        return False
    rows, cols = shape
    q = np.asarray(det.quad, dtype=np.float64)
    for i in range(4):
        a, b = q[i] - q[(i - 1) % 4], q[(i + 1) % 4] - q[i]
        cos = abs(float(a @ b)) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12)
        if math.degrees(math.asin(min(1.0, cos))) > FRAME_SQUARE_DEG:
            return False
    mid = (q + np.roll(q, -1, axis=0)) / 2.0  # top, right, bottom, left side middles
    gaps = (mid[0, 1], cols - 1 - mid[1, 0], rows - 1 - mid[2, 1], mid[3, 0])
    return all(abs(g) <= FRAME_BORDER_FRACTION * min(rows, cols) for g in gaps)


def _bed_border_fraction(block_means: np.ndarray) -> float:
    """Share of the scan's border ring (2 % of the shorter side of the :func:`_block_means`
    copy, at most WORK_SIDE_PX long) that looks like bare bed: within 15 % of the range below the
    bright end (99.5th percentile of every 4th pixel) and flat (5x5 local standard deviation
    <= 3 % of the range)."""
    small = block_means
    lo, hi = _percentiles(small[::2, ::2], (0.5, 99.5))
    if hi <= lo:
        return 0.0
    w = max(3, min(small.shape) // 50)
    rows, cols = small.shape
    if rows <= 2 * w + 4 or cols <= 2 * w + 4:
        blocks = [small]  # the ring is (nearly) the whole copy
        ring = np.zeros(small.shape, dtype=bool)
        ring[:w], ring[-w:], ring[:, :w], ring[:, -w:] = True, True, True, True
        keep = [[ring]]
    else:
        # the four strips of the ring, each with the 2 rows or columns the 5 x 5 window reaches
        # beyond it (the same mirrored scan border as a whole-copy box filter), in two blocks of
        # 2w + 4 rows: the top strip over the bottom one, and the left strip over the right one,
        # transposed. No counted pixel's window reaches across a block's seam, and the box sums
        # are exact (cv2.blur sums float32 in float64; the block means are integers), so every
        # value is the whole-copy filter's. The side strips' ends are counted once, in the top
        # and bottom strips.
        blocks = [np.vstack([small[: w + 2], small[-w - 2 :]]),
                  np.vstack([small[:, : w + 2].T, small[:, -w - 2 :].T])]
        keep = [[(slice(0, w), slice(None)), (slice(w + 4, None), slice(None))],
                [(slice(0, w), slice(w, rows - w)), (slice(w + 4, None), slice(w, rows - w))]]
    n_bed = n_ring = 0
    for block, ks in zip(blocks, keep):
        mean = cv2.blur(block, (5, 5))
        sd = np.sqrt(np.maximum(cv2.blur(block * block, (5, 5)) - mean * mean, 0.0))
        bed = (mean >= hi - 0.15 * (hi - lo)) & (sd <= 0.03 * (hi - lo))
        for k in ks:
            n_bed += int(np.count_nonzero(bed[k]))
            n_ring += bed[k].size
    return n_bed / n_ring
