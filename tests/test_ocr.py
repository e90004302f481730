"""Tests for pipeline.ocr, the Tesseract wrapper (needs Debian's tesseract-ocr + eng, and tesserocr).

Reading tests run on both engines (tesserocr: the library, one engine per thread;
pytesseract: the program).

Input: a label drawn by filmflow.synth.render_label (provenance: this project).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from filmflow.config import OCRConfig
from filmflow.errors import OCRError, ToolMissingError
from filmflow.synth import render_label
import threading

from pipeline.ocr import ocr_boxes, ocr_engine, ocr_lines, tesseract_version

ENGINES = ("tesserocr", "pytesseract")
WL = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:,/-"

FIELDS = {"PatientName": "DOE^JANE", "PatientID": "00123456", "PatientBirthDate": "19560314", "StudyDate": "20190402"}


def label_u8() -> np.ndarray:
    return (render_label(FIELDS, cap_height_px=28) * 255).astype(np.uint8)


@pytest.mark.parametrize("engine", ENGINES)
def test_version(engine):
    v = tesseract_version(OCRConfig(engine=engine))
    assert v.split(".")[0].isdigit() and int(v.split(".")[0]) >= 4


def test_engine_choice():
    assert ocr_engine(OCRConfig(engine="pytesseract")) == "pytesseract"
    assert ocr_engine(OCRConfig(engine="tesserocr")) == "tesserocr"
    assert ocr_engine(OCRConfig()) == "tesserocr"  # auto, tesserocr being installed here
    # the program reports Debian's version, the library the one bundled in the wheel
    assert tesseract_version(OCRConfig(engine="pytesseract")) == tesseract_version(
        OCRConfig(engine="pytesseract", tesseract_cmd="tesseract"))


def test_missing_tool():
    with pytest.raises(ToolMissingError, match="tesseract_cmd"):
        tesseract_version(OCRConfig(engine="pytesseract", tesseract_cmd="/nonexistent/tesseract"))
    with pytest.raises(ToolMissingError):
        ocr_lines(label_u8(), config=OCRConfig(engine="pytesseract", tesseract_cmd="no-such-tesseract-here"))


def test_missing_tessdata(tmp_path):
    with pytest.raises(ToolMissingError, match="tessdata_dir"):
        ocr_lines(label_u8(), config=OCRConfig(engine="tesserocr", tessdata_dir=str(tmp_path)))
    with pytest.raises(ToolMissingError, match="traineddata"):
        ocr_lines(label_u8(), config=OCRConfig(engine="tesserocr", lang="xxx"))


@pytest.mark.parametrize("engine", ENGINES)
def test_reads_lines_with_confidences(engine):
    lines = ocr_lines(label_u8(), config=OCRConfig(engine=engine), whitelist=WL)
    assert [ln.text for ln in lines] == ["NAME: DOE, JANE", "ID: 00123456 DOB: 1956-03-14", "DATE: 2019-04-02"]
    assert all(50 <= w.confidence <= 100 for ln in lines for w in ln.words)
    assert os.environ.get("OMP_THREAD_LIMIT") == "1"


def test_whitelist_and_psm_are_per_call():
    """One loaded engine serves calls with different whitelists and modes: nothing leaks."""
    cfg = OCRConfig(engine="tesserocr")
    img = label_u8()
    digits = ocr_lines(img, config=cfg, whitelist="0123456789")
    assert all(set(w.text) <= set("0123456789") for ln in digits for w in ln.words)
    full = ocr_lines(img, config=cfg)  # no whitelist: letters and punctuation again
    assert full[0].text == "NAME: DOE, JANE"
    line = ocr_lines(img[: img.shape[0] // 3 + 5], config=cfg, psm=7, whitelist=WL)
    assert [ln.text for ln in line] == ["NAME: DOE, JANE"]


def test_engines_agree_on_boxes():
    img = label_u8()
    a = ocr_boxes(img, config=OCRConfig(engine="tesserocr"), whitelist=WL)
    b = ocr_boxes(img, config=OCRConfig(engine="pytesseract"), whitelist=WL)
    assert [[w.word.text for w in ln] for ln in a] == [[w.word.text for w in ln] for ln in b]
    for la, lb in zip(a, b):
        for wa, wb in zip(la, lb):
            assert max(abs(x - y) for x, y in zip(wa.box, wb.box)) <= 2


def test_threads_read_in_parallel():
    """Each thread gets its own engine: concurrent reads all give the right text."""
    img, cfg, out = label_u8(), OCRConfig(engine="tesserocr"), []

    def work():
        for _ in range(3):
            out.append([ln.text for ln in ocr_lines(img, config=cfg, whitelist=WL)])

    ts = [threading.Thread(target=work) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(out) == 9
    assert all(x == ["NAME: DOE, JANE", "ID: 00123456 DOB: 1956-03-14", "DATE: 2019-04-02"] for x in out)


@pytest.mark.parametrize("engine", ENGINES)
def test_blank_image_reads_nothing(engine):
    assert ocr_lines(np.full((100, 300), 235, np.uint8), config=OCRConfig(engine=engine)) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_timeout_is_ocr_error(engine):
    big = np.tile(label_u8(), (6, 3))
    with pytest.raises(OCRError, match="timed out"):
        ocr_lines(big, config=OCRConfig(engine=engine, timeout_s=0.01))
    # the engine is usable again afterwards
    assert ocr_lines(label_u8(), config=OCRConfig(engine=engine), whitelist=WL)[0].text == "NAME: DOE, JANE"


@pytest.mark.parametrize("img", [np.zeros((10, 10), np.uint16), np.zeros((10, 10, 3), np.uint8)])
@pytest.mark.parametrize("engine", ENGINES)
def test_rejects_non_u8_gray(img, engine):
    with pytest.raises(ValueError):
        ocr_lines(img, config=OCRConfig(engine=engine))


@pytest.mark.parametrize("engine", ENGINES)
def test_boxes_locate_the_words(engine):
    img = label_u8()
    cfg = OCRConfig(engine=engine)
    boxed = ocr_boxes(img, config=cfg, whitelist=WL)
    assert [" ".join(b.word.text for b in ln) for ln in boxed] == [
        ln.text for ln in ocr_lines(img, config=cfg, whitelist=WL)]
    word = next(b for ln in boxed for b in ln if b.word.text == "00123456")
    r0, c0, r1, c1 = word.box
    assert 0 <= r0 < r1 <= img.shape[0] and 0 <= c0 < c1 <= img.shape[1]
    # the box holds the ink of the word: dark pixels inside, about a capital high
    assert (img[r0:r1, c0:c1] < 128).mean() > 0.1
    assert 20 <= r1 - r0 <= 40
