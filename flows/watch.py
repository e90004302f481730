"""The ``watch-folder`` flow: take the scans that finished arriving in a hot folder and migrate them.

One run is one pass (a deployment schedules it, e.g. every minute):

1. list the scans under the hot folder (size, mtime), wait ``poll_s``, list again;
2. a scan is *stable* when its size and mtime did not change between the two
   listings, it is not empty, and no process holds it open for writing
   (Linux ``/proc/*/fdinfo``); a scan already taken with the same size and
   mtime is not taken again;
3. the stable scans are hard-linked (copied when the work folder is on another
   file system) into ``WORK_DIR/watch/<batch>/`` under their relative paths,
   recorded as taken, and ``migrate-batch`` runs on that folder as a subflow.

The hot folder is never modified. Logs and run names carry counts and the
batch name only, never file names (sites name scans after patients). A batch
whose migration failed is resumed with ``filmflow migrate WORK_DIR/watch/<batch>``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from prefect import flow, get_run_logger

from filmflow.config import load_settings
from filmflow.errors import SourceError

#: Name endings of files still being copied by common tools (never taken).
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".filepart")


@dataclass(frozen=True)
class FileState:
    """What one listing saw of a file."""

    size: int
    mtime_ns: int


def snapshot(folder: Path, extensions: Iterable[str]) -> dict[str, FileState]:
    """Scans under ``folder`` (recursive; hidden and partial files skipped): absolute path -> state."""
    exts = tuple(e.lower() for e in extensions)
    out: dict[str, FileState] = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            low = name.lower()
            if name.startswith(".") or low.endswith(PARTIAL_SUFFIXES) or not low.endswith(exts):
                continue
            p = os.path.join(root, name)
            try:
                st = os.stat(p)
            except FileNotFoundError:
                continue  # removed between listing and stat: not there
            out[os.path.realpath(p)] = FileState(st.st_size, st.st_mtime_ns)
    return out


def open_for_writing(paths: Iterable[str]) -> set[str]:
    """The ``paths`` that some process (that we may inspect) holds open with write access.

    Reads ``/proc/<pid>/fd`` and ``/proc/<pid>/fdinfo`` (Linux). Processes of
    other users that we may not inspect are not seen: size and mtime stability
    still applies to their files.
    """
    wanted = {os.path.realpath(p) for p in paths}
    found: set[str] = set()
    if not wanted or not os.path.isdir("/proc"):
        return found
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # process gone or not ours
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target not in wanted:
                continue
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii") as fh:
                    flags = next((int(line.split()[1], 8) for line in fh if line.startswith("flags:")), 0)
            except OSError:
                continue
            if flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
                found.add(target)
    return found


def stable_files(
    first: Mapping[str, FileState],
    second: Mapping[str, FileState],
    writing: set[str],
    taken: Mapping[str, FileState] | None = None,
) -> list[str]:
    """Paths unchanged and non-empty in both listings, not open for writing, not already taken as they are."""
    taken = taken or {}
    return sorted(
        p for p, st in second.items()
        if first.get(p) == st and st.size > 0 and p not in writing and taken.get(p) != st
    )


class TakenStore:
    """Which hot-folder files were taken (path -> size, mtime, batch), a JSON file in the work folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else {}

    def states(self) -> dict[str, FileState]:
        return {p: FileState(e["size"], e["mtime_ns"]) for p, e in self.entries.items()}

    def add(self, items: Mapping[str, FileState], batch: str) -> None:
        for p, st in items.items():
            self.entries[p] = {"size": st.size, "mtime_ns": st.mtime_ns, "batch": batch}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.entries, indent=0, sort_keys=True))
        os.replace(tmp, self.path)


def link_batch(hot: Path, paths: Iterable[str], dest: Path) -> int:
    """Hard-link (or copy, across file systems) ``paths`` into ``dest`` under their paths relative to ``hot``."""
    n = 0
    for p in paths:
        rel = os.path.relpath(p, hot)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(p, target)
        except OSError:
            shutil.copy2(p, target)
        n += 1
    return n


@dataclass
class WatchResult:
    """What one pass did (counts and the batch name only)."""

    batch_name: str
    taken: int
    waiting: int
    migrated: dict[str, int]
    batch_dir: str = ""


@flow(name="watch-folder", flow_run_name="watch-{batch_prefix}", log_prints=False, validate_parameters=False)
def watch_folder(
    hot_folder: str,
    poll_s: float = 10.0,
    batch_prefix: str = "hot",
    manifest: str | None = None,
    archive: str | None = None,
    config: str | None = None,
    dry_run: bool = False,
) -> WatchResult:
    """One pass over ``hot_folder``: migrate the scans that stopped changing.

    Parameters
    ----------
    hot_folder : str
        Folder the digitizer writes into; read only.
    poll_s : float
        Seconds between the two listings (size and mtime must not change).
    batch_prefix : str
        Batch names are ``<prefix>-<UTC yyyymmdd-hhmmss>``.
    dry_run : bool
        Take and link the stable scans but do not run ``migrate-batch`` (tests).

    Raises
    ------
    SourceError
        When the hot folder does not exist.
    """
    log = get_run_logger()
    hot = Path(hot_folder).resolve()
    if not hot.is_dir():
        raise SourceError(f"hot folder not found or not a folder: {hot}")
    settings = load_settings(config, archive={"url": archive} if archive else None)
    watch_dir = Path(settings.run.work_dir).resolve() / "watch"
    watch_dir.mkdir(parents=True, exist_ok=True)
    store = TakenStore(watch_dir / "taken.json")

    first = snapshot(hot, settings.scan.extensions)
    time.sleep(poll_s)
    second = snapshot(hot, settings.scan.extensions)
    writing = open_for_writing(second)
    ready = stable_files(first, second, writing, store.states())
    waiting = len([p for p in second if p not in ready and store.states().get(p) != second[p]])
    log.info("hot folder: %d scans, %d stable and new, %d still arriving", len(second), len(ready), waiting)
    if not ready:
        return WatchResult(batch_name="", taken=0, waiting=waiting, migrated={})

    from flows.artifacts import slug

    batch = f"{slug(batch_prefix)}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    dest = watch_dir / batch
    n = link_batch(hot, ready, dest)
    store.add({p: second[p] for p in ready}, batch)
    log.info("batch %s: %d scans taken", batch, n)
    if dry_run:
        return WatchResult(batch_name=batch, taken=n, waiting=waiting, migrated={}, batch_dir=str(dest))

    from flows.migrate import migrate_batch

    summary = migrate_batch(source_dir=str(dest), batch_name=batch, manifest=manifest, archive=archive, config=config)
    return WatchResult(batch_name=batch, taken=n, waiting=waiting, migrated=dict(summary.counts), batch_dir=str(dest))
