"""The bundled sample scans: manifest, sidecars, expectations, reproducibility, and the
real digitized-film export (sample_scans/SOURCES.md gives the provenance of each file)."""

from __future__ import annotations

import csv
import importlib.util
import json

import numpy as np
import pytest

from filmflow.errors import UnreadableScanError
from pipeline.geometry import find_film
from pipeline.scan_io import load_scan

from conftest import SHARED_DATA

COLUMNS = ["patient_id", "patient_name", "birth_date", "study_date", "accession_number", "scan_file"]


def _module(sample_dir, name):
    spec = importlib.util.spec_from_file_location(name, sample_dir / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def read_manifest(sample_dir):
    with (sample_dir / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


def test_manifest_columns_and_rows(sample_dir, sample_truth):
    columns, rows = read_manifest(sample_dir)
    assert columns == COLUMNS
    by_file = {r["scan_file"]: r for r in rows}
    assert len(by_file) == len(rows)
    films = {t["scan_file"]: t for t in sample_truth.values() if t["expect"] != "failed"}
    assert set(by_file) == set(films)
    for fname, truth in films.items():
        row, f = by_file[fname], truth["fields"]
        assert row["patient_name"] == f["PatientName"]
        assert row["birth_date"].replace("-", "") == f["PatientBirthDate"]
        assert row["study_date"].replace("-", "") == f["StudyDate"]
        if truth["expect"] == "flagged":
            assert row["patient_id"] != f["PatientID"]
        else:
            assert row["patient_id"] == f["PatientID"]


def test_expectations(sample_truth):
    expect = [t["expect"] for t in sample_truth.values()]
    assert expect.count("flagged") == 1 and expect.count("failed") == 1
    assert expect.count("archived") >= 10
    names = {t["fields"]["PatientName"] for t in sample_truth.values() if "fields" in t}
    assert any("'" in n for n in names) and any("-" in n.split("^")[0] for n in names)


def test_sidecars_are_complete(sample_dir, sample_truth):
    for name, t in sample_truth.items():
        assert (sample_dir / t["scan_file"]).is_file(), name
        if t["expect"] == "failed":
            continue
        for key in ("skew_deg", "film_quad", "film_box", "dpi", "bits_stored", "label_corner", "fields", "attribution", "source"):
            assert key in t, (name, key)
        assert len(t["film_quad"]) == 4 and abs(t["skew_deg"]) <= 6


def test_variety(sample_truth):
    films = [t for t in sample_truth.values() if t["expect"] != "failed"]
    assert {t["container"] for t in films} == {"tiff16", "png8", "jpeg"}
    assert {t["dpi_tag"] for t in films} >= {"inch", "cm", "phys", "jfif", "none"}
    assert {t["label_corner"] for t in films} == {"top-left", "top-right", "bottom-left", "bottom-right"}
    assert {t["date_style"] for t in films} == {"iso", "us", "eu", "mon"}


def test_broken_scan_fails(sample_dir, sample_truth):
    assert sample_truth["broken_scan"]["expect"] == "failed"
    with pytest.raises(UnreadableScanError):
        load_scan(sample_dir / "broken_scan.tif", default_dpi=150, max_pixels=10**8)


def test_total_size(sample_dir):
    assert sum(p.stat().st_size for p in sample_dir.iterdir() if p.is_file()) < 30 * 2**20  # the issue: "under ~30 MB in total"


def test_generator_is_reproducible(sample_dir, tmp_path, sample_truth):
    _module(sample_dir, "make_samples").main(["--out", str(tmp_path)])
    for name, t in sample_truth.items():
        assert json.loads((tmp_path / f"{name}.json").read_text()) == t, name
        if t["expect"] == "failed":
            continue
        a = load_scan(tmp_path / t["scan_file"], default_dpi=150, max_pixels=10**8)
        b = load_scan(sample_dir / t["scan_file"], default_dpi=150, max_pixels=10**8)
        np.testing.assert_array_equal(a.pixels, b.pixels)
    assert (tmp_path / "manifest.csv").read_bytes() == (sample_dir / "manifest.csv").read_bytes()


@pytest.mark.skipif(not (SHARED_DATA / "digitized_films" / "SC1_UNC.dcm").is_file(), reason="shared data not present")
def test_export_digitized_films(sample_dir, tmp_path):
    paths = _module(sample_dir, "export_digitized").export(tmp_path)
    assert [p.name for p in paths] == ["SC1_UNC.tif", "MG1_J2KI.tif"]
    sc1 = load_scan(paths[0], default_dpi=150, max_pixels=10**8)
    mg1 = load_scan(paths[1], default_dpi=150, max_pixels=10**8)
    assert sc1.pixels.shape == (2487, 2048) and mg1.pixels.shape == (4664, 3064)
    assert sc1.pixels.dtype == np.uint16 and (sc1.bits_stored, mg1.bits_stored) == (12, 12)
    assert not sc1.dpi_from_file and not mg1.dpi_from_file
    # SC1: the film runs off three sides; its left, top and bottom edges are visible on the
    # bright bed and tilt by about +1 degree (measured; no independent ground truth)
    det = find_film(sc1.pixels)
    assert det.touches_bed_edge and det.sides_measured >= 2
    assert 0.5 <= det.skew_deg <= 1.5
