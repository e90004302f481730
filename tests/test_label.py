"""Golden tests for pipeline.label: synthetic films from real radiographs, and sample_scans/.

Test films: a crop of /work/shared/data/radiographs/00870a9c.jpg or 19073f37.jpg
(Hannover Medical School COVID-19 image repository, doi 10.6084/m9.figshare.12275009,
CC BY 3.0) resampled to 7x6 inch at the test DPI, with a label drawn by
filmflow.synth.render_label pasted 6 mm from a corner (bench/make_labels.py
builds the same films). Purpose: every label field read equals the truth.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from filmflow.config import OCRConfig, load_settings
import pipeline.label as label_mod
from pipeline.label import _vote, estimate_skew, locate_label, prepare_label, read_label, read_laterality_marker
from pipeline.types import LABEL_FIELDS, FieldValue

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from make_labels import LabelParams, embed_label, film_background  # noqa: E402

SAMPLES = ROOT / "sample_scans"
#: the sample site's configuration (its identifier formats), as `make demo` uses it
SITE_OCR = load_settings(SAMPLES / "filmflow.toml").ocr
TRUTH = {
    "InstitutionName": "ST. ELSEWHERE GENERAL HOSPITAL",
    "PatientName": "O'BRIEN^SEAN",
    "PatientID": "00123456",
    "PatientBirthDate": "19560314",
    "StudyDate": "20190402",
    "AccessionNumber": "A1234567",
    "PatientSex": "F",
}
TRUTH2 = {
    "PatientName": "VAN DER BERG^ANNE-MARIE",
    "PatientID": "01010870",
    "PatientBirthDate": "20011231",
    "StudyDate": "19990101",
    "PatientSex": "M",
}


def make_film(dpi, corner, k, style, truth=TRUTH, font="mono", source="00870a9c.jpg", tilt=0.0, seed=7, u16=False):
    rng = np.random.default_rng(seed)
    p = LabelParams(dpi=dpi, font=font, cap_mm=2.8, date_style=style, corner=corner, rotation_k=k, tilt_deg=tilt,
                    contrast=0.8, blur_sigma_px=0.5, noise_sigma=0.01, source=source)
    film, box = embed_label(film_background(source, dpi, rng, (7.0, 6.0)), truth, p, rng)
    if u16:
        film = film.astype(np.uint16) * 16  # 12 bits stored
    return film, box


CASES = [
    (100, "tl", 0, "iso", TRUTH, "mono"),
    (100, "br", 1, "us", TRUTH, "mono"),
    (150, "tr", 2, "eu", TRUTH, "mono"),
    (150, "bl", 3, "mon", TRUTH, "mono"),
    (200, "tl", 1, "iso", TRUTH2, "mono"),
    (200, "br", 0, "mon", TRUTH2, "mono"),
    (150, "tl", 0, "us", TRUTH2, "sans"),
]


@pytest.mark.parametrize("dpi, corner, k, style, truth, font", CASES)
def test_golden_synthetic(dpi, corner, k, style, truth, font):
    film, box = make_film(dpi, corner, k, style, truth, font)
    before = film.copy()
    r = read_label(film, dpi=dpi, config=OCRConfig())
    assert np.array_equal(film, before)  # input untouched
    assert {kw: r.value(kw) for kw in LABEL_FIELDS if r.value(kw)} == truth
    # found where it was pasted (within 2 mm), text made upright
    tol = 2.0 / 25.4 * dpi
    assert np.allclose(r.region.box, box, atol=tol)
    assert (r.region.rotation_k + k) % 4 == 0
    assert all(0 < fv.confidence <= 100 for fv in r.fields.values())


def test_golden_uint16_and_tilted_label():
    film, _ = make_film(150, "tr", 0, "us", TRUTH, source="19073f37.jpg", tilt=1.5, u16=True)  # 2 deg cuts the last letter off the rendered patch itself
    assert film.dtype == np.uint16
    r = read_label(film, dpi=150, config=OCRConfig())
    assert {kw: r.value(kw) for kw in LABEL_FIELDS if r.value(kw)} == TRUTH


def test_tilted_label_crop_has_clean_margins():
    """Regression: the deskew rotation of a float64 crop filled its borders with dark garbage
    (OpenCV 5 warpAffine, BORDER_REPLICATE), read as a first line of text."""
    film, _ = make_film(150, "tr", 0, "us", TRUTH, source="19073f37.jpg", tilt=1.5)
    img = prepare_label(film, locate_label(film, dpi=150))
    assert img.dtype == np.uint8
    top = label_mod.TARGET_CAP_PX + 5  # the white pad plus a few rows of the patch margin
    assert (img[:top] < 128).sum() == 0 and (img[-top:] < 128).sum() == 0


def test_vote_confidence_is_honest():
    fv = lambda v, c: FieldValue(v, c, v)  # noqa: E731
    unanimous = _vote(fv("00123456", 80), [fv("00123456", 90), fv("00123456", 70)])
    assert unanimous.value == "00123456" and unanimous.confidence == 80
    # the re-readings agree and outvote the first reading: kept, confidence scaled by 2/3
    fixed = _vote(fv("60123456", 93), [fv("00123456", 90), fv("00123456", 84)])
    assert fixed.value == "00123456" and fixed.confidence == pytest.approx(58)
    # any re-reading that disagrees (or failed) pushes the field under the QC threshold (50)
    assert _vote(fv("60123456", 93), [fv("60123456", 90), fv("00123456", 95)]).confidence < 50
    assert _vote(fv("00123456", 93), [fv("00123456", 90), None]).confidence < 50
    assert _vote(None, [None, None]) is None


@pytest.mark.parametrize("k, calls", [(0, 2), (2, 3)])
def test_upside_down_retry_only_when_needed(monkeypatch, k, calls):
    """A plausible first reading is not read again upside down: one Tesseract run for the label,
    one for the re-read words; a label pasted upside down needs the 180 degree run too."""
    film, _ = make_film(150, "tl", k, "iso")
    n = []
    real = label_mod.ocr_boxes

    def counting(*a, **kw):
        n.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(label_mod, "ocr_boxes", counting)
    r = read_label(film, dpi=150, config=OCRConfig())
    assert {kw: r.value(kw) for kw in LABEL_FIELDS if r.value(kw)} == TRUTH
    assert len(n) == calls


def test_no_label():
    rng = np.random.default_rng(3)
    film = film_background("00870a9c.jpg", 100.0, rng, (7.0, 6.0))
    assert locate_label(film, dpi=100) is None
    r = read_label(film, dpi=100, config=OCRConfig())
    assert r.fields == {} and r.region is None
    assert read_label(np.zeros((300, 300), np.uint8), dpi=100, config=OCRConfig()).fields == {}


def test_skew_estimate_measured_again():
    from filmflow.synth import render_label

    lab = render_label(TRUTH, cap_height_px=24)
    h, w = lab.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 2.0, 1.0)  # 2 degrees counter-clockwise
    tilted = cv2.warpAffine(lab, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    assert estimate_skew(tilted) == pytest.approx(2.0, abs=0.3)
    assert estimate_skew(lab) == pytest.approx(0.0, abs=0.3)


def test_bad_input():
    with pytest.raises(ValueError):
        locate_label(np.zeros((10, 10), np.float32), dpi=100)
    with pytest.raises(ValueError):
        locate_label(np.zeros((10, 10), np.uint8), dpi=0)


def test_laterality_marker_absent_is_empty():
    film, box = make_film(100, "tl", 0, "iso")
    assert read_laterality_marker(film, dpi=100, exclude_box=box) == ""


# ------------------------------------------------------------------ sample_scans/ (another engineer's)
def _real_path(d: dict) -> tuple[np.ndarray, float]:
    """The film as the migration sees it: load_scan -> polarity -> straighten -> denoise."""
    from pipeline import denoise, geometry, polarity, scan_io

    scan = scan_io.load_scan(SAMPLES / d["scan_file"], default_dpi=150.0, max_pixels=200_000_000)
    px = scan.pixels
    if polarity.detect_inverted(px):
        px = polarity.invert(px, bits_stored=scan.bits_stored)
    film, _ = geometry.straighten(px, max_skew_deg=20.0)
    return denoise.denoise(film, method="bilateral", strength=1), scan.dpi


def _sample_sidecars() -> list[Path]:
    return sorted(p for p in SAMPLES.glob("*.json") if "fields" in json.loads(p.read_text()))


@pytest.fixture(scope="module")
def sample_readings():
    sidecars = _sample_sidecars()
    if not sidecars:
        pytest.skip("sample_scans/*.json not generated")
    out = []
    for p in sidecars:
        d = json.loads(p.read_text())
        film, dpi = _real_path(d)
        out.append((p.stem, d, read_label(film, dpi=dpi, config=SITE_OCR)))
    return out


def test_sample_scans_located(sample_readings):
    """Every sample label is found, and the box stays on the label patch (within 2 mm of the
    truth, never reaching the film's edge rim)."""
    for stem, d, r in sample_readings:
        assert r.region is not None, stem
        rows, cols = d["film_shape"]
        r0, c0, r1, c1 = r.region.box
        assert r0 > 0 and c0 > 0 and r1 < rows and c1 < cols, stem
        # the patch's text area (the truth box minus its margin) is inside the box found
        tb = d["label_box"]
        m = 2.0 / 25.4 * d["dpi"]
        assert r0 <= tb[0] + m and c0 <= tb[1] + m and r1 >= tb[2] - m and c1 >= tb[3] - m, (stem, r.region.box, tb)


def test_golden_sample_scans_strict(sample_readings):
    """Every field of every film expected to be archived equals the truth (through the real path,
    with the sample site's identifier formats)."""
    misses = [(stem, kw, r.value(kw), v) for stem, d, r in sample_readings if d.get("expect") == "archived"
              for kw, v in d["fields"].items() if r.value(kw) != v]
    assert misses == []


#: Sample films read wrongly held without a manifest: the dates and IDs of the Courier and
#: DejaVu Sans Mono labels print dotted zeros, and film_01's date has a speck beside it.
HELD_BEFORE = {
    "film_01": {"StudyDate": "20190402"},
    "film_02": {"StudyDate": "20180917"},
    "film_03": {"PatientBirthDate": "19490630"},
    "film_04": {"StudyDate": "20200311", "AccessionNumber": "A4234570"},
    "film_06": {"PatientID": "00678901", "PatientBirthDate": "19700801", "StudyDate": "20151009"},
    "film_08": {"PatientBirthDate": "19900109", "StudyDate": "20210604"},
}


def test_sample_scans_without_manifest_not_held(sample_readings):
    """Without a manifest (nothing corroborates a field) these films' identifiers and dates,
    read right, are not held for a low confidence. They were (confidence 40 or 2.8): the
    light-threshold re-reading thickened the dot of each dotted zero into a bar, read 6 or 66
    (``1976-68-61``, ``660678961``), splitting the vote; and film_01's speck, read as an
    apostrophe glued to the date (``2019-04-02'``, word confidence 0), kept the date from
    parsing in the first reading and three of the four re-readings."""
    from filmflow.config import QCConfig
    from qc.checks import check_label

    got = {stem: r for stem, _, r in sample_readings}
    assert set(HELD_BEFORE) <= set(got)
    held, wrong = {}, {}
    for stem, want in HELD_BEFORE.items():
        r = got[stem]
        wrong.update({(stem, kw): r.value(kw) for kw, v in want.items() if r.value(kw) != v})
        codes = [q.code for q in check_label(r, config=QCConfig()) if q.severity == "review"]
        if codes:
            held[stem] = (codes, {kw: r.fields[kw].confidence for kw in want if kw in r.fields})
    assert wrong == {}
    assert held == {}



@pytest.mark.parametrize("contrast", [0.3, 0.25])
def test_low_contrast_label_found_at_its_box(contrast):
    """A thin-stroked label (DejaVu Sans Mono, 2.4 mm capitals, blur 1 px, ink only 0.25-0.3 of
    full scale below the patch) at 150 DPI: the first stroke search, at 75 dpi, averages the
    strokes away and finds nothing; the min-pooled second search finds the label and the box
    fits the pasted one within 1.5 mm."""
    rng = np.random.default_rng(5)
    p = LabelParams(dpi=150.0, font="mono_regular", cap_mm=2.4, date_style="iso", corner="tr", rotation_k=0,
                    tilt_deg=0.0, contrast=contrast, blur_sigma_px=1.0, noise_sigma=0.02, source="865336ed.jpg")
    film, box = embed_label(film_background("865336ed.jpg", 150.0, rng, (7.0, 6.0)), TRUTH, p, rng)
    small = cv2.resize(label_mod._unit(film), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    assert label_mod._best_candidate(small, 1.0 - small, 75.0, label_mod._STROKE_DIFF) is None
    reg = locate_label(film, dpi=150.0)
    assert reg is not None and reg.dark_text and reg.rotation_k == 0
    tol = int(round(1.5 / 25.4 * 150.0))
    assert all(abs(a - b) <= tol for a, b in zip(reg.box, box)), (reg.box, box)
