"""The typed result every QC check returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: Severity order: ``fail`` quarantines the film, ``review`` holds it for a reviewer, ``info`` only reports.
SEVERITIES = ("info", "review", "fail")


@dataclass(frozen=True)
class QCResult:
    """One QC finding.

    Attributes
    ----------
    code : str
        Short stable code (``blank``, ``low_contrast``, ``manifest_disagree``, ...), used in the
        report's ``qc_flags`` column and the dashboard's counts.
    severity : str
        ``fail``, ``review`` or ``info``.
    measured : float or str or None
        The measured value (no patient data).
    threshold : float or str or None
        The configured threshold it was compared with.
    reason : str
        Human-readable reason, shown in the report and on the review page.
    """

    code: str
    severity: str
    measured: Any = None
    threshold: Any = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown QC severity {self.severity!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def worst(results: list[QCResult]) -> str:
    """The highest severity among ``results`` (``pass`` when there are none above info)."""
    levels = [SEVERITIES.index(r.severity) for r in results]
    top = max(levels, default=0)
    return "pass" if top == 0 else SEVERITIES[top]
