"""Tests for pipeline.label_kind and its QC finding: flashed, adhesive paper and handwritten labels.

Films: crops of the real radiographs in /work/shared/data/radiographs (Hannover Medical School
COVID-19 image repository, CC BY 3.0) with a label pasted by bench/make_labels.py: a flashed
printed label (``embed_label``), a printed paper sticker with a shadow and no film grain
(``embed_adhesive``), hand lettering in the URW Z003 script with per-character jitter
(``embed_handwritten``). The truth is the kind generated.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from filmflow.config import QCConfig
from pipeline.label import _unit, locate_label
from pipeline.label_kind import classify_label, kind_features
from pipeline.types import LabelReading, LabelRegion
from qc.checks import check_label, check_label_kind

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from make_labels import LabelParams, embed_adhesive, embed_handwritten, embed_label, film_background  # noqa: E402

FIELDS = {"PatientName": "O'BRIEN^SEAN", "PatientID": "00123456", "PatientBirthDate": "19560314",
          "StudyDate": "20190402", "AccessionNumber": "A1234567", "PatientSex": "F"}


def make(kind: str, dpi: float = 200.0, noise: float = 0.015, seed: int = 7, cap_mm: float = 2.8):
    rng = np.random.default_rng(seed)
    p = LabelParams(dpi=dpi, font="mono", cap_mm=cap_mm, date_style="iso", corner="tl", rotation_k=0, tilt_deg=0.0,
                    contrast=0.7, blur_sigma_px=0.5, noise_sigma=noise, source="00870a9c.jpg")
    film = film_background(p.source, dpi, rng, (7.0, 6.0))
    embed = {"printed": embed_label, "adhesive": embed_adhesive, "handwritten": embed_handwritten}[kind]
    if kind == "handwritten":
        p.cap_mm = 4.0
    return embed(film, FIELDS, p, rng)


@pytest.mark.parametrize("kind", ["printed", "adhesive", "handwritten"])
@pytest.mark.parametrize("dpi", [150.0, 300.0])
def test_kind_of_located_label(kind, dpi):
    film, box = make(kind, dpi)
    reg = locate_label(film, dpi=dpi)
    assert reg is not None and reg.kind == kind
    tol = int(round(2.0 / 25.4 * dpi))  # the box found is the patch / paper sheet, within 2 mm
    assert all(abs(a - b) <= tol for a, b in zip(reg.box, box)), (reg.box, box)


def test_paper_has_no_film_grain_and_casts_a_shadow():
    film, box = make("adhesive", noise=0.02)
    f = kind_features(_unit(film), box, 200.0)
    assert f.film_grain > 0.012 and f.patch_grain < 0.5 * f.film_grain
    assert f.shadow_sides >= 2 and f.level > 0.94
    film, box = make("printed", noise=0.02)
    f = kind_features(_unit(film), box, 200.0)
    assert f.patch_grain > 0.5 * f.film_grain and f.shadow_sides < 2


def test_grain_free_film_paper_found_by_its_shadow():
    film, box = make("adhesive", noise=0.0)
    assert classify_label(_unit(film), box, 200.0) == "adhesive"


def test_handwriting_features():
    film, box = make("handwritten")
    hand = kind_features(_unit(film), box, 200.0)
    film, box = make("printed")
    printed = kind_features(_unit(film), box, 200.0)
    assert hand.height_spread >= 0.15 > printed.height_spread
    assert hand.width_cv >= 0.25 > printed.width_cv


def test_bad_input():
    g = np.zeros((100, 100), np.float32)
    with pytest.raises(ValueError):
        classify_label(g, (10, 10, 10, 50), 150.0)
    with pytest.raises(ValueError):
        classify_label(g, (10, 10, 50, 150), 150.0)
    with pytest.raises(ValueError):
        classify_label(g.astype(np.uint8), (10, 10, 50, 50), 150.0)
    with pytest.raises(ValueError):
        classify_label(g, (10, 10, 50, 50), 0.0)


def _reading(kind: str) -> LabelReading:
    return LabelReading(fields={}, lines=(), region=LabelRegion(box=(0, 0, 10, 40), rotation_k=0, dark_text=True, kind=kind))


def test_qc_holds_handwriting_and_records_adhesive():
    cfg = QCConfig()
    hw = check_label_kind(_reading("handwritten"), config=cfg)
    assert [(q.code, q.severity) for q in hw] == [("handwriting", "review")]
    assert [(q.code, q.severity) for q in check_label_kind(_reading("adhesive"), config=cfg)] == [("adhesive_label", "info")]
    assert check_label_kind(_reading("printed"), config=cfg) == []
    assert check_label_kind(LabelReading(fields={}, lines=()), config=cfg) == []
    # check_label (what the flow calls) carries the finding, severity from QCConfig
    assert ("handwriting", "fail") in {(q.code, q.severity) for q in
                                       check_label(_reading("handwritten"), config=QCConfig(handwritten_label_severity="fail"))}
    assert ("adhesive_label", "info") in {(q.code, q.severity) for q in check_label(_reading("adhesive"), config=cfg)}


def test_flashed_label_near_dark_anatomy_is_printed_when_measured_before_denoise():
    """Sample film_06 (flashed card, top-right, next to dark anatomy): after denoising the film
    has no measurable grain and the anatomy's gradient looks like a sticker's shadow, so the kind
    is measured on the film before denoising (``kind_from``, what flows.film passes)."""
    from pipeline import denoise, geometry, scan_io

    root = Path(__file__).resolve().parents[1] / "sample_scans"
    scan = scan_io.load_scan(root / "film_06.tif", default_dpi=150, max_pixels=10**8)
    film, _ = geometry.straighten(scan.pixels, max_skew_deg=15)
    smooth = denoise.denoise(film)
    region = locate_label(smooth, dpi=scan.dpi)
    assert region is not None and region.kind == "adhesive"  # the trap, on the denoised film
    before = locate_label(smooth, dpi=scan.dpi, kind_from=film)
    assert before.box == region.box and before.kind == "printed"
