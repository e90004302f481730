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
