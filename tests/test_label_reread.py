"""Tests for the re-reading half of pipeline.label: the dot-free variant of a token, the
vote that uses it, and identifiers split by Tesseract inside a re-read crop.

Inputs: digits drawn with the fonts of filmflow.synth (DejaVu Sans Mono Bold has a dotted
zero, DejaVu Sans Bold a plain one) and the bench generator's films (provenance: this
project; backgrounds from /work/shared/data/radiographs, CC BY 3.0). Tesseract is real.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from filmflow.config import OCRConfig
from filmflow.synth import font_path
from PIL import Image, ImageDraw, ImageFont
from pipeline.label import _dot_positions, _explained_by_dots, _undot, _vote, read_label
from pipeline.ocr import ocr_lines
from pipeline.types import FieldValue

WL = "0123456789"


def _u8(text: str, font: str, cap: int = 30) -> np.ndarray:
    """``text`` in black on white, capitals about ``cap`` px high (uint8)."""
    size = int(round(cap / 0.73))
    fnt = ImageFont.truetype(str(font_path(font)), size)
    im = Image.new("L", (int(size * 0.7 * len(text)) + 2 * size, 2 * size), 255)
    ImageDraw.Draw(im).text((size, size // 2), text, font=fnt, fill=0)
    return np.asarray(im)


@pytest.mark.parametrize("font, zeros", [("mono", 3), ("sans", 0)])
def test_undot_erases_only_the_dots_of_zeros(font, zeros):
    """DejaVu Sans Mono Bold's zeros each lose their dot; 6, 8, 9 and the plain zeros of
    DejaVu Sans Bold keep all their ink."""
    img = _u8("06890089", font)
    out, xs = _undot(img, 0.3)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert len(xs) == zeros
    # the dots sit in the zeros' columns: positions 0, 4, 5 of a fixed-pitch text
    cols = np.flatnonzero((out == 0).any(axis=0))
    if zeros:
        assert _dot_positions("06890089", (xs, float(cols[0]), float(cols[-1] + 1))) == {0, 4, 5}
    ink = img < 0.3 * 255  # the ink at the same threshold
    removed = int((ink & (out == 255)).sum())
    if zeros == 0:
        assert removed == 0
    else:
        assert 0.01 * ink.sum() < removed < 0.1 * ink.sum()  # 3 dots: ~2 % of the ink


@pytest.mark.parametrize("engine", ["tesserocr", "pytesseract"])
def test_undotted_zeros_read_as_zeros(engine):
    """Without its dot, a zero reads as 0 (the whole ID line, digits whitelisted)."""
    img = _u8("00800600", "mono", cap=16)
    out, xs = _undot(img, 0.3)
    assert len(xs) == 6
    words = [w.text for ln in ocr_lines(out, config=OCRConfig(engine=engine), whitelist=WL) for w in ln.words]
    assert "00800600" in words


def test_explained_by_dots():
    assert _explained_by_dots("61012345", "01012345")
    assert _explained_by_dots("68/30/2012", "08/30/2012")
    assert not _explained_by_dots("01012345", "01012345")  # nothing to explain
    assert not _explained_by_dots("01012345", "61012345")  # a 0 where the dot-free reading sees 6
    assert not _explained_by_dots("71012345", "01012345")  # 7 is not a dotted-zero misread
    assert not _explained_by_dots("6101234", "01012345")  # lengths differ
    # with the positions of the erased dots: only differences there are explained
    assert _explained_by_dots("61012345", "01012345", frozenset({0, 2}))
    assert not _explained_by_dots("61012345", "01012345", frozenset({2}))


def test_vote_with_the_dot_free_reading():
    fv = lambda v, c: FieldValue(v, c, v)  # noqa: E731
    # the blurred re-readings saw the dot as a stroke; the dot-free one explains them: kept confident
    v = _vote(fv("01012345", 82), [fv("61012345", 78), fv("61012345", 81)], fv("01012345", 95))
    assert v.value == "01012345" and v.confidence >= 50
    # an unexplained disagreement still sends the field to review
    v = _vote(fv("01012345", 82), [fv("71012345", 78), fv("01012345", 81)], fv("01012345", 95))
    assert v.value == "01012345" and v.confidence < 50
    # a dot-free reading no other reading supports explains nothing (an 8 whose waist opened
    # at the dark threshold reads 0): it does not win, and costs confidence
    v = _vote(fv("39358148", 90), [fv("39358148", 88), fv("39358148", 91)], fv("39350148", 70))
    assert v.value == "39358148" and v.confidence < 50
    v = _vote(fv("39358148", 90), [fv("39358148", 88)], fv("39350148", 99))
    assert v.value == "39358148" and v.confidence < 50
    # ... unless the dot was found in the very character the others read as 6 or 8
    v = _vote(fv("60678901", 80), [fv("60678901", 84), fv("60678901", 70)], fv("00678901", 95), frozenset({0, 1}))
    assert v.value == "00678901" and v.confidence >= 50
    v = _vote(fv("60678901", 80), [fv("60678901", 84), fv("60678901", 70)], fv("00678901", 95), frozenset({1}))
    assert v.value == "60678901" and v.confidence < 50
    # without a dot-free reading the vote is as before
    assert _vote(fv("00123456", 80), [fv("00123456", 90), fv("00123456", 70)]).confidence == 80


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def _bench_film(i: int):
    from make_labels import make_one

    rng = np.random.default_rng(5)  # the bench's 100-DPI set (seed 4 + 1)
    for _ in range(i):
        make_one(rng, (100.0,))
    return make_one(rng, (100.0,))


@pytest.mark.parametrize("i", [9, 18, 25])
def test_low_dpi_identifier_split_in_the_reread_is_joined(i):
    """100-DPI labels whose identifier Tesseract splits in two when it is re-read alone
    (wide letter spacing): the re-read crop holds one identifier, so the pieces are joined
    and the correct first reading is not outvoted by a truncated value."""
    film, truth, p, _ = _bench_film(i)
    r = read_label(film, dpi=p.dpi, config=OCRConfig())
    for kw in ("PatientID", "AccessionNumber"):
        if kw in truth:
            assert r.value(kw) == truth[kw], kw


@pytest.mark.parametrize("engine", ["tesserocr", "pytesseract"])
def test_light_binarisation_without_the_dots_reads_zeros(engine):
    """The dot-holding holes of DejaVu Sans Mono Bold's zeros, erased from a light (thick)
    binarisation of a slightly blurred token, leave rings that read 0 (the light threshold
    turns each dot into a bar across its ring otherwise); 6, 8 and 9 keep their ink, and a
    plain-zero font has no such hole."""
    from pipeline.label import _dot_holes

    assert not _dot_holes(_u8("06890089", "sans"), 0.3).any()
    img = cv2.GaussianBlur(_u8("06890089", "mono", cap=40).astype(np.float32), (0, 0), 1.5)
    img = np.clip(img, 0, 255).astype(np.uint8)
    holes = _dot_holes(img, 0.3)
    lo, hi = np.percentile(img, (2, 90))
    light = np.where(img < lo + 0.65 * (hi - lo), 0, 255).astype(np.uint8)
    n_dots = cv2.connectedComponents(holes.astype(np.uint8))[0] - 1
    assert n_dots == 3
    light[holes] = 255
    words = [w.text for ln in ocr_lines(light, config=OCRConfig(engine=engine), whitelist=WL) for w in ln.words]
    assert "06890089" in words


def test_stray_marks_at_a_value_s_ends_are_whitened():
    """A quote mark read at either end of a value's words (a speck) is whitened in the
    re-read image, the other symbols' pixels kept; without symbols (pytesseract) or without
    such a mark the image is returned unchanged."""
    from pipeline.label import _erase_stray_marks
    from pipeline.ocr import BoxedWord
    from pipeline.types import OcrWord

    img = np.full((40, 120), 255, np.uint8)
    img[10:30, 10:20] = 0   # "2"
    img[10:30, 22:32] = 0   # "0"
    img[8:14, 33:36] = 0    # the speck, its box touching the "0"'s
    syms = (("2", (10, 10, 30, 20)), ("0", (10, 22, 30, 33)), ("'", (8, 32, 14, 36)))
    word = BoxedWord(OcrWord("20'", 0.0), (8, 10, 30, 36), syms)
    out = _erase_stray_marks(img, [word])
    assert out is not img and (img[8:14, 33:36] == 0).all()  # the input is not modified
    assert (out[8:14, 33:36] == 255).all()
    assert np.array_equal(out[:, :33], img[:, :33])
    assert _erase_stray_marks(img, [BoxedWord(OcrWord("20'", 0.0), word.box)]) is img
    assert _erase_stray_marks(img, [BoxedWord(OcrWord("20", 90.0), word.box, syms[:2])]) is img
    only = BoxedWord(OcrWord("''", 0.0), word.box, (("'", (8, 32, 14, 36)), ("'", (8, 36, 14, 40))))
    assert _erase_stray_marks(img, [only]) is img
