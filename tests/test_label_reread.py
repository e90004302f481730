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
from pipeline.label import _dot_positions, _explained_by_dots, _undot, _vote, read_label, split_vote_cap
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


# ------------------------------------------------------------------ the sex letter
def test_sex_vote_is_strict():
    """The sex's vote (``strict``): any re-reading that differs or failed, and a first reading
    the re-readings contradict, put the field under the QC threshold (50); agreement keeps the
    median confidence."""
    fv = lambda v, c: FieldValue(v, c, v)  # noqa: E731
    v = _vote(fv("M", 15.6), [fv("M", 91.0), fv("M", 92.0)], strict=True)
    assert v.value == "M" and v.confidence == 91.0
    assert _vote(fv("M", 92.0), [fv("M", 91.0), fv("F", 93.0)], strict=True).confidence < 50
    assert _vote(fv("M", 92.0), [fv("M", 91.0), None], strict=True).confidence < 50
    # the re-readings outvote the first reading: an identifier would keep it (dotted zeros), the sex not
    assert _vote(fv("F", 95.0), [fv("M", 92.0), fv("M", 91.0)]).confidence >= 50
    assert _vote(fv("F", 95.0), [fv("M", 92.0), fv("M", 91.0)], strict=True).confidence < 50


def test_sex_reread_steadies_a_generated_label():
    """100-DPI bench label whose ``O`` (DejaVu Sans Bold, read ``0``) Tesseract's label reading
    scores 31.6, so QC held it: read again with its key beside it, it is ``O`` at >= 50."""
    film, truth, p, _ = _bench_film(51)
    assert truth["PatientSex"] == "O"
    r = read_label(film, dpi=p.dpi, config=OCRConfig())
    assert r.value("PatientSex") == "O" and r.fields["PatientSex"].confidence >= 50


def test_sex_reread_disagreeing_with_the_first_reading_is_held():
    """The same label's re-read with a first reading of ``F`` at 45 (the re-readings see ``O``):
    the vote is split, so the sex stays under the QC threshold whichever letter it keeps. A sex
    read at 50 or more is not read again (no Tesseract run): it stays as read."""
    from pipeline.label import LABEL_WHITELIST, prepare_label, reread_tokens
    from pipeline.label_fields import parse_label
    from pipeline.ocr import ocr_boxes
    from pipeline.types import OcrLine

    film, _, p, _ = _bench_film(51)
    cfg = OCRConfig()
    img = prepare_label(film, read_label(film, dpi=p.dpi, config=cfg).region)  # in the orientation that read
    boxed = ocr_boxes(img, config=cfg, psm=6, whitelist=LABEL_WHITELIST)
    fields = parse_label([OcrLine(tuple(b.word for b in ln)) for ln in boxed], config=cfg)
    assert fields["PatientSex"].value == "O"
    assert fields["PatientSex"].confidence < 50
    out = reread_tokens(img, boxed, {**fields, "PatientSex": FieldValue("F", 45.0, "F")}, config=cfg)
    assert out["PatientSex"].confidence < 50
    # as read, the re-readings agree with it and release it
    assert reread_tokens(img, boxed, fields, config=cfg)["PatientSex"].confidence >= 50
    # read confidently: left alone, one Tesseract run (the other fields' sheet) as before
    import pipeline.label as label_mod

    n = []
    real = label_mod.ocr_boxes
    try:
        label_mod.ocr_boxes = lambda *a, **kw: n.append(1) or real(*a, **kw)
        out = reread_tokens(img, boxed, {**fields, "PatientSex": FieldValue("F", 95.0, "F")}, config=cfg)
    finally:
        label_mod.ocr_boxes = real
    assert out["PatientSex"] == FieldValue("F", 95.0, "F") and len(n) == 1
    # a site threshold of 99: the sex read at 95 is under it, so it is read again; the
    # re-readings (O) contradict the F, and the disputed sex is capped (not left at 95)
    out = reread_tokens(img, boxed, {**fields, "PatientSex": FieldValue("F", 95.0, "F")}, config=cfg,
                        min_field_confidence=99.0)
    assert out["PatientSex"].confidence <= split_vote_cap(99.0) < 95.0
    # a site threshold of 30: a disputed sex is capped under 30, not at the default 40, both when
    # read under 30 and when read between 30 and 50 (a reading that weak is re-read anyway)
    for first in (25.0, 45.0):
        out = reread_tokens(img, boxed, {**fields, "PatientSex": FieldValue("F", first, "F")}, config=cfg,
                            min_field_confidence=30.0)
        assert out["PatientSex"].confidence <= split_vote_cap(30.0) < 30.0, first
    # ... and read at 55, above both, it is left as read: no Tesseract run for it
    n.clear()
    try:
        label_mod.ocr_boxes = lambda *a, **kw: n.append(1) or real(*a, **kw)
        out = reread_tokens(img, boxed, {**fields, "PatientSex": FieldValue("F", 55.0, "F")}, config=cfg,
                            min_field_confidence=30.0)
    finally:
        label_mod.ocr_boxes = real
    assert out["PatientSex"] == FieldValue("F", 55.0, "F") and len(n) == 1


