"""Generate synthetic labelled films for the label-OCR benchmark (issue 4).

Each film is a crop of a real radiograph (``/work/shared/data/radiographs``,
CC BY 3.0 Hannover Medical School COVID-19 repository, see that folder's
``SOURCES.md``) resampled to a film at the chosen DPI, with a label rendered by
:func:`filmflow.synth.render_label` pasted in a corner. Variation (fixed seed):
font, capital height in mm, DPI, contrast, blur, noise, rotation of the label
(quarter turns), a small tilt of the label, polarity, corner, date style,
presence of institution/sex/accession.

Usage::

    .venv/bin/python bench/make_labels.py --n 300 --seed 4 --out /tmp/labels

writes ``NNNN.png`` + ``NNNN.json`` (truth and parameters). The functions are
imported by ``bench/ocr_accuracy.py``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from filmflow.synth import render_label

RADIOGRAPHS = Path(__file__).resolve().parents[2] / "shared" / "data" / "radiographs"
SOURCES = ("00870a9c.jpg", "19073f37.jpg", "21982772.jpg", "865336ed.jpg", "bfefde5d.jpg", "c0f74558.jpg")

FAMILIES = ("DOE", "O'BRIEN", "SMITH-JONES", "VAN DER BERG", "MULLER", "NGUYEN", "GARCIA LOPEZ", "D'ANGELO",
            "KOWALSKI", "MCDONALD", "LI", "ABERNATHY-SMYTHE", "DE LA CRUZ", "PATEL", "OKONKWO")
GIVENS = ("JANE", "JOHN", "MARY", "SEAN", "ANNA", "LUIS", "WEI", "ANNE-MARIE", "OLIVER", "ZOE", "IBRAHIM", "CHLOE")
INSTITUTIONS = ("ST. ELSEWHERE GENERAL HOSPITAL", "COUNTY MEDICAL CENTER", "NORTHSIDE CLINIC",
                "MERCY HOSPITAL RADIOLOGY", "UNIVERSITY HOSPITAL")


@dataclass
class LabelParams:
    dpi: float
    font: str
    cap_mm: float
    date_style: str
    corner: str  # tl, tr, bl, br
    rotation_k: int  # quarter turns applied to the label as pasted (np.rot90)
    tilt_deg: float
    contrast: float  # ink-to-patch difference as a fraction of full scale
    blur_sigma_px: float
    noise_sigma: float  # fraction of full scale
    light_on_dark: bool = False
    source: str = "00870a9c.jpg"


def random_fields(rng: np.random.Generator) -> dict[str, str]:
    """Random but plausible label truth, DICOM-formatted."""
    fam = FAMILIES[rng.integers(len(FAMILIES))]
    giv = GIVENS[rng.integers(len(GIVENS))]
    by, bm, bd = int(rng.integers(1925, 2015)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    sy, sm, sd = int(rng.integers(1985, 2024)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    f = {
        "PatientName": f"{fam}^{giv}",
        "PatientID": f"{int(rng.integers(0, 10**8)):08d}",
        "PatientBirthDate": f"{by:04d}{bm:02d}{bd:02d}",
        "StudyDate": f"{sy:04d}{sm:02d}{sd:02d}",
    }
    if rng.random() < 0.8:
        f["InstitutionName"] = INSTITUTIONS[rng.integers(len(INSTITUTIONS))]
    if rng.random() < 0.8:
        f["PatientSex"] = "MFO"[rng.integers(3)] if rng.random() < 0.9 else "O"
    if rng.random() < 0.8:
        f["AccessionNumber"] = "A" + f"{int(rng.integers(0, 10**7)):07d}"
    return f


def film_background(source: str, dpi: float, rng: np.random.Generator, size_in=(10.0, 8.0)) -> np.ndarray:
    """A (rows, cols) uint8 film at ``dpi`` cut from a real radiograph."""
    img = np.asarray(Image.open(RADIOGRAPHS / source).convert("L"))
    rows, cols = int(size_in[0] * dpi), int(size_in[1] * dpi)
    # the 2000 px radiographs are ~14 in: take a random window of size_in at ~143 dpi then resample
    src_dpi = img.shape[0] / 14.0
    wr, wc = int(size_in[0] * src_dpi), int(size_in[1] * src_dpi)
    r0 = int(rng.integers(0, img.shape[0] - wr + 1))
    c0 = int(rng.integers(0, img.shape[1] - wc + 1))
    win = img[r0:r0 + wr, c0:c0 + wc]
    return cv2.resize(win, (cols, rows), interpolation=cv2.INTER_AREA if dpi < src_dpi else cv2.INTER_CUBIC)


def embed_label(film: np.ndarray, fields: dict[str, str], p: LabelParams, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Paste a rendered label into ``film`` (a copy); returns (film, box)."""
    cap_px = max(6, int(round(p.cap_mm / 25.4 * p.dpi)))
    lab = render_label(fields, cap_height_px=cap_px, font=p.font, date_style=p.date_style)
    # contrast: patch ~0.92, ink = patch - contrast
    patch = float(lab.max())
    lab = patch - (patch - lab) / (patch - float(lab.min())) * p.contrast
    if p.tilt_deg:
        h, w = lab.shape
        m = cv2.getRotationMatrix2D((w / 2, h / 2), p.tilt_deg, 1.0)
        lab = cv2.warpAffine(lab, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if p.blur_sigma_px > 0:
        lab = cv2.GaussianBlur(lab, (0, 0), p.blur_sigma_px)
    lab = np.rot90(lab, p.rotation_k)
    if p.light_on_dark:
        lab = 1.0 - lab
    out = film.astype(np.float32) / 255.0
    h, w = lab.shape
    m = int(round(6 / 25.4 * p.dpi))  # 6 mm from the film edges
    r0 = m if p.corner[0] == "t" else out.shape[0] - m - h
    c0 = m if p.corner[1] == "l" else out.shape[1] - m - w
    out[r0:r0 + h, c0:c0 + w] = lab
    if p.noise_sigma > 0:
        out += rng.normal(0.0, p.noise_sigma, out.shape).astype(np.float32)
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8), (r0, c0, r0 + h, c0 + w)


