"""Finding the scans of a batch in its source folder."""

from __future__ import annotations

import errno
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from filmflow.errors import SourceError


@dataclass(frozen=True)
class SourceFile:
    """One candidate scan: its resolved path, its name relative to the source folder, and its SHA-256.

    ``sha256`` is empty and ``error`` set when the file cannot be read.
    """

    path: Path
    relative: str
    sha256: str
    error: str = ""


def discover_scans(source_dir: Path, extensions: tuple[str, ...]) -> list[SourceFile]:
    """List the scans under ``source_dir`` (recursively), sorted by relative path.

    Symbolic links to directories are not followed (no loops); hidden files and
    folders are skipped; matching is by file extension, case-insensitively.

    Raises
    ------
    SourceError
        When ``source_dir`` is not a readable folder.
    """
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise SourceError(f"source folder not found or not a folder: {source_dir}")
    if not os.access(source_dir, os.R_OK | os.X_OK):
        raise SourceError(f"source folder is not readable: {source_dir}")
    exts = tuple(e.lower() for e in extensions)
    found: list[SourceFile] = []
    for dirpath, dirnames, filenames in os.walk(source_dir, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or not name.lower().endswith(exts):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(source_dir).as_posix()
            if path.is_symlink() and not path.exists():
                why = "symbolic link loop" if _is_link_loop(path) else "broken symbolic link (its target is missing)"
                found.append(SourceFile(path, rel, "", f"unreadable_scan: {why}; point it at the scan or remove it"))
                continue
            if not path.is_file():
                # a FIFO, socket or device named like a scan: opening it could block forever
                found.append(SourceFile(path.absolute(), rel, "", "unreadable_scan: not a regular file (FIFO, socket or device)"))
                continue
            try:
                found.append(SourceFile(path.resolve(), rel, sha256_file(path)))
            except PermissionError:
                found.append(SourceFile(path.absolute(), rel, "", "unreadable_scan: permission denied; give the migration user read access"))
            except OSError as exc:
                found.append(SourceFile(path.absolute(), rel, "", f"unreadable_scan: cannot read the file ({exc.strerror or type(exc).__name__})"))
    return found


def _is_link_loop(path: Path) -> bool:
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
