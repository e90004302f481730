"""The project manager's view: artifacts of migrate-batch on a real Prefect server (issue 7).

Inputs: the tiny labelled batch of ``fixtures_prefect.make_tiny_batch`` (provenance there).
"""

from __future__ import annotations

import asyncio
import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from fixtures_prefect import ROOT, prefect_env

from flows import artifacts as fa

ART_DIR = ROOT / "test-artifacts"


# --- pure functions -----------------------------------------------------------------------------
def test_keys_are_stable_lowercase_dash():
    assert fa.artifact_key("Ward 7/2001", "summary") == "migrate-ward-7-2001-summary"
    assert fa.artifact_key("ward-7-2001", "progress") == "migrate-ward-7-2001-progress"
    name, tags = fa.run_labels("Ward 7", "St Elsewhere", "VIDAR DiagnosticPRO")
    assert name == "migrate-ward-7-st-elsewhere-vidar-diagnosticpro"
    assert tags == ["batch:ward-7", "site:st-elsewhere", "digitizer:vidar-diagnosticpro"]


def test_percentile_and_step_stats():
    assert fa.percentile([1, 2, 3, 4, 5], 50) == 3
    assert fa.percentile([1.0, 2.0], 95) == pytest.approx(1.95)
    assert fa.percentile([4.0], 95) == 4.0
    with pytest.raises(ValueError):
        fa.percentile([], 50)
    stats = fa.step_stats([{"load": 1.0, "ocr": 2.0}, {"load": 3.0, "ocr": 4.0, "dicom": 0.5}], [0.2, 0.4])
    assert list(stats) == ["load", "ocr", "dicom", "push_verify"]
    assert stats["load"] == {"n": 2, "median": 2.0, "p95": 2.9}
    assert stats["push_verify"]["n"] == 2


def test_codes_never_carry_free_text():
    assert fa.safe_code("identity_mismatch: PatientName DOE^JANE != DOE^JOAN") == "identity_mismatch"
    lines = fa.film_lines([{"source_file": "DOE_JANE.tif", "status": "flagged", "qc_flags": "low_ocr_confidence;missing_PatientID",
                            "error": ""}], {"DOE_JANE.tif": "0123456789"})
    md = fa.review_markdown(batch_name="b", site="s", digitizer="d", counts={"flagged": 1},
                            qc_counts={"low_ocr_confidence": 1, "missing_PatientID": 1}, lines=lines, report_path="r.csv")
    assert "0123456789" in md and "DOE" not in md and "missing_PatientID" in md