def random_params(rng: np.random.Generator, dpis: tuple[float, ...] = (100.0, 150.0, 200.0, 300.0)) -> LabelParams:
    return LabelParams(
        dpi=float(rng.choice(list(dpis))),
        font=str(rng.choice(["mono", "sans", "mono_regular"])),
        cap_mm=float(rng.uniform(2.0, 4.0)),
        date_style=str(rng.choice(["iso", "us", "eu", "mon"])),
        corner=str(rng.choice(["tl", "tr", "bl", "br"])),
        rotation_k=int(rng.choice([0, 0, 0, 1, 2, 3])),
        tilt_deg=float(rng.uniform(-3, 3)) if rng.random() < 0.5 else 0.0,
        contrast=float(rng.uniform(0.35, 0.82)),
        blur_sigma_px=float(rng.uniform(0, 1.2)),
        noise_sigma=float(rng.uniform(0, 0.04)),
        light_on_dark=bool(rng.random() < 0.1),
        source=str(rng.choice(SOURCES)),
    )


def make_one(rng: np.random.Generator, dpis: tuple[float, ...] = (100.0, 150.0, 200.0, 300.0),
             ) -> tuple[np.ndarray, dict[str, str], LabelParams, tuple[int, int, int, int]]:
    """One labelled film: (film uint8, truth fields, parameters, label box), DPI drawn from ``dpis``."""
    fields = random_fields(rng)
    p = random_params(rng, dpis)
    film = film_background(p.source, p.dpi, rng, size_in=(7.0, 6.0))
    film, box = embed_label(film, fields, p, rng)
    return film, fields, p, box


# --- label kinds (issue 4): adhesive paper labels and handwriting -------------------------------
#: URW Z003 (a Zapf Chancery clone, Debian fonts-urw-base35): a calligraphic script face
#: standing in for handwriting.
SCRIPT_FONT = "/usr/share/fonts/opentype/urw-base35/Z003-MediumItalic.otf"


