"""A real, throw-away PostgreSQL for the ledger tests (issue 8).

``postgres_url`` (session scope) runs Debian's ``initdb`` and ``pg_ctl`` from
``/usr/lib/postgresql/<version>/bin`` on a fresh data folder under ``/tmp``,
listening on a Unix socket in that folder only (``listen_addresses=''``: no TCP),
and yields a SQLAlchemy URL ``postgresql+psycopg://postgres@/filmflow?host=<dir>``.
PostgreSQL refuses to run as root: when the tests run as root the server runs
as the ``postgres`` system user via ``runuser -u postgres --`` (the folder is
chowned to it). Skipped only when the binaries, ``psycopg`` or a way to run as
a non-root user are missing. ``postgres_ledger_url`` (function scope) gives
each test its own empty database.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest


def _pg_bin() -> Path | None:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return versions[-1].parent if versions else None


def _runner() -> list[str] | None:
    """Command prefix that runs a program as a non-root user (or [] when not root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return None
    runuser = shutil.which("runuser")
    return [runuser, "-u", "postgres", "--"] if runuser else None


@pytest.fixture(scope="session")
def postgres_url():
    pytest.importorskip("psycopg")
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    prefix = _runner()
    if prefix is None:
        pytest.skip("running as root without a 'postgres' user/runuser: PostgreSQL refuses to run as root")
    base = Path(tempfile.mkdtemp(prefix="filmflow-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if prefix:
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        os.chown(sock, pw.pw_uid, pw.pw_gid)
        os.chmod(base, 0o755)
    run = lambda *cmd: subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=120)  # noqa: E731
    res = run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    if res.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"initdb failed: {res.stderr[-2000:]}")
    opts = f"-c listen_addresses='' -c unix_socket_directories={sock} -c fsync=off -c max_connections=50"
    res = run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "postgres.log"), "-o", opts, "-w", "-t", "60", "start")
    if res.returncode != 0:
        log = (base / "postgres.log").read_text(errors="replace") if (base / "postgres.log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"pg_ctl start failed: {res.stderr[-1000:]}\n{log[-2000:]}")
    try:
        res = run(str(bindir / "createdb"), "-h", str(sock), "-U", "postgres", "filmflow")
        assert res.returncode == 0, res.stderr
        yield {"url": f"postgresql+psycopg://postgres@/filmflow?host={sock}", "sock": sock, "bindir": bindir,
               "run": run}
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_ledger_url(postgres_url):
    """A SQLAlchemy URL of a fresh, empty database on the session's PostgreSQL."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    res = postgres_url["run"](str(postgres_url["bindir"] / "createdb"), "-h", str(postgres_url["sock"]), "-U", "postgres", name)
    assert res.returncode == 0, res.stderr
    return f"postgresql+psycopg://postgres@/{name}?host={postgres_url['sock']}"
