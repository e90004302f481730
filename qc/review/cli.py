"""``filmflow review serve|add-user`` and ``filmflow release`` (registered by :mod:`filmflow.cli`).

Library errors are raised as :class:`filmflow.errors.FilmflowError`; the
top-level CLI turns them into exit codes.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from filmflow.cli import flow_result
from filmflow.errors import ConfigError


def _settings(args: argparse.Namespace, archive: str | None = None):
    from filmflow.config import load_settings

    overrides: dict = {}
    if getattr(args, "work_dir", None):
        overrides["run"] = {"work_dir": args.work_dir}
    if archive:
        overrides["archive"] = {"url": archive}
    return load_settings(args.config, **overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from qc.review.app import create_app

    settings = _settings(args)
    secure = args.secure_cookies or os.environ.get("FILMFLOW_REVIEW_SECURE_COOKIES", "").lower() in ("1", "true", "yes")
    app = create_app(settings, secure_cookies=secure)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not secure:
        print("filmflow: warning: serving beyond loopback without --secure-cookies; put it behind HTTPS", file=sys.stderr)
    print(f"filmflow review: http://{args.host}:{args.port}/  (Ctrl-C to stop)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", proxy_headers=False, server_header=False)
    return 0


def cmd_add_user(args: argparse.Namespace) -> int:
    from filmflow.ledger import Ledger, default_ledger_url
    from pathlib import Path

    from qc.review.store import UserStore

    settings = _settings(args)
    password = os.environ.get("FILMFLOW_REVIEW_PASSWORD", "")
    if not password:
        if not sys.stdin.isatty():
            raise ConfigError("no password: set FILMFLOW_REVIEW_PASSWORD or run in a terminal")
        password = getpass.getpass(f"password for {args.name}: ")
        if password != getpass.getpass("again: "):
            raise ConfigError("the passwords differ")
    work_dir = Path(settings.run.work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(settings.run.ledger_url or default_ledger_url(work_dir))
    try:
        UserStore(ledger).add(args.name, password, args.role)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    finally:
        ledger.close()
    print(f"user {args.name} ({args.role}) saved")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    from flows.release import release_approved

    _settings(args, args.archive)  # validate options before starting Prefect
    state = release_approved(config=args.config, archive=args.archive, work_dir=args.work_dir, return_state=True)
    s = flow_result(state, "release")
    print(f"release: {len(s.archived)} archived, {len(s.pending)} pending (archive unavailable), "
          f"{len(s.blocked)} blocked by QC, {len(s.failed)} failed")
    for tag, why in {**s.blocked, **s.failed}.items():
        print(f"  film {tag}: {why}")
    return 0 if not s.failed else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``review`` and ``release`` to the ``filmflow`` command."""
    r = subparsers.add_parser("review", help="the QC review web app")
    rs = r.add_subparsers(dest="review_command", required=True)

    s = rs.add_parser("serve", help="serve the review app (uvicorn)")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    s.add_argument("--config", help="filmflow TOML configuration file")
    s.add_argument("--work-dir", help="work folder holding the ledger (default .filmflow)")
    s.add_argument("--secure-cookies", action="store_true", help="send cookies with the Secure flag (behind HTTPS)")
    s.set_defaults(func=cmd_serve)

    u = rs.add_parser("add-user", help="create a review user or change its password/role",
                      description="The password is asked for in the terminal, or read from the environment "
                      "variable FILMFLOW_REVIEW_PASSWORD (for scripts); at least 8 characters.")
    u.add_argument("name")
    u.add_argument("--role", choices=("reviewer", "viewer"), required=True)
    u.add_argument("--config", help="filmflow TOML configuration file")
    u.add_argument("--work-dir", help="work folder holding the ledger (default .filmflow)")
    u.set_defaults(func=cmd_add_user)

    rel = subparsers.add_parser("release", help="push approved films to the archive (Prefect flow release-approved)")
    rel.add_argument("--config", help="filmflow TOML configuration file")
    rel.add_argument("--work-dir", help="work folder holding the ledger (default .filmflow)")
    rel.add_argument("--archive", help="archive URL (default: the archive each film's batch was migrated into)")
    rel.set_defaults(func=cmd_release)
