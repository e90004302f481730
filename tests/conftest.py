"""Shared pytest set-up.

Fixture modules live beside the tests as ``fixtures_<area>.py`` and are loaded
here automatically, so each area (orthanc, samples, prefect, ...) keeps its own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
SAMPLE_SCANS = ROOT / "sample_scans"

sys.path.insert(0, str(TESTS))
os.environ.setdefault("OMP_THREAD_LIMIT", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

pytest_plugins = sorted(p.stem for p in TESTS.glob("fixtures_*.py"))
