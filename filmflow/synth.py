"""Synthetic film scans made from real radiographs: for sample_scans/, tests and benchmarks.

Nothing here is used by the migration itself. Every generator takes an explicit
``numpy.random.Generator`` so outputs are reproducible from a seed.

Label layout (a flashed ID card imprint, dark text on a light patch)::

    ST. ELSEWHERE GENERAL HOSPITAL
    NAME: DOE, JANE
    ID: 00123456  DOB: 03/14/1956  SEX: F
    DATE: 2019-04-02  ACC: A1234567
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"))
FONTS = {
    "mono": ("DejaVuSansMono-Bold.ttf", "LiberationMono-Bold.ttf"),
    "sans": ("DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf"),
    "mono_regular": ("DejaVuSansMono.ttf", "LiberationMono-Regular.ttf"),
    "courier": ("LiberationMono-Bold.ttf",),  # typewriter-like (Courier metrics), plain zero
}
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def font_path(kind: str = "mono") -> Path:
    """Path of a TrueType font of ``kind`` (``mono``, ``sans``, ``mono_regular``).

    Raises
    ------
    FileNotFoundError
        When no candidate font is installed (Debian ``fonts-dejavu-core`` provides them).
    """
    for name in FONTS[kind]:
        for d in FONT_DIRS:
            if (d / name).is_file():
                return d / name
    raise FileNotFoundError(f"no {kind} font found; install Debian's fonts-dejavu-core")


def format_date(da: str, style: str) -> str:
    """Format a DICOM DA ``YYYYMMDD`` as printed on a label.

    ``style`` is ``iso`` (2019-04-02), ``us`` (04/02/2019), ``eu`` (02.04.2019)
    or ``mon`` (02-APR-2019).
    """
    d = _dt.date(int(da[:4]), int(da[4:6]), int(da[6:8]))
    if style == "iso":
        return d.isoformat()
    if style == "us":
        return f"{d.month:02d}/{d.day:02d}/{d.year}"
    if style == "eu":
        return f"{d.day:02d}.{d.month:02d}.{d.year}"
    if style == "mon":
        return f"{d.day:02d}-{_MONTHS[d.month - 1]}-{d.year}"
    raise ValueError(f"unknown date style {style!r}")


def label_lines(fields: dict[str, str], date_style: str = "iso") -> list[str]:
    """The text lines printed on a label for DICOM-keyword ``fields``.

    ``PatientName`` is DICOM PN (``FAMILY^GIVEN``) and printed ``FAMILY, GIVEN``.
    """
    family, _, given = fields["PatientName"].partition("^")
    lines = [fields.get("InstitutionName", "")] if fields.get("InstitutionName") else []
    lines.append(f"NAME: {family}, {given.replace('^', ' ')}".rstrip(", "))
    l3 = f"ID: {fields['PatientID']}  DOB: {format_date(fields['PatientBirthDate'], date_style)}"
    if fields.get("PatientSex"):
        l3 += f"  SEX: {fields['PatientSex']}"
    lines.append(l3)
    l4 = f"DATE: {format_date(fields['StudyDate'], date_style)}"
    if fields.get("AccessionNumber"):
        l4 += f"  ACC: {fields['AccessionNumber']}"
    lines.append(l4)
    return lines


def render_label(
    fields: dict[str, str],
    *,
    cap_height_px: int = 24,
    font: str = "mono",
    date_style: str = "iso",
    padding_px: int | None = None,
) -> np.ndarray:
    """Render a flashed ID label: dark text on a light patch.

    Parameters
    ----------
    fields : dict
        DICOM keyword -> value (``PatientName`` as PN, dates as DA).
    cap_height_px : int
        Approximate height of capital letters, pixels.
    font : str
        Font kind, see :data:`FONTS`.
    date_style : str
        See :func:`format_date`.

    Returns
    -------
    ndarray of shape (H, W), float32 in [0, 1]
        Reflectance-like intensity: 1 = white patch, 0 = black ink.
    """
    size = max(6, int(round(cap_height_px / 0.73)))
    fnt = ImageFont.truetype(str(font_path(font)), size)
    lines = label_lines(fields, date_style)
    pad = padding_px if padding_px is not None else size // 2
    line_h = int(size * 1.35)
    width = max(int(fnt.getlength(t)) for t in lines) + 2 * pad
    height = line_h * len(lines) + 2 * pad
    img = Image.new("L", (width, height), 235)
    draw = ImageDraw.Draw(img)
    for i, t in enumerate(lines):
        draw.text((pad, pad + i * line_h), t, fill=25, font=fnt)
    return np.asarray(img, dtype=np.float32) / 255.0


# --- film scans ------------------------------------------------------------------------------------
#: Optical density of clear film base + fog, and of the darkest (fully exposed) film.
D_MIN, D_MAX = 0.2, 2.5
#: Scanner response exponent applied to transmittance (a gamma-like transfer curve).
SCANNER_GAMMA = 0.45
#: Bare scanner bed level as a fraction of full scale.
BED_LEVEL = 0.96
LABEL_CORNERS = ("top-left", "top-right", "bottom-right", "bottom-left")


def _rounded_rect_alpha(rows: int, cols: int, radius: float, wobble: np.ndarray | None = None) -> np.ndarray:
    """Anti-aliased coverage of a rounded rectangle whose edges lie half a pixel
    outside the outer pixel centres (so the straight edges sit at -0.5 and n-0.5)."""
    y = np.arange(rows, dtype=np.float64)[:, None]
    x = np.arange(cols, dtype=np.float64)[None, :]
    # signed distance inside the rectangle [-0.5, cols-0.5] x [-0.5, rows-0.5] with rounded corners
    hx, hy = cols / 2.0, rows / 2.0
    qx = np.abs(x - (cols - 1) / 2.0) - (hx - radius)
    qy = np.abs(y - (rows - 1) / 2.0) - (hy - radius)
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - radius
    if wobble is not None:
        outside = outside + wobble
    return np.clip(0.5 - outside, 0.0, 1.0)


#: Fonts of drawn lead markers (Helvetica/Futura-like, as lead letters are cut; urw-base35).
MARKER_FONTS = (
    "/usr/share/fonts/opentype/urw-base35/NimbusSans-Bold.otf",
    "/usr/share/fonts/opentype/urw-base35/URWGothic-Demi.otf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
)


def draw_lead_marker(
    film: np.ndarray,
    letter: str,
    *,
    dpi: float,
    center: tuple[float, float],
    height_mm: float = 10.0,
    rotation_k: int = 0,
    mirrored: bool = False,
    frame: bool = False,
    blur_mm: float = 0.3,
    font: str | Path | None = None,
) -> list[int]:
    """Draw a lead L/R marker onto a film's transmittance in place: a bright, flat letter.

    Lead stops the beam, so the marker's film is as clear as unexposed film (density
    ``D_MIN``); the edge is softened by the focal spot's penumbra (Gaussian ``blur_mm``).

    Parameters
    ----------
    film : ndarray of shape (H, W), float64
        Upright film intensity as built in :func:`make_film_scan` (``(10**-D)**SCANNER_GAMMA``);
        modified in place.
    letter : str
        ``'L'`` or ``'R'`` (any single character is drawn).
    dpi : float
        Film resolution, dots per inch (sets the letter's size in pixels).
    center : (row, col)
        Centre of the marker in film pixels.
    height_mm : float
        Letter cap height in mm (real markers: 5..30 mm).
    rotation_k : int
        Quarter turns (``numpy.rot90``, counter-clockwise) applied to the upright letter;
        a reader must turn it by ``-rotation_k`` to read it.
    mirrored : bool
        Letter laid back to front (mirror image, before the turn).
    frame : bool
        A lead frame around the letter, with a gap (a marker holder).
    blur_mm : float
        Penumbra, Gaussian sigma in mm (0 = sharp).
    font : str or Path, optional
        TrueType/OpenType font; default the first of :data:`MARKER_FONTS` installed.

    Returns
    -------
    list of int
        The letter's box (row0, col0, row1, col1) in film pixels, half-open (clipped to the film).

    Raises
    ------
    FileNotFoundError
        When no marker font is installed.
    """
    import cv2

    path = Path(font) if font else next((Path(p) for p in MARKER_FONTS if Path(p).is_file()), None)
    if path is None or not path.is_file():
        raise FileNotFoundError("no marker font found; install Debian's fonts-urw-base35 or fonts-dejavu-core")
    cap_px = max(6.0, height_mm / 25.4 * dpi)
    size = int(round(cap_px / 0.72)) * 4  # drawn 4x larger, then reduced (anti-aliased)
    fnt = ImageFont.truetype(str(path), size)
    img = Image.new("L", (size * 2, size * 2), 0)
    ImageDraw.Draw(img).text((size // 2, size // 4), letter, fill=255, font=fnt)
    g = np.asarray(img, dtype=np.float32) / 255.0
    ys, xs = np.nonzero(g > 0.5)
    g = g[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    s = cap_px / g.shape[0]
    g = cv2.resize(g, (max(1, int(round(g.shape[1] * s))), max(1, int(round(cap_px)))), interpolation=cv2.INTER_AREA)
    if frame:
        gap, bar = max(2, int(round(0.2 * cap_px))), max(1, int(round(0.08 * cap_px)))
        h, w = g.shape
        fr = np.zeros((h + 2 * (gap + bar), w + 2 * (gap + bar)), np.float32)
        fr[:bar], fr[-bar:], fr[:, :bar], fr[:, -bar:] = 1, 1, 1, 1
        fr[gap + bar:gap + bar + h, gap + bar:gap + bar + w] = g
        g, inner = fr, (gap + bar, gap + bar, gap + bar + h, gap + bar + w)
    else:
        inner = (0, 0, g.shape[0], g.shape[1])
    if mirrored:
        g = np.fliplr(g)
        inner = (inner[0], g.shape[1] - inner[3], inner[2], g.shape[1] - inner[1])
    shape0 = g.shape
    g = np.ascontiguousarray(np.rot90(g, rotation_k))
    # the letter's box after the turn (as pipeline.orientation.rotate_box)
    r0, c0, r1, c1 = inner
    hh, ww = shape0
    for _ in range(rotation_k % 4):
        r0, c0, r1, c1 = ww - c1, r0, ww - c0, r1
        hh, ww = ww, hh
    if blur_mm > 0:
        sig = blur_mm / 25.4 * dpi
        pad = int(np.ceil(3 * sig)) + 1
        g = cv2.GaussianBlur(np.pad(g, pad), (0, 0), sig)
        r0, c0, r1, c1 = r0 + pad, c0 + pad, r1 + pad, c1 + pad
    top, left = int(round(center[0] - g.shape[0] / 2)), int(round(center[1] - g.shape[1] / 2))
    fh, fw = film.shape
    t0, l0 = max(0, top), max(0, left)
    t1, l1 = min(fh, top + g.shape[0]), min(fw, left + g.shape[1])
    a = np.clip(g[t0 - top:t1 - top, l0 - left:l1 - left], 0.0, 1.0).astype(np.float64)
    level = (10.0 ** -D_MIN) ** SCANNER_GAMMA
    film[t0:t1, l0:l1] = film[t0:t1, l0:l1] * (1.0 - a) + level * a
    return [max(0, top + r0), max(0, left + c0), min(fh, top + r1), min(fw, left + c1)]


def make_film_scan(
    radiograph: np.ndarray,
    label_fields: dict[str, str],
    *,
    rng: np.random.Generator,
    skew_deg: float = 0.0,
    dpi: float = 150.0,
    film_size_in: tuple[float, float] = (8.0, 10.0),
    bits: int = 16,
    bits_stored: int = 12,
    noise: float = 0.01,
    label_corner: str = "top-left",
    label_rotation_k: int = 0,
    date_style: str = "iso",
    font: str = "mono",
    dust: bool = True,
    margin_in: float = 0.5,
    off_edge_px: int = 0,
    edge_wobble_px: float = 0.0,
    bed_gradient: float = 0.0,
    source: str = "",
    attribution: str = "",
    marker: dict | None = None,
) -> tuple[np.ndarray, dict]:
    """Simulate a transmissive scan of an X-ray film lying skewed on a bright bed.

    Parameters
    ----------
    radiograph : ndarray of shape (H, W), float in [0, 1]
        Display intensity as in MONOCHROME2 (bone bright, air dark); resized to
        cover the film (centre crop).
    label_fields : dict
        DICOM keyword -> value printed on the flashed ID label (see :func:`label_lines`).
    rng : numpy.random.Generator
        Source of all randomness (grain, dust, placement).
    skew_deg : float
        Angle in degrees by which the film lies rotated, counter-clockwise
        positive as seen on screen (y axis down), as ``cv2.getRotationMatrix2D``.
    dpi : float
        Scan resolution, dots per inch.
    film_size_in : (width, height)
        Film size in inches (portrait: width < height).
    bits : 8 or 16
        Sample container; ``bits_stored`` (12..16) significant bits for 16.
    noise : float
        Film grain standard deviation as a fraction of full scale (scanner noise
        on the bed is half of it).
    label_corner : str
        One of :data:`LABEL_CORNERS`, in the upright film.
    label_rotation_k : int
        Quarter turns (``numpy.rot90``) applied to the label before placing it.
    date_style : str
        See :func:`format_date`.
    dust : bool
        Add a few dark dust specks on bed and film.
    margin_in : float
        Bed visible around the rotated film, inches.
    off_edge_px : int
        Crop this many pixels of the film off the right side of the scan (a film
        running off the bed).
    edge_wobble_px : float
        Amplitude of a smooth random deviation of the film outline from a
        straight-edged rectangle (imperfect cut, scanner line jitter), pixels.
        The truth quad stays the nominal rectangle.
    bed_gradient : float
        Uneven illumination: a linear ramp of +-``bed_gradient`` (fraction of the
        level) across the scan, in a random direction.
    marker : dict, optional
        Draw a lead L/R marker: keyword arguments of :func:`draw_lead_marker` (``letter``
        required; ``center`` in upright-film pixels, default a random spot near an edge
        away from the label). None (default) draws none.

    Returns
    -------
    scan : ndarray of shape (M, N), uint8 or uint16
    truth : dict
        ``skew_deg``, ``film_quad`` ([x, y] corners clockwise from top-left, scan
        pixel coordinates, pixel centres at integers), ``film_box`` (row0, col0,
        row1, col1, half-open), ``film_shape`` (rows, cols of the upright film),
        ``label_box`` (row0, col0, row1, col1 in the upright film), ``dpi``,
        ``bits``, ``bits_stored``, ``label_corner``, ``label_rotation_k``,
        ``date_style``, ``fields``, ``touches_bed_edge``, ``source``, ``attribution``;
        with ``marker``, also ``marker`` (``letter``, ``box`` in the upright film,
        ``rotation_k``, ``mirrored``, ``height_mm``).

    Notes
    -----
    Film intensity follows transmittance ``10**-D`` with density
    ``D = D_MIN + (D_MAX - D_MIN) * (1 - radiograph)``, raised to
    :data:`SCANNER_GAMMA`; the bed transmits fully (:data:`BED_LEVEL`). The
    film has a thin darker rim and rounded corners; the label is a light patch
    (low density) with dark text, cap height ~2.5 mm.
    """
    import cv2

    if bits not in (8, 16):
        raise ValueError("bits must be 8 or 16")
    if bits == 16 and not 12 <= bits_stored <= 16:
        raise ValueError("bits_stored must be 12..16 for 16-bit scans")
    if label_corner not in LABEL_CORNERS:
        raise ValueError(f"label_corner must be one of {LABEL_CORNERS}")
    fw, fh = int(round(film_size_in[0] * dpi)), int(round(film_size_in[1] * dpi))

    # radiograph -> film intensity (cover + centre crop)
    r = np.clip(np.asarray(radiograph, dtype=np.float64), 0.0, 1.0)
    sc = max(fw / r.shape[1], fh / r.shape[0])
    rr = cv2.resize(r.astype(np.float32), (max(fw, int(np.ceil(r.shape[1] * sc))), max(fh, int(np.ceil(r.shape[0] * sc)))), interpolation=cv2.INTER_AREA)
    oy, ox = (rr.shape[0] - fh) // 2, (rr.shape[1] - fw) // 2
    rr = rr[oy : oy + fh, ox : ox + fw].astype(np.float64)
    film = (10.0 ** -(D_MIN + (D_MAX - D_MIN) * (1.0 - rr))) ** SCANNER_GAMMA

    # flashed ID label: light patch, dark text, inset from the film corner
    cap = max(12, int(round(2.5 / 25.4 * dpi)))
    lab = np.rot90(render_label(label_fields, cap_height_px=cap, date_style=date_style, font=font), label_rotation_k).astype(np.float64)
    inset = int(round(0.2 * dpi))
    lh, lw = lab.shape
    if lh + 2 * inset > fh or lw + 2 * inset > fw:
        raise ValueError("label does not fit on the film; use a larger film or lower dpi")
    top = label_corner.startswith("top")
    left = label_corner.endswith("left")
    r0 = inset if top else fh - inset - lh
    c0 = inset if left else fw - inset - lw
    film[r0 : r0 + lh, c0 : c0 + lw] = 0.08 + 0.78 * lab
    label_box = [r0, c0, r0 + lh, c0 + lw]
    marker_truth = None
    if marker is not None:
        spec = dict(marker)
        if "center" not in spec:
            spec["center"] = _marker_spot(rng, (fh, fw), label_box, dpi, float(spec.get("height_mm", 10.0)))
        mbox = draw_lead_marker(film, dpi=dpi, **spec)
        marker_truth = {"letter": spec["letter"], "box": mbox, "rotation_k": int(spec.get("rotation_k", 0)) % 4,
                        "mirrored": bool(spec.get("mirrored", False)), "height_mm": float(spec.get("height_mm", 10.0))}

    # darker rim (edge fog) and rounded corners
    rim = max(2, int(round(0.03 * dpi)))
    film[:rim, :] *= 0.7
    film[-rim:, :] *= 0.7
    film[:, :rim] *= 0.7
    film[:, -rim:] *= 0.7
    wobble = None
    if edge_wobble_px > 0:
        grid = rng.normal(0.0, 1.0, (8, 8)).astype(np.float32)
        wobble = cv2.resize(grid, (fw, fh), interpolation=cv2.INTER_CUBIC).astype(np.float64)
        wobble *= edge_wobble_px / max(float(np.abs(wobble).max()), 1e-9)
    alpha = _rounded_rect_alpha(fh, fw, radius=0.12 * dpi, wobble=wobble)
    unit = alpha * film + (1.0 - alpha) * 1.0  # 1.0 = bare bed (relative)

    # place on the bed, rotated by skew_deg about the film centre
    pad = 4
    src = np.ones((fh + 2 * pad, fw + 2 * pad), dtype=np.float32)
    src[pad:-pad, pad:-pad] = unit
    th = np.radians(skew_deg)
    bw = abs(fw * np.cos(th)) + abs(fh * np.sin(th))
    bh = abs(fw * np.sin(th)) + abs(fh * np.cos(th))
    m_in = int(round(margin_in * dpi))
    cols, rows = int(np.ceil(bw)) + 2 * m_in, int(np.ceil(bh)) + 2 * m_in
    c_src = (pad + (fw - 1) / 2.0, pad + (fh - 1) / 2.0)
    jitter = rng.uniform(-0.25, 0.25, size=2) * m_in
    c_dst = ((cols - 1) / 2.0 + jitter[0], (rows - 1) / 2.0 + jitter[1])
    m = cv2.getRotationMatrix2D(c_src, skew_deg, 1.0)
    m[:, 2] += np.asarray(c_dst) - np.asarray(c_src)
    scan = cv2.warpAffine(src, m, (cols, rows), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=1.0)
    scan = cv2.GaussianBlur(scan.astype(np.float64), (0, 0), 0.6)  # scanner optics (MTF)
    corners = np.array(
        [[pad - 0.5, pad - 0.5], [pad + fw - 0.5, pad - 0.5], [pad + fw - 0.5, pad + fh - 0.5], [pad - 0.5, pad + fh - 0.5]]
    )
    quad = corners @ m[:, :2].T + m[:, 2]

    film_mask = scan < 0.99
    if bed_gradient > 0:
        phi = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:rows, 0:cols]
        ramp = ((xx - cols / 2) * np.cos(phi) + (yy - rows / 2) * np.sin(phi)) / (max(rows, cols) / 2)
        scan = scan * (1.0 + bed_gradient * ramp)
    # grain on the film, scanner noise everywhere, dust specks
    scan = scan + rng.normal(0.0, noise / 2.0, scan.shape) + film_mask * rng.normal(0.0, noise, scan.shape)
    if dust:
        for _ in range(int(rng.integers(4, 12))):
            cy, cx = rng.uniform(0, rows), rng.uniform(0, cols)
            rad = rng.uniform(0.8, 2.5)
            yy, xx = np.ogrid[max(0, int(cy - 4)) : min(rows, int(cy + 5)), max(0, int(cx - 4)) : min(cols, int(cx + 5))]
            d = np.hypot(yy - cy, xx - cx)
            sub = scan[yy, xx]
            scan[yy, xx] = np.where(d <= rad, sub * rng.uniform(0.3, 0.6), sub)

    touches = False
    if off_edge_px > 0:
        cut = int(np.ceil(quad[:, 0].max())) + 1 - off_edge_px
        scan = scan[:, :cut]
        cols = cut
        touches = True

    full = 255 if bits == 8 else (1 << bits_stored) - 1
    out = np.clip(np.rint(scan * BED_LEVEL * full), 0, full).astype(np.uint8 if bits == 8 else np.uint16)
    box = [
        max(0, int(np.floor(quad[:, 1].min()))),
        max(0, int(np.floor(quad[:, 0].min()))),
        min(rows, int(np.ceil(quad[:, 1].max())) + 1),
        min(cols, int(np.ceil(quad[:, 0].max())) + 1),
    ]
    truth = {
        "skew_deg": float(skew_deg),
        "film_quad": [[round(float(x), 3), round(float(y), 3)] for x, y in quad],
        "film_box": box,
        "film_shape": [fh, fw],
        "label_box": label_box,
        "dpi": float(dpi),
        "bits": bits,
        "bits_stored": 8 if bits == 8 else int(bits_stored),
        "label_corner": label_corner,
        "label_rotation_k": int(label_rotation_k) % 4,
        "date_style": date_style,
        "font": font,
        "fields": dict(label_fields),
        "touches_bed_edge": touches,
        "source": source,
        "attribution": attribution,
    }
    if marker is not None:
        truth["marker"] = marker_truth
    return out, truth


def _marker_spot(rng: np.random.Generator, shape: tuple[int, int], label_box: list[int], dpi: float,
                 height_mm: float) -> tuple[float, float]:
    """A random marker centre 0.5..2 inches inside an edge, clear of the label box."""
    fh, fw = shape
    half = (height_mm / 25.4 * dpi) * 1.2
    for _ in range(100):
        row = float(rng.uniform(0.4 * dpi + half, fh - 0.4 * dpi - half))
        col = float(rng.uniform(0.4 * dpi + half, fw - 0.4 * dpi - half))
        near = min(row, fh - row, col, fw - col)
        if near > 2.0 * dpi:
            continue
        r0, c0, r1, c1 = label_box
        if r0 - half - 0.2 * dpi < row < r1 + half + 0.2 * dpi and c0 - half - 0.2 * dpi < col < c1 + half + 0.2 * dpi:
            continue
        return row, col
    return fh / 2.0, fw / 2.0


def write_labelled_batch(
    folder: Path,
    patients: list[dict[str, str]],
    *,
    radiographs: list[Path],
    rng: np.random.Generator,
    dpi: float = 150.0,
    max_skew_deg: float = 0.0,
    noise: float = 0.01,
    stem: str = "film",
    institution: str = "COUNTY MEDICAL CENTER",
) -> list[dict[str, str]]:
    """Write a small batch: one 16-bit TIFF scan per patient, its JSON sidecar and ``manifest.csv``.

    Parameters
    ----------
    folder : Path
        Created if missing.
    patients : list of dict
        DICOM keyword -> value per film (PatientName as PN, dates as DA).
    radiographs : list of Path
        Real radiographs used in turn (8-bit images Pillow reads).
    rng : numpy.random.Generator
    dpi : float
        Scan resolution (written in the TIFF's resolution tags).
    max_skew_deg : float
        Films lie skewed by a uniform angle in ±this.

    Returns
    -------
    list of dict
        Per film: ``scan_file`` plus its label fields.
    """
    import csv
    import json

    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    truth = []
    for i, patient in enumerate(patients):
        fields = dict(patient, InstitutionName=institution)
        img = np.asarray(Image.open(radiographs[i % len(radiographs)]).convert("L"), dtype=np.float32) / 255.0
        skew = float(rng.uniform(-max_skew_deg, max_skew_deg)) if max_skew_deg else 0.0
        scan, _ = make_film_scan(img, fields, rng=rng, skew_deg=skew, dpi=dpi, film_size_in=(7.0, 8.5), bits=16,
                                 bits_stored=12, noise=noise, dust=False, margin_in=0.3)
        name = f"{stem}{i + 1:02d}.tif"
        tifffile.imwrite(folder / name, scan, resolution=(dpi, dpi), resolutionunit="INCH")
        (folder / f"{stem}{i + 1:02d}.json").write_text(json.dumps(fields, indent=1))
        truth.append({"scan_file": name, **fields})
    with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["scan_file", "patient_id", "patient_name", "birth_date", "study_date", "accession_number"])
        for t in truth:
            w.writerow([t["scan_file"], t["PatientID"], t["PatientName"], t["PatientBirthDate"], t["StudyDate"],
                        t["AccessionNumber"]])
    return truth
