"""The ledger on a real PostgreSQL (issue 8): the ledger suite, concurrent leases, and a small batch.

The ledger suite of tests/test_ledger.py runs unchanged against a fresh
PostgreSQL database per test; then two processes race for leases; then a
small ``filmflow migrate`` batch runs with ``FILMFLOW_RUN__LEDGER_URL`` set,
twice (the second archives nothing new).

Provenance of inputs: copies of ``sample_scans/film_*`` (see sample_scans/SOURCES.md).
"""

from __future__ import annotations

import inspect
import multiprocessing as mp
from collections import Counter

import pytest
from sqlalchemy import create_engine, text

import test_ledger
from filmflow.ledger import Ledger
from test_crash_safety import FINAL_STATES, copy_samples, run_cli

LEDGER_TESTS = [f for name, f in sorted(vars(test_ledger).items())
                if name.startswith("test_") and list(inspect.signature(f).parameters) == ["ledger"]]


@pytest.mark.parametrize("case", LEDGER_TESTS, ids=lambda f: f.__name__)
def test_ledger_suite_on_postgres(postgres_ledger_url, case):
    ledger = Ledger(postgres_ledger_url)
    try:
        case(ledger)
    finally:
        ledger.close()


def test_lease_on_postgres(postgres_ledger_url):
    a, b = Ledger(postgres_ledger_url, owner="a"), Ledger(postgres_ledger_url, owner="b")
    try:
        a.discover("/s/x.tif", "ab" * 32, "b1")
        assert a.acquire("/s/x.tif", states=("discovered",))
        assert not b.acquire("/s/x.tif", states=("discovered",))
        a.transition("/s/x.tif", "processed")
        a.release("/s/x.tif")
        assert not b.acquire("/s/x.tif", states=("discovered",)), "processed meanwhile: not to be re-done"
    finally:
        a.close()
        b.close()


def _race(url: str, owner: str, paths: list[str], out: "mp.Queue") -> None:
    led = Ledger(url, owner=owner)
    won = [p for p in paths if led.acquire(p, states=("discovered",))]
    for p in won:
        led.transition(p, "processed", expect=("discovered",))
        led.release(p)
    out.put((owner, won))
    led.close()


def test_concurrent_processes_never_share_a_film(postgres_ledger_url):
    paths = [f"/s/{i:03d}.tif" for i in range(60)]
    led = Ledger(postgres_ledger_url, owner="setup")
    for p in paths:
        led.discover(p, f"{hash(p) & 0xFFFFFFFF:064x}", "b1")
    led.close()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(postgres_ledger_url, f"w{i}", paths, q)) for i in range(3)]
    for p in procs:
        p.start()
    results = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    won = Counter(path for _, ps in results for path in ps)
    assert set(won) == set(paths) and all(n == 1 for n in won.values())
    with create_engine(postgres_ledger_url).connect() as conn:
        moves = conn.execute(text("SELECT source_path, count(*) FROM events WHERE to_state='processed' GROUP BY source_path")).all()
    assert len(moves) == len(paths) and all(n == 1 for _, n in moves)


@pytest.mark.slow
def test_small_batch_with_postgres_ledger(tmp_path, prefect_server, postgres_ledger_url):
    src = tmp_path / "scans"
    copy_samples(src, 3)
    args = ("migrate", str(src), "--archive", str(tmp_path / "archive"), "--work-dir", str(tmp_path / "work"),
            "--workers", "2")
    env = {"FILMFLOW_RUN__LEDGER_URL": postgres_ledger_url}
    first = run_cli(*args, "--report", str(tmp_path / "r1.csv"), cwd=tmp_path, api_url=prefect_server, **env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert not (tmp_path / "work" / "ledger.sqlite").exists(), "the PostgreSQL ledger was used"
    led = Ledger(postgres_ledger_url)
    try:
        rows = list(led.rows())
        assert len(rows) == 3 and {r.state for r in rows} <= FINAL_STATES
        archived = {r.sop_instance_uid for r in rows if r.state == "archived"}
        assert {p.stem for p in (tmp_path / "archive").rglob("*.dcm")} == archived
        second = run_cli(*args, "--report", str(tmp_path / "r2.csv"), cwd=tmp_path, api_url=prefect_server, **env)
        assert second.returncode == 0, second.stderr[-3000:]
        assert {p.stem for p in (tmp_path / "archive").rglob("*.dcm")} == archived
        assert [(r.source_path, r.state) for r in led.rows()] == [(r.source_path, r.state) for r in rows]
    finally:
        led.close()
