"""migrate-batch on a Dask cluster (issue 8) through prefect-dask's DaskTaskRunner.

A ``LocalCluster(n_workers=2, processes=True)`` is started in the test; the CLI
gets its scheduler address through ``FILMFLOW_RUN__DASK_ADDRESS``. Checked: the
batch finishes with every film in a final state, each archived film in the
archive once; the films ran on the Dask workers (they imported
``flows.film``); the ledger was written by the CLI process only (every event's
actor is one lease owner, host:pid of the CLI).

Provenance of inputs: copies of ``sample_scans/film_*`` (see sample_scans/SOURCES.md).
"""

from __future__ import annotations

from collections import Counter

import pytest

from test_crash_safety import FINAL_STATES, copy_samples, ledger_events, ledger_rows, run_cli, tree_hashes

pytest.importorskip("prefect_dask")
distributed = pytest.importorskip("distributed")


@pytest.mark.slow
def test_migrate_batch_on_local_dask_cluster(tmp_path, prefect_server, monkeypatch):
    # workers report their task runs to the same Prefect server as the flow
    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home-workers"))
    src = tmp_path / "scans"
    copy_samples(src, 4)
    before = tree_hashes(src)
    work, archive = tmp_path / "work", tmp_path / "archive"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster, distributed.Client(cluster) as client:
        res = run_cli("migrate", str(src), "--archive", str(archive), "--work-dir", str(work),
                      "--report", str(tmp_path / "r.csv"), cwd=tmp_path, api_url=prefect_server,
                      FILMFLOW_RUN__DASK_ADDRESS=cluster.scheduler_address)
        assert res.returncode == 0, res.stderr[-3000:]
        ran_films = client.run(lambda: __import__("sys").modules.get("flows.film") is not None)
    assert any(ran_films.values()), "films ran on the Dask workers"
    rows = ledger_rows(work)
    assert len(rows) == 4 and {r["state"] for r in rows} <= FINAL_STATES
    actors = {e["actor"] for e in ledger_events(work)}
    assert len(actors) == 1, actors  # one writer: the flow's ledger in the CLI process
    held = Counter(p.stem for p in archive.rglob("*.dcm"))
    assert all(n == 1 for n in held.values())
    assert set(held) == {r["sop_instance_uid"] for r in rows if r["state"] == "archived"}
    assert tree_hashes(src) == before
