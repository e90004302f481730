"""Tests for pipeline.ocr, the Tesseract wrapper (needs Debian's tesseract-ocr + eng).

Input: a label drawn by filmflow.synth.render_label (provenance: this project).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from filmflow.config import OCRConfig
from filmflow.errors import OCRError, ToolMissingError
from filmflow.synth import render_label
from pipeline.ocr import ocr_boxes, ocr_lines, tesseract_version

FIELDS = {"PatientName": "DOE^JANE", "PatientID": "00123456", "PatientBirthDate": "19560314", "StudyDate": "20190402"}


def label_u8() -> np.ndarray:
    return (render_label(FIELDS, cap_height_px=28) * 255).astype(np.uint8)


def test_version():
    v = tesseract_version()
    assert v.split(".")[0].isdigit() and int(v.split(".")[0]) >= 4


def test_missing_tool():
    with pytest.raises(ToolMissingError, match="tesseract_cmd"):
        tesseract_version(OCRConfig(tesseract_cmd="/nonexistent/tesseract"))
    with pytest.raises(ToolMissingError):
        ocr_lines(label_u8(), config=OCRConfig(tesseract_cmd="no-such-tesseract-here"))


def test_reads_lines_with_confidences():
    lines = ocr_lines(label_u8(), config=OCRConfig(), whitelist="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:,/-")
    assert [ln.text for ln in lines] == ["NAME: DOE, JANE", "ID: 00123456 DOB: 1956-03-14", "DATE: 2019-04-02"]
    assert all(0 <= w.confidence <= 100 for ln in lines for w in ln.words)
    assert os.environ.get("OMP_THREAD_LIMIT") == "1"


def test_blank_image_reads_nothing():
    assert ocr_lines(np.full((100, 300), 235, np.uint8), config=OCRConfig()) == []


def test_timeout_is_ocr_error():
    big = np.tile(label_u8(), (6, 3))
    with pytest.raises(OCRError, match="timed out"):
        ocr_lines(big, config=OCRConfig(timeout_s=0.01))


@pytest.mark.parametrize("img", [np.zeros((10, 10), np.uint16), np.zeros((10, 10, 3), np.uint8)])
def test_rejects_non_u8_gray(img):
    with pytest.raises(ValueError):
        ocr_lines(img, config=OCRConfig())


def test_boxes_locate_the_words():
    img = label_u8()
    boxed = ocr_boxes(img, config=OCRConfig(), whitelist="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:,/-")
    assert [" ".join(b.word.text for b in ln) for ln in boxed] == [
        ln.text for ln in ocr_lines(img, config=OCRConfig(), whitelist="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:,/-")]
    word = next(b for ln in boxed for b in ln if b.word.text == "00123456")
    r0, c0, r1, c1 = word.box
    assert 0 <= r0 < r1 <= img.shape[0] and 0 <= c0 < c1 <= img.shape[1]
    # the box holds the ink of the word: dark pixels inside, about a capital high
    assert (img[r0:r1, c0:c1] < 128).mean() > 0.1
    assert 20 <= r1 - r0 <= 40
