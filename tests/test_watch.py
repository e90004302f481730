"""watch-folder: only scans that stopped arriving are taken (issue 7).

Inputs are bytes written by the tests themselves (no provenance needed), plus
the tiny labelled batch of ``fixtures_prefect`` for the end-to-end pass.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from flows import watch as fw


def test_stable_files_rules():
    a, b = fw.FileState(10, 1), fw.FileState(12, 2)
    first = {"/h/a.tif": a, "/h/grow.tif": a, "/h/empty.tif": fw.FileState(0, 1), "/h/open.tif": a, "/h/done.tif": a}
    second = {"/h/a.tif": a, "/h/grow.tif": b, "/h/empty.tif": fw.FileState(0, 1), "/h/open.tif": a, "/h/done.tif": a,
              "/h/new.tif": a}
    got = fw.stable_files(first, second, {"/h/open.tif"}, {"/h/done.tif": a})
    assert got == ["/h/a.tif"]


def test_open_for_writing_sees_a_write_handle_not_a_read_handle(tmp_path):
    w, r = tmp_path / "w.tif", tmp_path / "r.tif"
    w.write_bytes(b"x")
    r.write_bytes(b"x")
    with open(w, "ab"), open(r, "rb"):
        assert fw.open_for_writing([str(w), str(r)]) == {str(w.resolve())}
    assert fw.open_for_writing([str(w)]) == set()


def test_snapshot_skips_partial_and_hidden(tmp_path):
    for name in ("a.tif", "b.tif.part", ".c.tif", "d.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.PNG").write_bytes(b"x")
    got = fw.snapshot(tmp_path, (".tif", ".png"))
    assert sorted(Path(p).name for p in got) == ["a.tif", "e.PNG"]


def _grow(path: Path, stop: threading.Event) -> None:
    with open(path, "ab") as fh:
        while not stop.is_set():
            fh.write(b"\0" * 4096)
            fh.flush()
            time.sleep(0.1)


def test_watch_takes_a_stable_scan_not_one_being_written(prefect_api, tmp_path, monkeypatch):
    hot = tmp_path / "hot"
    hot.mkdir()
    monkeypatch.setenv("FILMFLOW_RUN__WORK_DIR", str(tmp_path / "work"))
    (hot / "stable.tif").write_bytes(b"II*\0" + b"\1" * 5000)
    old = time.time() - 60
    os.utime(hot / "stable.tif", (old, old))
    growing = hot / "growing.tif"
    stop = threading.Event()
    writer = threading.Thread(target=_grow, args=(growing, stop))
    writer.start()
    try:
        time.sleep(0.3)
        res = fw.watch_folder(hot_folder=str(hot), poll_s=1.0, dry_run=True)
    finally:
        stop.set()
        writer.join()
    assert res.taken == 1 and res.waiting == 1
    taken = sorted(p.name for p in Path(res.batch_dir).rglob("*") if p.is_file())
    assert taken == ["stable.tif"]
    assert (hot / "stable.tif").stat().st_nlink == 2  # hard link; the original is untouched
    # the writer finished: the second pass takes it, and does not take stable.tif again
    res2 = fw.watch_folder(hot_folder=str(hot), poll_s=0.5, dry_run=True)
    assert res2.taken == 1 and res2.waiting == 0
    assert [p.name for p in Path(res2.batch_dir).rglob("*") if p.is_file()] == ["growing.tif"]
    res3 = fw.watch_folder(hot_folder=str(hot), poll_s=0.2, dry_run=True)
    assert res3.taken == 0 and res3.batch_name == ""


def test_watch_does_not_take_a_file_held_open_for_writing(prefect_api, tmp_path, monkeypatch):
    hot = tmp_path / "hot"
    hot.mkdir()
    monkeypatch.setenv("FILMFLOW_RUN__WORK_DIR", str(tmp_path / "work"))
    with open(hot / "paused.tif", "wb") as fh:  # the writer paused: size and mtime are stable, the file is not done
        fh.write(b"II*\0" + b"\1" * 5000)
        fh.flush()
        res = fw.watch_folder(hot_folder=str(hot), poll_s=0.3, dry_run=True)
    assert res.taken == 0 and res.waiting == 1


def test_watch_migrates_what_it_takes(prefect_api, tiny_batch, tmp_path, monkeypatch):
    import flows.migrate as m

    if not hasattr(m, "process_film_task"):
        pytest.skip("flows.migrate has no process_film_task yet (pipeline being finished)")
    source, truth = tiny_batch
    hot = tmp_path / "hot"
    hot.mkdir()
    shutil.copy2(source / truth[0]["scan_file"], hot / truth[0]["scan_file"])
    monkeypatch.setenv("FILMFLOW_RUN__WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("FILMFLOW_RUN__WORKERS", "1")
    res = fw.watch_folder(hot_folder=str(hot), poll_s=0.5, manifest=str(source / "manifest.csv"),
                          archive=str(tmp_path / "archive"))
    assert res.taken == 1 and sum(res.migrated.values()) == 1
