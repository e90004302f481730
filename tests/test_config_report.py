"""Configuration precedence and the report's fixed columns."""

from __future__ import annotations

import pytest

from filmflow.config import load_settings
from filmflow.discover import discover_scans
from filmflow.errors import ConfigError, SourceError
from filmflow.report import COLUMNS, read_report, report_row, report_status, write_report


def test_env_beats_toml_and_overrides_beat_env(tmp_path, monkeypatch):
    cfg = tmp_path / "f.toml"
    cfg.write_text('[denoise]\nmethod = "off"\n[dicom]\ntransfer_syntax = "jpegls_lossless"\n[archive]\nurl = "a"\n')
    monkeypatch.setenv("FILMFLOW_DICOM__TRANSFER_SYNTAX", "rle_lossless")
    s = load_settings(cfg, archive={"url": "dicom://X@127.0.0.1:1"})
    assert (s.denoise.method, s.dicom.transfer_syntax, s.archive.url) == ("off", "rle_lossless", "dicom://X@127.0.0.1:1")


@pytest.mark.parametrize("text", ['[dicom]\nuid_root = "1.02.3"\n', '[denoise]\nmethod = "median"\n', "[[broken"])
def test_bad_configuration_names_the_field(tmp_path, text):
    cfg = tmp_path / "f.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError):
        load_settings(cfg)


@pytest.mark.parametrize("text, field", [
    ('[archive]\nstorage_comitment = "require"\n', "archive.storage_comitment"),
    ("[geometry]\norientation_lable_alone = true\n", "geometry.orientation_lable_alone"),
])
def test_misspelled_setting_is_refused_by_name(tmp_path, text, field):
    cfg = tmp_path / "f.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=field):
        load_settings(cfg)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")


def test_report_columns_in_order(tmp_path):
    rec = {"source_file": "a.tif", "sha256": "ab", "skew_deg": 1.5, "header": {"PatientID": "123", "PatientName": "DOE^JO"},
           "qc_flags": "manifest_disagree", "fields": {"PatientID": {"value": "123", "confidence": 91.0}}}
    path = write_report(tmp_path / "r.csv", [report_row(rec, status="flagged", ledger_state="flagged")])
    rows = read_report(path)
    assert list(rows[0])[: len(COLUMNS)] == list(COLUMNS)
    assert (rows[0]["patient_id"], rows[0]["patient_name"], rows[0]["status"], rows[0]["conf_PatientID"]) == ("123", "DOE^JO", "flagged", "91.0")


@pytest.mark.parametrize("marker, text", [
    ({"letter": "L", "confident": True}, "L"),
    ({"letter": "R", "confident": False}, "R?"),
    ({"letter": "", "confident": False}, ""),
])
def test_report_shows_geometry_source_marker_and_commitment(marker, text):
    rec = {"geometry": {"skew_source": "content", "rotation_k": 1, "orientation_source": "label+marker"},
           "marker": marker, "label_kind": "adhesive", "storage_commitment": "committed"}
    row = report_row(rec, status="archived", ledger_state="archived")
    assert (row["skew_source"], row["rotation_k"], row["orientation_source"], row["marker"],
            row["label_kind"], row["storage_commitment"]) == ("content", 1, "label+marker", text, "adhesive", "committed")


def test_report_names_the_ocr_engine(tmp_path):
    rec = {"source_file": "a.tif", "ocr_engine": "tesserocr", "tesseract_version": "5.5.4"}
    path = write_report(tmp_path / "r.csv", [report_row(rec, status="flagged", ledger_state="flagged"),
                                             report_row({"source_file": "b.tif"}, status="failed", ledger_state="failed")])
    rows = read_report(path)
    header = list(rows[0])
    assert header.index("storage_commitment") + 1 == header.index("ocr_engine") == header.index("tesseract_version") - 1
    assert (rows[0]["ocr_engine"], rows[0]["tesseract_version"]) == ("tesserocr", "5.5.4")
    assert (rows[1]["ocr_engine"], rows[1]["tesseract_version"]) == ("", "")  # nothing read


def test_report_status_vocabulary():
    assert report_status("archived", archived_before=True) == "skipped"
    assert report_status("archived", archived_before=False) == "archived"
    assert report_status("processed", archived_before=False) == "pending"
    assert report_status("rejected", archived_before=False) == "failed"


def test_discover_skips_other_files_and_symlink_loops(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.TIF").write_bytes(b"x")
    (tmp_path / "b.png").write_bytes(b"y")
    (tmp_path / "notes.txt").write_text("z")
    (tmp_path / "sub" / "loop").symlink_to(tmp_path)
    found = discover_scans(tmp_path, (".tif", ".png"))
    assert [f.relative for f in found] == ["b.png", "sub/a.TIF"]
    assert all(len(f.sha256) == 64 for f in found)
    with pytest.raises(SourceError):
        discover_scans(tmp_path / "missing", (".tif",))
