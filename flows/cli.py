"""``filmflow server`` and ``filmflow deploy``: the project manager's dashboard (issue 7).

``filmflow server`` runs ``prefect server start`` on 127.0.0.1 (UI and API) with
analytics off and, when asked, its own PREFECT_HOME (database, logs).
``filmflow deploy`` serves the deployments ``migrate-batch/NAME``,
``release-approved/NAME`` and ``watch-folder/NAME`` from this process, against
the server named by PREFECT_API_URL.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from filmflow.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("server", help="start a local Prefect server with its UI on 127.0.0.1")
    s.add_argument("--port", type=int, default=4200, help="port of the API and UI (default 4200)")
    s.add_argument("--prefect-home", help="Prefect's home folder (database, logs); default: Prefect's own (~/.prefect)")
    s.set_defaults(func=cmd_server)

    d = sub.add_parser("deploy", help="serve the migrate-batch, release-approved and watch-folder deployments")
    d.add_argument("--name", default="filmflow", help="deployment name (default filmflow): run 'migrate-batch/NAME'")
    d.add_argument("--config", help="filmflow TOML configuration passed to every run")
    d.add_argument("--archive", help="archive URL passed to every run")
    d.add_argument("--watch", metavar="HOT_FOLDER", help="schedule watch-folder on this hot folder")
    d.add_argument("--interval", type=float, default=60.0, help="seconds between watch-folder runs (default 60)")
    d.add_argument("--poll", type=float, default=10.0, help="seconds between the two listings of a watch pass (default 10)")
    d.add_argument("--manifest", help="manifest CSV for watch-folder batches")
    d.set_defaults(func=cmd_deploy)


def server_command(port: int) -> list[str]:
    return [str(Path(sys.executable).with_name("prefect")), "server", "start", "--host", "127.0.0.1",
            "--port", str(port), "--analytics-off"]


def server_env(port: int, prefect_home: str | None) -> dict[str, str]:
    """Environment of the server process: loopback, no analytics, the UI calling the right port."""
    env = dict(os.environ)
    api = f"http://127.0.0.1:{port}/api"
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", PREFECT_SERVER_API_HOST="127.0.0.1",
               PREFECT_SERVER_API_PORT=str(port), PREFECT_UI_API_URL=api)
    env.pop("PREFECT_API_URL", None)  # the server itself must not point at another server
    if prefect_home:
        home = Path(prefect_home).resolve()
        home.mkdir(parents=True, exist_ok=True)
        env["PREFECT_HOME"] = str(home)
    return env


def cmd_server(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be 1..65535, not {args.port}")
    api = f"http://127.0.0.1:{args.port}/api"
    print(f"filmflow: Prefect UI at http://127.0.0.1:{args.port}  (Ctrl-C stops it)")
    print(f"filmflow: in other shells:  export PREFECT_API_URL={api}")
    proc = subprocess.Popen(server_command(args.port), env=server_env(args.port, args.prefect_home))
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=30)
        return 0


def load_release_flow():
    """The ``release-approved`` flow, or None when flows/release.py is not there (yet)."""
    try:
        from flows import release
    except ModuleNotFoundError as exc:
        if exc.name in ("flows.release",):
            return None
        raise
    from prefect import Flow

    for value in vars(release).values():
        if isinstance(value, Flow) and value.name == "release-approved":
            return value
    return None


def build_deployments(args: argparse.Namespace) -> list:
    """The RunnerDeployments ``filmflow deploy`` serves (no server contact)."""
    from prefect.task_runners import ThreadPoolTaskRunner

    from filmflow.config import load_settings
    from flows.artifacts import slug
    from flows.migrate import migrate_batch
    from flows.watch import watch_folder

    settings = load_settings(args.config, archive={"url": args.archive} if args.archive else None)
    tags = [f"site:{slug(settings.run.site)}", f"digitizer:{slug(settings.run.digitizer)}"]
    common = {"config": args.config, "archive": args.archive}
    common = {k: v for k, v in common.items() if v}
    runner = ThreadPoolTaskRunner(max_workers=settings.run.workers)
    deps = [migrate_batch.with_options(task_runner=runner).to_deployment(
        name=args.name, tags=tags, parameters=common,
        description="Migrate a folder of scans: prefect deployment run 'migrate-batch/NAME' "
                    "-p source_dir=/path -p batch_name=ward-3-1998")]
    release = load_release_flow()
    if release is None:
        print("filmflow: release-approved not served: flows/release.py has no 'release-approved' flow yet", file=sys.stderr)
    else:
        deps.append(release.to_deployment(name=args.name, tags=tags, parameters=common))
    watch_params = dict(common, poll_s=args.poll)
    if args.manifest:
        watch_params["manifest"] = args.manifest
    if args.watch:
        hot = Path(args.watch).resolve()
        if not hot.is_dir():
            raise ConfigError(f"--watch: hot folder not found: {hot}")
        watch_params["hot_folder"] = str(hot)
        deps.append(watch_folder.to_deployment(name=args.name, tags=tags, parameters=watch_params,
                                               interval=args.interval))
    else:
        deps.append(watch_folder.to_deployment(name=args.name, tags=tags, parameters=watch_params))
    return deps


def cmd_deploy(args: argparse.Namespace) -> int:
    from prefect import serve
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise ConfigError("PREFECT_API_URL is not set: start `filmflow server` and export "
                          "PREFECT_API_URL=http://127.0.0.1:4200/api first")
    deps = build_deployments(args)
    print("filmflow: serving " + ", ".join(f"{d.flow_name}/{d.name}" for d in deps) + " (Ctrl-C stops)")
    serve(*deps)
    return 0
