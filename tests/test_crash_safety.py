"""Crash safety (issue 8): nothing lost, nothing duplicated, originals untouched.

``filmflow migrate`` is killed with SIGKILL (its whole process group) at seeded
points of a batch -- a point is "after the ledger recorded N events, plus a
seeded delay" -- several times, then re-run until it finishes. Afterwards:

- every source file has exactly one ledger row, in a final state
  (archived / flagged / failed), and one report row;
- every film was moved to processed/flagged at most once (the events table;
  a ``failed`` film is retried by every run by design), and archived at most once;
- the archive holds each archived film exactly once (a folder archive, with no
  temporary files left; and a real Orthanc reached by C-STORE); the staging
  folder holds nothing;
- the original scans are byte-for-byte unchanged (SHA-256 before/after).

A second test starts two ``filmflow migrate`` runs on the same source at once
and checks, via the events table, that no film was processed twice.

Provenance of inputs: copies of ``sample_scans/film_*`` (synthetic film scans,
see sample_scans/SOURCES.md). CLI runs share one Prefect server
(``prefect_server`` fixture) so that each run starts in seconds.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pydicom
import pytest

from filmflow.report import read_report

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_scans"
FILMFLOW = [sys.executable, "-m", "filmflow.cli"]
FINAL_STATES = {"archived", "flagged", "failed"}
SCAN_EXTS = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


# --- helpers shared with the other issue-8 test modules ---------------------------------------
def cli_env(cwd: Path, api_url: str | None = None, **extra: str) -> dict[str, str]:
    """Environment of a CLI subprocess: own PREFECT_HOME, the shared server when given."""
    env = dict(os.environ, PREFECT_HOME=str(cwd / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               DO_NOT_TRACK="1", OMP_THREAD_LIMIT="1")
    env.pop("PREFECT_API_URL", None)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env.update(extra)
    return env


_RUNS = itertools.count()


def start_cli(*args: str, cwd: Path, api_url: str | None = None, **extra: str) -> subprocess.Popen:
    """Start ``filmflow`` in its own process group (so a kill reaches every child).

    Its output goes to files under ``cwd`` (a pipe nobody reads while the test
    polls would fill up and block the run); :func:`finish` collects it.
    """
    n = next(_RUNS)
    out_path, err_path = Path(cwd) / f"cli-{n}.out", Path(cwd) / f"cli-{n}.err"
    with open(out_path, "w") as out_fh, open(err_path, "w") as err_fh:
        proc = subprocess.Popen([*FILMFLOW, *args], cwd=cwd, env=cli_env(cwd, api_url, **extra), stdout=out_fh,
                                stderr=err_fh, text=True, start_new_session=True)
    proc.output_paths = (out_path, err_path)  # type: ignore[attr-defined]
    return proc


def finish(proc: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
    """Wait for ``proc`` (killing its group on timeout) and return its output."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        raise
    out_path, err_path = proc.output_paths  # type: ignore[attr-defined]
    return subprocess.CompletedProcess(proc.args, proc.returncode, out_path.read_text(errors="replace"),
                                       err_path.read_text(errors="replace"))


