"""Bad inputs (issue 8): one batch over the whole bad-input corpus, through the real CLI.

Every scan-like file ends ``failed`` (with its error code) or ``flagged`` (with a
QC code), the batch finishes with exit 0, nothing reaches the archive that
should not, and the corpus is unchanged. Faulty manifests stop the batch
before anything is touched: exit 2 and a message naming the line and column
(see tests/bad_inputs/MANIFEST.md for why).

Provenance: tests/bad_inputs/MANIFEST.md (made by tests/bad_inputs/make_bad_inputs.py).
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

from filmflow.report import read_report
from test_crash_safety import run_cli, tree_hashes

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "bad_inputs"))

import make_bad_inputs as corpus  # noqa: E402


@pytest.fixture(scope="module")
def bad_batch(tmp_path_factory, prefect_server):
    tmp = tmp_path_factory.mktemp("bad")
    src = tmp / "bad scans"
    shutil.copytree(corpus.SCANS, src, symlinks=True)
    corpus.add_special(src)
    before = tree_hashes(src)
    res = run_cli("migrate", str(src), "--archive", str(tmp / "archive"), "--work-dir", str(tmp / "work"),
                  "--report", str(tmp / "report.csv"), "--workers", "2", cwd=tmp, api_url=prefect_server, timeout=600)
    return {"tmp": tmp, "src": src, "before": before, "res": res,
            "report": {r["source_file"]: r for r in read_report(tmp / "report.csv")} if res.returncode == 0 else {}}


def test_batch_finishes_with_exit_0(bad_batch):
    assert bad_batch["res"].returncode == 0, bad_batch["res"].stderr[-3000:]


def test_corpus_has_at_least_25_faults():
    assert len([k for k, (status, _) in corpus.EXPECTED.items() if status]) >= 25


@pytest.mark.parametrize("name", sorted(corpus.EXPECTED))
def test_each_file_ends_with_its_clear_reason(bad_batch, name):
    status, code = corpus.EXPECTED[name]
    report = bad_batch["report"]
    assert report, "batch did not finish"
    if status is None:
        assert not any(k == name or k.startswith(name + "/") for k in report), "not a scan file: no report row"
        return
    row = report[name]
    assert row["status"] in ((status,) if isinstance(status, str) else status), (row["status"], row["error"], row["qc_flags"])
    flags = {f for f in row["qc_flags"].split(";") if f}
    error_code = row["error"].split(":", 1)[0] if row["error"] else ""
    if row["status"] == "failed":
        assert row["error"], "a failed film names its error"
        assert len(row["error"].split(":", 1)[1].strip()) > 10, "the error says what to do"
    else:
        assert flags, "a flagged film names its QC reason"
    wanted = {code} if isinstance(code, str) else set(code)
    assert ({error_code} | flags) & wanted, (row["error"], flags)
    assert row["dicom_path"] == "" and row["sop_instance_uid"] == ""


def test_one_row_per_scan_file_and_nothing_archived(bad_batch):
    report = bad_batch["report"]
    expected_rows = {k for k, (s, _) in corpus.EXPECTED.items() if s}
    assert set(report) == expected_rows
    assert not list((bad_batch["tmp"] / "archive").rglob("*.dcm"))
    with sqlite3.connect(bad_batch["tmp"] / "work" / "ledger.sqlite") as conn:
        states = [r[0] for r in conn.execute("SELECT state FROM films")]
    assert len(states) == len(expected_rows)
    assert set(states) <= {"failed", "flagged"}


def test_corpus_unchanged(bad_batch):
    assert tree_hashes(bad_batch["src"]) == bad_batch["before"]


@pytest.mark.slow
@pytest.mark.parametrize("manifest", sorted(corpus.MANIFEST_FAULTS))
def test_faulty_manifest_stops_the_batch_naming_the_line(tmp_path, prefect_server, manifest):
    src = tmp_path / "scans"
    src.mkdir()
    shutil.copy2(corpus.SCANS / "no_label.png", src / "a.tif.png")
    res = run_cli("migrate", str(src), "--manifest", str(corpus.MANIFESTS / manifest), "--archive", str(tmp_path / "archive"),
                  "--work-dir", str(tmp_path / "work"), cwd=tmp_path, api_url=prefect_server)
    assert res.returncode == 2, res.stderr[-2000:]
    _fault, message = corpus.MANIFEST_FAULTS[manifest]
    assert message in res.stderr, res.stderr[-2000:]
    assert "TESTPERSON" not in res.stderr + res.stdout and "MÜLLER" not in res.stderr + res.stdout  # no patient data
    ledger = tmp_path / "work" / "ledger.sqlite"
    if ledger.exists():
        with sqlite3.connect(ledger) as conn:
            assert conn.execute("SELECT count(*) FROM films").fetchone()[0] == 0, "nothing touched"