# --- against a real server ----------------------------------------------------------------------
def read_artifacts(api_url: str, keys: list[str], *, expect: int = 1, timeout: float = 90.0) -> dict[str, list]:
    """Artifacts per key (newest first) read through the Prefect client, polled until each key has ``expect``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def once() -> dict[str, list]:
        async with get_client() as client:
            arts = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)),
                                               sort=ArtifactSort.CREATED_DESC)
        out: dict[str, list] = {k: [] for k in keys}
        for a in arts:
            out[a.key].append(a)
        return out

    t0 = time.monotonic()
    with temporary_settings({PREFECT_API_URL: api_url}):
        while True:
            got = asyncio.run(once())
            if all(len(v) >= expect for v in got.values()) or time.monotonic() - t0 > timeout:
                return got
            time.sleep(1.0)


def test_dashboard_publishes_artifacts_with_a_fake_batch(prefect_api):
    """BatchDashboard inside a flow: progress, summary table, review markdown, run name and tags."""
    from prefect import flow
    from prefect.client.orchestration import get_client

    records = [("processed", {"timings": {"load": 0.1, "ocr": 1.0}}), ("flagged", {"timings": {"load": 0.2, "ocr": 2.0}}),
               ("failed", {"timings": {"load": 0.3}})]

    @flow(name="dashboard-probe")
    def probe() -> str:
        from prefect.runtime import flow_run

        dash = fa.BatchDashboard("probe-batch", "test-site", "test-digitizer", total=3)
        push = dash.timed_push(lambda key: "archived")
        for state, rec in records:
            dash.film_done(state, rec)
        push("k")
        summary = SimpleNamespace(batch_name="probe-batch", report_path="/tmp/probe.csv", seconds=3.6,
                                  counts={"archived": 1, "flagged": 1, "failed": 1}, qc_counts={"low_ocr_confidence": 1},
                                  films=[{"source_file": "a.tif", "status": "archived", "qc_flags": "", "error": ""},
                                         {"source_file": "b.tif", "status": "flagged", "qc_flags": "low_ocr_confidence", "error": ""},
                                         {"source_file": "c.tif", "status": "failed", "qc_flags": "", "error": "unreadable_scan: x"}])
        dash.finish(summary, [SimpleNamespace(relative=r, path=Path("/x") / r) for r in ("a.tif", "b.tif", "c.tif")])
        return str(flow_run.get_id())

    run_id = probe()
    keys = [fa.artifact_key("probe-batch", k) for k in ("progress", "summary", "review")]
    got = read_artifacts(prefect_api, keys)
    assert all(got[k] for k in keys), {k: len(v) for k, v in got.items()}
    prog, table, review = (got[k][0] for k in keys)
    assert prog.type == "progress" and float(prog.data) == 100.0
    assert table.type == "table" and str(table.flow_run_id) == run_id
    rows = {(r["section"], r["item"]): r["value"] for r in _table_rows(table.data)}
    assert rows[("status", "flagged")] == 1 and rows[("qc", "low_ocr_confidence")] == 1
    assert rows[("throughput", "films/hour")] == 3000.0
    assert ("seconds", "ocr p95 (n=2)") in rows and ("seconds", "push_verify median (n=1)") in rows
    assert review.type == "markdown" and "unreadable_scan" in review.data and "b.tif" not in review.data

    async def run_info():
        async with get_client() as client:
            return await client.read_flow_run(run_id)

    fr = asyncio.run(run_info())
    assert fr.name == "migrate-probe-batch-test-site-test-digitizer"
    assert {"batch:probe-batch", "site:test-site", "digitizer:test-digitizer"} <= set(fr.tags)


def _table_rows(data):
    import json

    return json.loads(data) if isinstance(data, str) else data


def _migrate_ready() -> str:
    import flows.migrate as m

    return "" if hasattr(m, "process_film_task") else "flows.migrate has no process_film_task yet (pipeline being finished)"


def run_filmflow_migrate(api_url: str, home: Path, source: Path, work: Path, batch: str, *extra: str) -> subprocess.CompletedProcess:
    env = prefect_env(home, api_url)
    env.update(FILMFLOW_RUN__SITE="test-site", FILMFLOW_RUN__DIGITIZER="test-digitizer", OMP_THREAD_LIMIT="1")
    cmd = [str(Path(sys.executable).with_name("filmflow")), "migrate", str(source), "--manifest", str(source / "manifest.csv"),
           "--archive", str(work / "archive"), "--work-dir", str(work / "work"), "--report", str(work / "report.csv"),
           "--batch-name", batch, "--workers", "2", *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=str(work))


@pytest.fixture(scope="module")
def migrated(prefect_server, tiny_batch, tmp_path_factory):
    """The tiny batch migrated by ``filmflow migrate`` (a subprocess) against the test server."""
    reason = _migrate_ready()
    if reason:
        pytest.skip(reason)
    source, truth = tiny_batch
    work = tmp_path_factory.mktemp("migrated")
    t0 = time.monotonic()
    proc = run_filmflow_migrate(prefect_server, work / "prefect-home", source, work, "ward-7-2001")
    seconds = time.monotonic() - t0
    (work / "stdout.txt").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return SimpleNamespace(api=prefect_server, source=source, truth=truth, work=work, proc=proc, seconds=seconds,
                           batch="ward-7-2001")


def test_migrate_artifacts_match_the_report(migrated):
    keys = [fa.artifact_key(migrated.batch, k) for k in ("progress", "summary", "review")]
    got = read_artifacts(migrated.api, keys)
    assert all(got[k] for k in keys), {k: len(v) for k, v in got.items()}
    with open(migrated.work / "report.csv", newline="", encoding="utf-8") as fh:
        report = list(csv.DictReader(fh))
    want: dict[str, int] = {}
    want_qc: dict[str, int] = {}
    for r in report:
        want[r["status"]] = want.get(r["status"], 0) + 1
        for c in filter(None, r["qc_flags"].split(";")):
            want_qc[c] = want_qc.get(c, 0) + 1
    rows = _table_rows(got[keys[1]][0].data)
    status = {r["item"]: r["value"] for r in rows if r["section"] == "status"}
    qc = {r["item"]: r["value"] for r in rows if r["section"] == "qc"}
    assert status == want
    assert qc == want_qc
    total = {r["item"]: r["value"] for r in rows if r["section"] == "films"}["total"]
    assert total == len(report) == len(migrated.truth)
    assert float(got[keys[0]][0].data) == 100.0
    assert {r["item"] for r in rows if r["section"] == "report"} == {"path"}
    print(f"filmflow migrate of {len(report)} films against the server: {migrated.seconds:.1f} s; counts {status}")


def test_screenshot_of_the_flow_run_page(migrated):
    """Headless Chromium: the flow run page with its artifacts -> test-artifacts/flow-run.png."""
    playwright = pytest.importorskip("playwright.sync_api")
    keys = [fa.artifact_key(migrated.batch, k) for k in ("summary", "review")]
    got = read_artifacts(migrated.api, keys)
    art = got[keys[0]][0]
    ui = migrated.api.rsplit("/api", 1)[0]
    ART_DIR.mkdir(exist_ok=True)
    out = ART_DIR / "flow-run.png"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{ui}/runs/flow-run/{art.flow_run_id}", wait_until="networkidle", timeout=60_000)
        page.get_by_text("Artifacts", exact=True).first.click()
        page.get_by_text(keys[0]).first.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out))
        for kind in ("summary", "review"):
            page.goto(f"{ui}/artifacts/artifact/{got[fa.artifact_key(migrated.batch, kind)][0].id}",
                      wait_until="networkidle", timeout=60_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(ART_DIR / f"artifact-{kind}.png"))
        browser.close()
    assert out.stat().st_size > 10_000


# --- the commands ------------------------------------------------------------------------------
def test_filmflow_server_starts_on_loopback_with_its_own_home(tmp_path):
    """``filmflow server --port P --prefect-home H``: healthy on 127.0.0.1:P, database under H, UI on port P."""
    import signal
    import urllib.request

    from fixtures_prefect import free_port, wait_healthy

    port = free_port()
    home = tmp_path / "home"
    env = prefect_env(tmp_path / "ignored")
    env.pop("PREFECT_HOME")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("filmflow")), "server", "--port", str(port),
                             "--prefect-home", str(home)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        startup = wait_healthy(f"http://127.0.0.1:{port}/api", proc, timeout=180)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ui-settings", timeout=10) as r:
            ui = r.read().decode()
        assert f"127.0.0.1:{port}/api" in ui
        assert list(home.glob("*.db")), "the database is not under --prefect-home"
        print(f"filmflow server healthy after {startup:.1f} s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_deploy_builds_the_three_deployments(tmp_path, capsys):
    import argparse

    from flows import cli

    hot = tmp_path / "hot"
    hot.mkdir()
    args = argparse.Namespace(name="filmflow", config=None, archive=str(tmp_path / "arch"), watch=str(hot),
                              interval=60.0, poll=5.0, manifest=None)
    deps = {d.flow_name: d for d in cli.build_deployments(args)}
    assert "migrate-batch" in deps and "watch-folder" in deps
    if cli.load_release_flow() is None:
        assert "release-approved not served" in capsys.readouterr().err
    else:
        assert "release-approved" in deps
    assert all(d.name == "filmflow" for d in deps.values())
    assert deps["watch-folder"].parameters["hot_folder"] == str(hot.resolve())
    assert deps["watch-folder"].schedules, "the watch deployment has its interval schedule"
    assert deps["migrate-batch"].parameters == {"archive": str(tmp_path / "arch")}