def test_disputed_identifier_stays_under_a_low_site_threshold():
    """The same label's PatientID, one of its re-readings made to differ (the real Tesseract
    result of the re-read sheet with that one word changed): the vote is split, and the ID's
    confidence is capped under the site's threshold of 30 (at 40 it would pass); undisturbed,
    the ID keeps its confidence."""
    import pipeline.label as label_mod
    from pipeline.label import LABEL_WHITELIST, prepare_label, reread_tokens, split_vote_cap
    from pipeline.label_fields import parse_label
    from pipeline.ocr import BoxedWord, OcrWord, ocr_boxes
    from pipeline.types import OcrLine

    film, truth, p, _ = _bench_film(51)
    cfg = OCRConfig()
    img = prepare_label(film, read_label(film, dpi=p.dpi, config=cfg).region)
    boxed = ocr_boxes(img, config=cfg, psm=6, whitelist=LABEL_WHITELIST)
    fields = parse_label([OcrLine(tuple(b.word for b in ln)) for ln in boxed], config=cfg)
    pid = truth["PatientID"]
    assert fields["PatientID"].value == pid
    calm = reread_tokens(img, boxed, fields, config=cfg, min_field_confidence=30.0)
    assert calm["PatientID"].value == pid and calm["PatientID"].confidence >= 50

    changed = []
    real = label_mod.ocr_boxes

    def one_reading_differs(*a, **kw):
        lines = real(*a, **kw)
        if changed:
            return lines
        out = []
        for ln in lines:
            row = []
            for bw in ln:
                if not changed and bw.word.text == pid:
                    other = pid[:-1] + ("1" if pid[-1] != "1" else "2")
                    bw = BoxedWord(OcrWord(other, bw.word.confidence), bw.box, bw.symbols)
                    changed.append(other)
                row.append(bw)
            out.append(row)
        return out

    try:
        label_mod.ocr_boxes = one_reading_differs
        out = reread_tokens(img, boxed, fields, config=cfg, min_field_confidence=30.0)
    finally:
        label_mod.ocr_boxes = real
    assert changed, "no re-reading of the ID to change"
    assert out["PatientID"].value == pid
    assert out["PatientID"].confidence <= split_vote_cap(30.0) < 30.0


def test_flow_passes_the_site_threshold_to_the_label_reader(tmp_path, monkeypatch):
    """flows.film hands qc.min_field_confidence to pipeline.label.read_label (which re-reads and
    caps by it): a site's threshold of 30 reaches the reader, and the film's label is read."""
    import pipeline.label as label_mod
    from filmflow.config import load_settings
    from flows.film import process_film

    seen = []
    real = label_mod.read_label

    def spy(*a, **kw):
        seen.append(kw.get("min_field_confidence"))
        return real(*a, **kw)

    monkeypatch.setattr(label_mod, "read_label", spy)
    settings = load_settings(SAMPLES / "filmflow.toml", qc={"min_field_confidence": 30.0})
    out = process_film(SAMPLES / "film_08.png", source_file="film_08.png", settings=settings, batch_name="b",
                       manifest_rows=None, staging_dir=tmp_path)
    assert seen == [30.0]
    assert out.record["fields"]["PatientID"]


