"""flows.film.process_film records which Tesseract read the label; the report shows it.

Inputs: sample_scans/film_08.png (synthetic film scan of a real radiograph with an invented
flashed label, provenance in sample_scans/SOURCES.md): a label to read;
tests/bad_inputs/scans/no_label.png (provenance in tests/bad_inputs/MANIFEST.md): a film
without a label, where Tesseract does not run. Needs Debian's tesseract-ocr and tesserocr.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from filmflow.config import load_settings
from filmflow.report import report_row
from flows.film import process_film
from pipeline.ocr import ocr_engine, tesseract_version

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parent / "sample_scans"


def _process(tmp_path: Path, path: Path, engine: str):
    settings = load_settings(SAMPLES / "filmflow.toml", ocr={"engine": engine})
    staging = tmp_path / f"staging-{engine}-{path.stem}"
    staging.mkdir()
    out = process_film(path, source_file=path.name, settings=settings, batch_name="b", manifest_rows=None,
                       staging_dir=staging)
    return out, settings


@pytest.mark.parametrize(("engine", "used"), [("auto", "tesserocr"), ("tesserocr", "tesserocr"),
                                              ("pytesseract", "pytesseract")])
def test_record_and_report_name_the_engine_that_read_the_label(tmp_path, engine, used):
    out, settings = _process(tmp_path, SAMPLES / "film_08.png", engine)
    assert out.record["fields"], "the label was read"
    version = tesseract_version(settings.ocr)
    assert ocr_engine(settings.ocr) == used  # auto: tesserocr, installed here
    assert (out.record["ocr_engine"], out.record["tesseract_version"]) == (used, version)
    assert version.split(".")[0].isdigit()
    row = report_row(out.record, status="flagged", ledger_state=out.state)
    assert (row["ocr_engine"], row["tesseract_version"]) == (used, version)


def test_no_label_no_engine(tmp_path):
    out, _ = _process(tmp_path, HERE / "bad_inputs" / "scans" / "no_label.png", "auto")
    assert "label_not_found" in out.record["qc_flags"]
    assert (out.record["ocr_engine"], out.record["tesseract_version"]) == ("", "")
