"""Wrapper around dicom3tools' ``dciodvfy``, the IOD conformance checker.

``dciodvfy <file>`` prints the IOD it recognised and one line per finding,
``Error - ...`` or ``Warning - ...``, on stderr (its stdout carries nothing of
note). Everything else it prints (the IOD name, continuation text) is kept at
debug level only.

References
----------
.. [1] David Clunie, dicom3tools, https://www.dclunie.com/dicom3tools.html
.. [2] DICOM PS3.3 (the IODs and modules dciodvfy checks against).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from filmflow.errors import FilmflowError, ToolMissingError

log = logging.getLogger(__name__)

#: Program name, looked up on PATH.
DCIODVFY = "dciodvfy"

#: Largest file handed to dciodvfy (bytes): a scanned film is far smaller.
MAX_FILE_BYTES = 2 * 1024**3


class DciodvfyError(FilmflowError):
    """dciodvfy ran but could not check the file (timeout, crash, file too large)."""

    code = "dciodvfy_failed"
    exit_code = 3


@dataclass(frozen=True)
class Finding:
    """One dciodvfy finding.

    Attributes
    ----------
    level : {'error', 'warning'}
        ``error`` for an IOD violation, ``warning`` for advice.
    message : str
        The text after ``Error - `` / ``Warning - ``.
    """

    level: Literal["error", "warning"]
    message: str


def _executable() -> str:
    exe = shutil.which(DCIODVFY)
    if exe is None:
        raise ToolMissingError(
            "dciodvfy (dicom3tools) is not installed or not on PATH; install the dicom3tools "
            "package (Debian/Ubuntu: apt-get install dicom3tools) or disable qc.run_dciodvfy"
        )
    return exe


def parse_findings(text: str) -> list[Finding]:
    """Parse dciodvfy output into findings.

    Parameters
    ----------
    text : str
        dciodvfy's combined stdout and stderr.

    Returns
    -------
    list of Finding
        In output order; lines that are neither ``Error - `` nor
        ``Warning - `` (the IOD name, blank lines) are skipped.
    """
    findings: list[Finding] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Error - "):
            findings.append(Finding("error", line[len("Error - "):].strip()))
        elif line.startswith("Warning - "):
            findings.append(Finding("warning", line[len("Warning - "):].strip()))
    return findings


def run_dciodvfy(path: str | os.PathLike[str], *, timeout_s: float = 60) -> list[Finding]:
    """Check a DICOM file against its IOD with dciodvfy.

    Parameters
    ----------
    path : path-like
        A DICOM PS3.10 file.
    timeout_s : float
        Seconds before dciodvfy is killed.

    Returns
    -------
    list of Finding
        Empty when dciodvfy found nothing to report.

    Raises
    ------
    ToolMissingError
        When dciodvfy is not installed.
    FileNotFoundError
        When ``path`` does not exist.
    DciodvfyError
        When the file is larger than :data:`MAX_FILE_BYTES`, dciodvfy times
        out, or it is killed by a signal.
    """
    exe = _executable()
    p = Path(path)
    size = p.stat().st_size  # FileNotFoundError when missing
    if size > MAX_FILE_BYTES:
        raise DciodvfyError(f"{p.name} is {size} bytes, above the {MAX_FILE_BYTES}-byte limit for dciodvfy")
    try:
        proc = subprocess.run(
            [exe, str(p)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DciodvfyError(f"dciodvfy did not finish within {timeout_s} s on {p.name}") from None
    if proc.returncode < 0:
        raise DciodvfyError(f"dciodvfy was killed by signal {-proc.returncode} on {p.name}")
    output = proc.stderr + proc.stdout
    log.debug("dciodvfy %s (exit %d):\n%s", p.name, proc.returncode, output)
    return parse_findings(output)


def dciodvfy_version() -> str:
    """The dicom3tools version string, e.g. ``1.00.snapshot.20220618093127``.

    Raises
    ------
    ToolMissingError
        When dciodvfy is not installed.
    DciodvfyError
        When the version cannot be read.
    """
    exe = _executable()
    try:
        proc = subprocess.run([exe, "-version"], capture_output=True, text=True, errors="replace", timeout=10, check=False)
    except subprocess.TimeoutExpired:
        raise DciodvfyError("dciodvfy -version did not answer within 10 s") from None
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.startswith("dicom3tools Version:"):
            return line.split(":", 1)[1].strip()
    raise DciodvfyError("dciodvfy -version printed no 'dicom3tools Version:' line")