def test_split_vote_stays_under_the_site_threshold():
    """A disputed field's confidence is capped under the QC threshold the site set
    (qc.min_field_confidence), not only under the default 50: at 30 a split vote would
    otherwise pass at 40."""
    from pipeline.label import split_vote_cap

    assert split_vote_cap(50.0) == 40.0 and split_vote_cap(80.0) == 40.0
    assert split_vote_cap(30.0) == 24.0 and split_vote_cap(0.0) == 0.0
    fv = lambda v, c: FieldValue(v, c, v)  # noqa: E731
    disputed = _vote(fv("39358148", 90), [fv("39358148", 88), fv("39358140", 91)], cap=split_vote_cap(30.0))
    assert disputed.value == "39358148" and disputed.confidence == 24.0
    agreed = _vote(fv("39358148", 90), [fv("39358148", 88), fv("39358148", 91)], cap=split_vote_cap(30.0))
    assert agreed.confidence == 90.0
    # the cap comes after the rounding to 0.1: under a threshold of 0.1, 0.08 (not 0.1)
    tiny = _vote(fv("39358148", 90), [fv("39358148", 88), fv("39358140", 91)], cap=split_vote_cap(0.1))
    assert tiny.confidence < 0.1


SAMPLES = Path(__file__).resolve().parents[1] / "sample_scans"


def _process_film_05(turn_deg: float = 0.0):
    """sample_scans/film_05.jpg as the flow processes it (sample site configuration), the scan
    first turned by ``turn_deg`` about its centre: (denoised film, undenoised film, dpi, OCR settings)."""
    from filmflow.config import load_settings
    from pipeline import denoise, geometry, polarity, scan_io

    s = load_settings(SAMPLES / "filmflow.toml")
    scan = scan_io.load_scan(SAMPLES / "film_05.jpg", default_dpi=s.scan.default_dpi, max_pixels=s.scan.max_pixels)
    px = scan.pixels
    if turn_deg:
        h, w = px.shape
        m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), turn_deg, 1.0)
        px = cv2.warpAffine(px, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if s.geometry.fix_polarity and polarity.assess(px).inverted:
        px = polarity.invert(px, bits_stored=scan.bits_stored)
    film, _ = geometry.straighten(px, max_skew_deg=s.geometry.max_skew_deg,
                                  margin_px=int(round(s.geometry.bed_margin_mm / 25.4 * scan.dpi)),
                                  content_min_confidence=s.geometry.content_skew_min_confidence)
    den = denoise.denoise(film, method=s.denoise.method, strength=s.denoise.strength, despeckle=s.denoise.despeckle)
    return den, film, scan.dpi, s.ocr


@pytest.fixture(scope="module")
def film_05():
    return _process_film_05()


@pytest.mark.parametrize("dx, dy", [(0.0, 0.0), (0.25, 0.0), (-0.3, 0.15), (0.5, 0.5)])
def test_sex_of_film_05_steady_under_subpixel_shifts(film_05, dx, dy):
    """film_05's ``M`` (DejaVu Sans Bold, 150 DPI): Tesseract's label reading scored it 68.7 as
    processed, 0.0 / 53.5 / 60.3 with the denoised film shifted by these fractions of a pixel,
    15.6 with the scan turned by 0.005 degree (and 37.3 after a 0.0007 degree change of the
    film's skew). Read again with its key when under 50, it is ``M`` at >= 50 each time."""
    den, und, dpi, ocr = film_05
    if dx or dy:
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        den = cv2.warpAffine(den, m, (den.shape[1], den.shape[0]), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
    r = read_label(den, dpi=dpi, config=ocr, kind_from=und)
    assert r.value("PatientSex") == "M"
    assert r.fields["PatientSex"].confidence >= 50


def test_sex_of_film_05_steady_when_the_scan_turns():
    """film_05 turned by -0.005 degree before processing: its ``M`` read at 15.6 by the label
    reading (the film would be held) is read again and released, still ``M``."""
    den, und, dpi, ocr = _process_film_05(-0.005)
    r = read_label(den, dpi=dpi, config=ocr, kind_from=und)
    assert r.value("PatientSex") == "M"
    assert r.fields["PatientSex"].confidence >= 50
