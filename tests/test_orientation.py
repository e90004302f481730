"""Orientation from the flashed label: a film scanned upside down is turned upright (issue 3)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from filmflow.config import load_settings
from flows.film import process_film
from pipeline.manifest import load_manifest
from pipeline.orientation import rotate_box, turns_from_label
from pipeline.types import LabelRegion

SAMPLES = Path(__file__).resolve().parent.parent / "sample_scans"


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_rotate_box_matches_numpy_rot90(k):
    img = np.zeros((7, 11), np.uint8)
    box = (1, 2, 4, 9)
    img[box[0]:box[2], box[1]:box[3]] = 1
    turned = np.rot90(img, k)
    r0, c0, r1, c1 = rotate_box(box, img.shape, k)
    assert turned[r0:r1, c0:c1].all() and turned.sum() == (r1 - r0) * (c1 - c0)


def test_turns_from_label():
    assert turns_from_label(None) is None
    assert turns_from_label(LabelRegion((0, 0, 1, 1), rotation_k=0)) == 0
    assert turns_from_label(LabelRegion((0, 0, 1, 1), rotation_k=2)) == 2
    assert turns_from_label(LabelRegion((0, 0, 1, 1), rotation_k=1)) is None  # sideways cards decide nothing


def _upside_down(tmp_path):
    truth = json.loads((SAMPLES / "film_03.json").read_text())
    upright = np.asarray(Image.open(SAMPLES / "film_03.png"))
    src = tmp_path / "film_03.png"  # same name: the manifest's scan_file row applies
    Image.fromarray(np.rot90(upright, 2).copy()).save(src, dpi=(truth["dpi"], truth["dpi"]))
    return truth, src


def test_film_scanned_upside_down_is_turned_upright(tmp_path):
    """film_03 fed upside down: same identity, same pixels as the upright film, orientation decided.

    The sample site declares ``geometry.orientation_label_alone`` (its cards are flashed upright).
    """
    truth, src = _upside_down(tmp_path)
    settings = load_settings(SAMPLES / "filmflow.toml")
    assert settings.geometry.orientation_label_alone
    rows = load_manifest(SAMPLES / "manifest.csv", settings.manifest)
    out = {}
    for name, path in (("turned", src), ("upright", SAMPLES / "film_03.png")):
        staging = tmp_path / f"staging-{name}"
        staging.mkdir()
        out[name] = process_film(path, source_file="film_03.png", settings=settings, batch_name="b",
                                 manifest_rows=rows, staging_dir=staging)
    turned, ref = out["turned"], out["upright"]
    assert ref.state == turned.state == "processed", (turned.record.get("qc_flags"), turned.error)
    assert turned.record["geometry"]["rotation_k"] == 2 and turned.record["geometry"]["orientation_decided"]
    assert ref.record["geometry"]["rotation_k"] == 0
    for kw, value in truth["fields"].items():
        assert turned.record["header"][kw] == value
    a = pydicom.dcmread(turned.staged_path).pixel_array.astype(float)
    b = pydicom.dcmread(ref.staged_path).pixel_array.astype(float)
    rows_, cols_ = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    corr = np.corrcoef(a[:rows_, :cols_].ravel(), b[:rows_, :cols_].ravel())[0, 1]
    assert abs(a.shape[0] - b.shape[0]) <= 2 and abs(a.shape[1] - b.shape[1]) <= 2
    assert corr > 0.98
    assert "turned 180 deg" in pydicom.dcmread(turned.staged_path).DerivationDescription


def test_label_alone_does_not_turn_a_film_by_default(tmp_path):
    """Without the site's convention (default settings) an upside-down label and no lead marker
    leave the film as scanned, undecided and said so: the label could be a card flashed sideways."""
    truth, src = _upside_down(tmp_path)
    settings = load_settings(SAMPLES / "filmflow.toml", geometry={"orientation_label_alone": False})
    rows = load_manifest(SAMPLES / "manifest.csv", settings.manifest)
    staging = tmp_path / "staging"
    staging.mkdir()
    res = process_film(src, source_file="film_03.png", settings=settings, batch_name="b",
                       manifest_rows=rows, staging_dir=staging)
    geom = res.record["geometry"]
    assert geom["rotation_k"] == 0 and not geom["orientation_decided"], geom
    assert "orientation_undecided" in {f["code"] for f in res.record["qc"]}
    for kw, value in truth["fields"].items():  # the label is still read (upside down)
        assert res.record["header"][kw] == value
