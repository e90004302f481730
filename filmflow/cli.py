"""The ``filmflow`` command line.

Only this module turns exceptions into exit codes: 0 when the batch ran (every
film archived, held or quarantined, or left pending when the archive went away
or did not confirm it: the summary says so, and the same command pushes it),
non-zero when the batch itself could not run (bad arguments, unreadable source
folder, unusable manifest, archive unreachable).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path

from filmflow.errors import ConfigError, FilmflowError

_QUIET_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "OMP_THREAD_LIMIT": "1",
    "PREFECT_LOGGING_LOG_PRINTS": "false",
    # the embedded server can take longer than Prefect's default 20 s to start on a busy machine
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


def _prepare_env() -> None:
    for k, v in _QUIET_ENV.items():
        os.environ.setdefault(k, v)
    # pynetdicom logs its own connection errors; filmflow's error message says what to do
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)


def default_batch_name(source_dir: Path) -> str:
    """A stable batch name from the source folder's name (lowercase, dashes)."""
    name = re.sub(r"[^a-z0-9]+", "-", Path(source_dir).resolve().name.lower()).strip("-")
    return name or "batch"


def cmd_migrate(args: argparse.Namespace) -> int:
    from prefect.task_runners import ThreadPoolTaskRunner

    from filmflow.batch import check_batch_inputs
    from filmflow.config import load_settings
    from flows.migrate import migrate_batch

    run: dict[str, object] = {}
    if args.workers is not None:
        run["workers"] = args.workers
    if args.work_dir:
        run["work_dir"] = args.work_dir
    source = Path(args.source_dir)
    settings = load_settings(args.config, run=run)
    batch = args.batch_name or settings.run.batch_name or default_batch_name(source)
    # every batch-level problem is reported here, before Prefect starts, in one line
    settings = check_batch_inputs(source, batch, manifest=args.manifest, archive=args.archive, report=args.report,
                                  config=args.config, run=run).settings
    if args.work_dir:
        os.environ["FILMFLOW_RUN__WORK_DIR"] = str(args.work_dir)
    if args.workers is not None:
        os.environ["FILMFLOW_RUN__WORKERS"] = str(args.workers)
    if settings.run.dask_address:
        # films run on the Dask cluster's workers; the ledger stays written from this process's flow thread
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise ConfigError("run.dask_address is set but prefect-dask is not installed: pip install 'filmflow[dask]'") from None
        runner = DaskTaskRunner(address=settings.run.dask_address)
    else:
        runner = ThreadPoolTaskRunner(max_workers=settings.run.workers)
    flow_fn = migrate_batch.with_options(task_runner=runner)
    state = flow_fn(source_dir=str(source), batch_name=batch, manifest=args.manifest, archive=args.archive,
                    report=args.report, config=args.config, return_state=True)
    summary = flow_result(state, "batch")
    _print_summary(summary)
    return 0


def flow_result(state: object, what: str) -> object:
    """The result of a finished flow run's ``state``; a failed run raises its FilmflowError as is,
    any other exception wrapped in one that names ``what`` failed."""
    if state.is_failed():  # type: ignore[attr-defined]
        try:
            state.result()  # type: ignore[attr-defined]
        except FilmflowError:
            raise
        except Exception as exc:
            raise FilmflowError(f"the {what} failed: {type(exc).__name__}: {exc}") from exc
    return state.result()  # type: ignore[attr-defined]


def _print_summary(summary: object) -> None:
    films = getattr(summary, "films")
    width = max((len(f["source_file"]) for f in films), default=10)
    print(f"\nbatch {summary.batch_name}: {len(films)} scans in {summary.seconds:.1f} s")  # type: ignore[attr-defined]
    for f in films:
        why = f["qc_flags"] or f["error"]
        print(f"  {f['source_file']:<{width}}  {f['status']:<8}  {why}")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary.counts.items()))  # type: ignore[attr-defined]
    print(f"\n{counts}")
    pending = summary.counts.get("pending", 0)  # type: ignore[attr-defined]
    if pending:
        print(f"{pending} film(s) pending (not yet confirmed by the archive): run the same command again to push them")
    print(f"report:  {summary.report_path}")  # type: ignore[attr-defined]
    print(f"archive: {summary.archive_url}")  # type: ignore[attr-defined]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="filmflow", description="Migrate X-ray film scans into a DICOM archive.")
    sub = parser.add_subparsers(dest="command", required=True)

    m = sub.add_parser("migrate", help="migrate a folder of scans (Prefect flow migrate-batch)")
    m.add_argument("source_dir", help="folder of scans (searched recursively)")
    m.add_argument("--manifest", help="manifest CSV (RIS export / job sheet)")
    m.add_argument("--archive", help="archive: folder path, file://, dicom://AET@host:port or http(s)://.../dicom-web "
                   "(default: archive.url of the configuration, 'archive' = ./archive)")
    m.add_argument("--report", help="per-film CSV report file (default: WORK_DIR/reports/BATCH.csv)")
    m.add_argument("--config", help="filmflow TOML configuration file")
    m.add_argument("--batch-name", help="batch name (default: the source folder's name)")
    m.add_argument("--work-dir", help="work folder of the ledger, staged DICOM and reports (default .filmflow); "
                   "use the same one to resume, review and release")
    m.add_argument("--workers", type=int, help="films processed in parallel (default: CPU count)")
    m.set_defaults(func=cmd_migrate)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands() -> list:
    """Sub-command groups that live in their own modules (review, server, deploy)."""
    out = []
    for mod_name in ("qc.review.cli", "flows.cli"):
        try:
            mod = __import__(mod_name, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name and mod_name.startswith(exc.name):
                continue
            raise
        out.append(mod.register)
    return out


def main(argv: list[str] | None = None) -> int:
    _prepare_env()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FilmflowError as exc:
        print(f"filmflow: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("filmflow: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