def render_handwriting(lines: list[str], cap_px: int, rng: np.random.Generator) -> np.ndarray:
    """Handwriting-like text: Z003 script, every character jittered in size (+-15 %),
    baseline (+-12 % of a capital), angle (+-8 degrees) and spacing, on a white patch.

    Returns (H, W) float32 in [0, 1] (1 = white patch, ~0.1 = ink).
    """
    from PIL import ImageDraw, ImageFont

    size = max(8, int(round(cap_px / 0.62)))
    pad = size // 2
    line_h = int(size * 1.6)
    width = int(max(len(t) for t in lines) * size * 0.5) + 2 * pad
    height = line_h * len(lines) + 2 * pad
    img = Image.new("L", (width, height), 0)  # ink coverage, composited below
    for i, text in enumerate(lines):
        x = float(pad)
        y0 = pad + i * line_h + rng.normal(0, 0.1) * cap_px
        for ch in text:
            fnt = ImageFont.truetype(SCRIPT_FONT, max(6, int(size * rng.uniform(0.85, 1.15))))
            adv = fnt.getlength(ch)
            if ch != " ":
                glyph = Image.new("L", (int(adv + size), int(size * 1.6)), 0)
                ImageDraw.Draw(glyph).text((size // 4, size // 4), ch, fill=255, font=fnt)
                glyph = glyph.rotate(float(rng.uniform(-8, 8)), resample=Image.BILINEAR)
                y = int(round(y0 + rng.normal(0, 0.12) * cap_px))
                img.paste(255, (int(x) - size // 4, y - size // 4), glyph)
            x += adv * rng.uniform(0.9, 1.1) + (size * 0.1 if ch == " " else 0)
    ink = np.asarray(img, dtype=np.float32) / 255.0
    return 1.0 - 0.9 * ink


def embed_adhesive(film: np.ndarray, fields: dict[str, str], p: LabelParams, rng: np.random.Generator,
                   handwritten: bool = False) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Stick a paper label on ``film`` (a copy): an opaque, bright (0.95-0.99), uniform sheet with
    sharp edges, 2-5 mm paper margin round the text, a soft 1-2 mm shadow along two sides, printed
    (or, ``handwritten``, hand-lettered) in near-black ink. Film grain (``p.noise_sigma``) is added
    to the film *before* the paper goes on: paper carries no film grain, only a faint paper
    texture. Returns (film, paper box (r0, c0, r1, c1)). ``p.contrast``, ``p.light_on_dark`` unused."""
    cap_px = max(6, int(round(p.cap_mm / 25.4 * p.dpi)))
    if handwritten:
        lab = render_handwriting(hand_lines(fields), cap_px, rng)
    else:
        lab = render_label(fields, cap_height_px=cap_px, font=p.font, date_style=p.date_style)
        lab = (lab - lab.min()) / max(float(lab.max() - lab.min()), 1e-6)
    paper = float(rng.uniform(0.95, 0.99))
    ink = float(rng.uniform(0.05, 0.2))
    lab = ink + (paper - ink) * lab
    mm = p.dpi / 25.4
    m = int(round(rng.uniform(2.0, 5.0) * mm))
    lab = np.pad(lab, m, constant_values=paper)
    lab += rng.normal(0.0, 0.004, lab.shape).astype(np.float32)  # paper texture
    if p.blur_sigma_px > 0:
        lab = cv2.GaussianBlur(lab, (0, 0), p.blur_sigma_px)
    lab = np.rot90(lab, p.rotation_k)
    out = film.astype(np.float32) / 255.0
    if p.noise_sigma > 0:
        out += rng.normal(0.0, p.noise_sigma, out.shape).astype(np.float32)
    h, w = lab.shape
    e = int(round(6 * mm))
    r0 = e if p.corner[0] == "t" else out.shape[0] - e - h
    c0 = e if p.corner[1] == "l" else out.shape[1] - e - w
    # shadow: the sheet stands slightly off the film on two sides
    sh = np.zeros(out.shape, np.float32)
    d = max(1, int(round(rng.uniform(1.0, 2.0) * mm)))
    sh[r0 + d:r0 + h + d, c0 + d:c0 + w + d] = 1.0
    sh = cv2.GaussianBlur(sh, (0, 0), max(1.0, d / 2))
    out *= 1.0 - 0.35 * sh
    out[r0:r0 + h, c0:c0 + w] = lab
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8), (r0, c0, r0 + h, c0 + w)


def hand_lines(fields: dict[str, str]) -> list[str]:
    """What a hand-written label says: name, ID, date (mixed case, no field captions)."""
    fam, _, giv = fields["PatientName"].partition("^")
    d = fields["StudyDate"]
    return [f"{giv.title()} {fam.title()}", fields["PatientID"], f"{d[6:8]}/{d[4:6]}/{d[0:4]}"]


def embed_handwritten(film: np.ndarray, fields: dict[str, str], p: LabelParams, rng: np.random.Generator,
                      ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Hand-lettered label on a flashed patch (as :func:`embed_label`, the text written in the
    jittered script of :func:`render_handwriting`). Returns (film, box)."""
    cap_px = max(6, int(round(p.cap_mm / 25.4 * p.dpi)))
    lab = render_handwriting(hand_lines(fields), cap_px, rng)
    lab = 0.92 - (1.0 - lab) / 0.9 * p.contrast
    if p.blur_sigma_px > 0:
        lab = cv2.GaussianBlur(lab, (0, 0), p.blur_sigma_px)
    lab = np.rot90(lab, p.rotation_k)
    out = film.astype(np.float32) / 255.0
    h, w = lab.shape
    e = int(round(6 / 25.4 * p.dpi))
    r0 = e if p.corner[0] == "t" else out.shape[0] - e - h
    c0 = e if p.corner[1] == "l" else out.shape[1] - e - w
    out[r0:r0 + h, c0:c0 + w] = lab
    if p.noise_sigma > 0:
        out += rng.normal(0.0, p.noise_sigma, out.shape).astype(np.float32)
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8), (r0, c0, r0 + h, c0 + w)


#: Label kinds :func:`make_kind` draws, as ``pipeline.types.LabelRegion.kind`` names them.
KINDS = ("printed", "adhesive", "handwritten")


def make_kind(rng: np.random.Generator, kind: str, dpis: tuple[float, ...] = (150.0, 200.0, 300.0),
              ) -> tuple[np.ndarray, dict[str, str], LabelParams, tuple[int, int, int, int]]:
    """One film carrying a label of ``kind`` (:data:`KINDS`): ``printed`` is :func:`make_one`'s
    flashed label, ``adhesive`` a printed paper sticker (:func:`embed_adhesive`), ``handwritten``
    hand lettering on a flashed patch (3-5 mm capitals, contrast >= 0.5) or, one time in three,
    on a paper sticker. Returns (film uint8, truth fields, parameters, label box)."""
    if kind == "printed":
        return make_one(rng, dpis)
    fields = random_fields(rng)
    p = random_params(rng, dpis)
    film = film_background(p.source, p.dpi, rng, size_in=(7.0, 6.0))
    if kind == "adhesive":
        film, box = embed_adhesive(film, fields, p, rng)
    elif kind == "handwritten":
        p.cap_mm = float(rng.uniform(3.0, 5.0))
        p.contrast = float(rng.uniform(0.5, 0.82))
        p.light_on_dark = False
        if rng.random() < 1 / 3:
            film, box = embed_adhesive(film, fields, p, rng, handwritten=True)
        else:
            film, box = embed_handwritten(film, fields, p, rng)
    else:
        raise ValueError(f"unknown label kind {kind!r}")
    return film, fields, p, box


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    for i in range(a.n):
        film, fields, p, box = make_one(rng)
        Image.fromarray(film).save(a.out / f"{i:04d}.png", dpi=(p.dpi, p.dpi))
        (a.out / f"{i:04d}.json").write_text(json.dumps({"fields": fields, "params": asdict(p), "box": box}, indent=1))


if __name__ == "__main__":
    main()