def run_cli(*args: str, cwd: Path, api_url: str | None = None, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
    return finish(start_cli(*args, cwd=cwd, api_url=api_url, **extra), timeout)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of ``proc`` and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def copy_samples(dest: Path, n: int) -> list[Path]:
    """Copy the first ``n`` good sample films (film_01..) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    films = sorted(p for p in SAMPLES.glob("film_*") if p.suffix.lower() in SCAN_EXTS)[:n]
    for p in films:
        shutil.copy2(p, dest / p.name)
    return [dest / p.name for p in films]


def tree_hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def ledger_rows(work: Path) -> list[dict]:
    with sqlite3.connect(f"file:{work / 'ledger.sqlite'}?mode=ro", uri=True, timeout=30) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT source_path, state, sop_instance_uid, staged_path, error FROM films")]


def ledger_events(work: Path) -> list[dict]:
    with sqlite3.connect(f"file:{work / 'ledger.sqlite'}?mode=ro", uri=True, timeout=30) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT source_path, from_state, to_state, actor FROM events ORDER BY id")]


def event_count(work: Path) -> int:
    db = work / "ledger.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    except sqlite3.Error:
        return 0


def archive_instances(archive: Path) -> Counter:
    """SOP Instance UID -> number of DICOM files holding it in a folder archive."""
    return Counter(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in archive.rglob("*.dcm"))


def orthanc_instances(orthanc) -> Counter:
    """SOP Instance UID -> number of instances holding it in Orthanc."""
    return Counter(i["MainDicomTags"]["SOPInstanceUID"] for i in orthanc.rest("GET", "/instances?expand"))


def assert_nothing_lost_or_duplicated(src: Path, work: Path, archive: Path | str, report: Path, before: dict[str, str],
                                      orthanc=None) -> None:
    """The safety properties of issue 8 after a finished batch (folder archive, or ``orthanc``)."""
    assert tree_hashes(src) == before, "an original scan changed"
    scans = {str(p.resolve()) for p in src.rglob("*") if p.suffix.lower() in SCAN_EXTS}
    rows = ledger_rows(work)
    assert Counter(r["source_path"] for r in rows) == Counter(scans), "one ledger row per source file"
    assert {r["state"] for r in rows} <= FINAL_STATES, Counter(r["state"] for r in rows)
    events = ledger_events(work)
    for path in scans:
        to = Counter(e["to_state"] for e in events if e["source_path"] == path)
        # a failed film is retried by every run; a processed or flagged one never again
        assert to["processed"] + to["flagged"] <= 1, (path, to)
        assert to["archived"] <= 1, (path, to)
    archived = {r["sop_instance_uid"] for r in rows if r["state"] == "archived"}
    if orthanc is not None:
        held = orthanc_instances(orthanc)
    else:
        held = archive_instances(archive) if archive.exists() else Counter()
        # temporary files (FolderArchive writes ".<name>.<random>.tmp" and renames it into place)
        leftovers = [p for p in archive.rglob("*") if p.is_file() and (p.suffix in (".tmp", ".part") or p.name.startswith("."))]
        assert leftovers == [], leftovers
    assert set(held) == archived and all(n == 1 for n in held.values()), held
    staged = [p for p in (work / "staging").rglob("*") if p.is_file()]
    assert staged == [], staged
    report_rows = read_report(report)
    assert sorted(r["source_file"] for r in report_rows) == sorted(
        p.relative_to(src).as_posix() for p in src.rglob("*") if p.suffix.lower() in SCAN_EXTS)
    by_path = {r["source_path"]: r["state"] for r in rows}
    n_archived = sum(1 for s in by_path.values() if s == "archived")
    assert sum(r["status"] in ("archived", "skipped") for r in report_rows) == n_archived


# --- tests ---------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("target", ["folder", "orthanc"])
def test_sigkill_at_random_points_then_resume(tmp_path, prefect_server, request, target):
    src = tmp_path / "scans"
    copy_samples(src, 8)
    before = tree_hashes(src)
    work, archive, report = tmp_path / "work", tmp_path / "archive", tmp_path / "report.csv"
    orthanc = request.getfixturevalue("orthanc_empty") if target == "orthanc" else None
    url = orthanc.dicom_url if orthanc else str(archive)
    args = ("migrate", str(src), "--archive", url, "--work-dir", str(work), "--report", str(report),
            "--workers", "2")
    rng = random.Random(20260801 if target == "folder" else 20260802)
    kills = 0
    # a batch of 8 films records ~8 discovered + 8 processed/flagged + archived events
    for attempt in range(4):
        threshold = rng.randint(1, 20)
        extra_delay = rng.uniform(0.0, 1.5)
        proc = start_cli(*args, cwd=tmp_path, api_url=prefect_server)
        deadline = time.monotonic() + 240
        while proc.poll() is None and event_count(work) < threshold and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(extra_delay)
        if proc.poll() is None:
            kill_group(proc)
            kills += 1
            assert tree_hashes(src) == before
        else:
            finish(proc)
    assert kills >= 2, "the seeded kill points should interrupt at least two runs"
    for _ in range(3):
        done = run_cli(*args, cwd=tmp_path, api_url=prefect_server)
        assert done.returncode == 0, done.stderr[-3000:]
        if {r["state"] for r in ledger_rows(work)} <= FINAL_STATES:
            break
    assert_nothing_lost_or_duplicated(src, work, archive, report, before, orthanc)
    # a further run changes nothing
    again = run_cli(*args, cwd=tmp_path, api_url=prefect_server)
    assert again.returncode == 0, again.stderr[-3000:]
    assert_nothing_lost_or_duplicated(src, work, archive, report, before, orthanc)


@pytest.mark.slow
def test_two_concurrent_runs_do_not_process_a_film_twice(tmp_path, prefect_server):
    src = tmp_path / "scans"
    copy_samples(src, 8)
    before = tree_hashes(src)
    work, archive = tmp_path / "work", tmp_path / "archive"
    common = ("migrate", str(src), "--archive", str(archive), "--work-dir", str(work), "--workers", "1")
    a = start_cli(*common, "--report", str(tmp_path / "a.csv"), cwd=tmp_path, api_url=prefect_server)
    b = start_cli(*common, "--report", str(tmp_path / "b.csv"), cwd=tmp_path, api_url=prefect_server)
    res_a, res_b = finish(a), finish(b)
    assert res_a.returncode == 0, res_a.stderr[-3000:]
    assert res_b.returncode == 0, res_b.stderr[-3000:]
    events = ledger_events(work)
    for path in {e["source_path"] for e in events}:
        to = Counter(e["to_state"] for e in events if e["source_path"] == path)
        assert to["processed"] + to["flagged"] + to["failed"] == 1, (path, to)
        assert to["archived"] <= 1, (path, to)
    # a film either run skipped (leased by the other) is finished by the next run, not redone
    final = run_cli(*common, "--report", str(tmp_path / "c.csv"), cwd=tmp_path, api_url=prefect_server)
    assert final.returncode == 0, final.stderr[-3000:]
    assert_nothing_lost_or_duplicated(src, work, archive, tmp_path / "c.csv", before)
