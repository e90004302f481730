"""The project manager's view of a batch: Prefect artifacts that carry no patient data.

``migrate-batch`` creates one :class:`BatchDashboard` per run. It publishes,
under stable lowercase-dash keys so the Prefect UI shows each batch's history:

``migrate-<batch>-progress``
    progress artifact, created at start (0 %) and updated as each film finishes.
``migrate-<batch>-summary``
    table artifact at the end: counts per status and per QC code, throughput
    (films/hour), median and p95 seconds per step (from each film's
    ``record['timings']``, plus ``push_verify``), the report path.
``migrate-<batch>-review``
    markdown artifact at the end: what needs review (counts per QC code, the
    film tags of held and failed films, error codes).

It also renames the flow run to ``migrate-<batch>-<site>-<digitizer>`` and adds
the tags ``batch:<batch>``, ``site:<site>``, ``digitizer:<digitizer>``.

What goes in: batch name, site and digitizer names (configuration), ledger
states, QC codes and error codes (identifiers from filmflow's own vocabulary,
filtered to ``[A-Za-z0-9_]``), film tags (:func:`flows.film.film_tag`, a hash of
the source path), timings and the report path. What never goes in: any value
read from a label, a manifest or a DICOM header, and source file names (sites
name scans after patients).

A dashboard failure never fails the batch: the ledger and the report are the
source of truth; the failure is logged as a warning with its exception type.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

#: Per-film steps timed by :func:`flows.film.process_film`, in pipeline order; then the push.
STEPS = ("load", "geometry", "denoise", "ocr", "dicom", "validate")
PUSH_STEP = "push_verify"

_CODE = re.compile(r"[^A-Za-z0-9_]+")


def slug(text: str) -> str:
    """Lowercase-dash form of ``text`` (artifact keys and tags accept ``[a-z0-9-]`` only)."""
    s = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    return s or "batch"


def artifact_key(batch_name: str, kind: str) -> str:
    """Stable artifact key of one batch, e.g. ``migrate-ward-3-1998-summary``."""
    return f"migrate-{slug(batch_name)}-{slug(kind)}"


def run_labels(batch_name: str, site: str, digitizer: str) -> tuple[str, list[str]]:
    """Flow-run name and tags of a batch (configuration values only)."""
    name = f"migrate-{slug(batch_name)}-{slug(site)}-{slug(digitizer)}"
    tags = [f"batch:{slug(batch_name)}", f"site:{slug(site)}", f"digitizer:{slug(digitizer)}"]
    return name, tags


def safe_code(text: str) -> str:
    """A QC or error code reduced to its identifier characters (never free text)."""
    return _CODE.sub("", str(text).split(":", 1)[0].strip())[:64]


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100) of a non-empty sequence."""
    xs = sorted(values)
    if not xs:
        raise ValueError("percentile of an empty sequence")
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def step_stats(timings: Iterable[Mapping[str, float]], push_seconds: Sequence[float] = ()) -> dict[str, dict[str, float]]:
    """Median and p95 seconds per step over the films that ran it.

    Returns ``{step: {"n": films, "median": s, "p95": s}}`` for the steps in
    :data:`STEPS` (then any other step name found) and ``push_verify``.
    """
    per: dict[str, list[float]] = {}
    for t in timings:
        for step, sec in (t or {}).items():
            try:
                per.setdefault(str(step), []).append(float(sec))
            except (TypeError, ValueError):
                continue  # not a timing; nothing to aggregate
    if push_seconds:
        per[PUSH_STEP] = [float(s) for s in push_seconds]
    order = [s for s in STEPS if s in per] + sorted(s for s in per if s not in STEPS and s != PUSH_STEP)
    if PUSH_STEP in per:
        order.append(PUSH_STEP)
    return {s: {"n": len(per[s]), "median": round(percentile(per[s], 50), 3), "p95": round(percentile(per[s], 95), 3)}
            for s in order}


@dataclass
class FilmLine:
    """What the dashboard knows of one film: no patient data."""

    tag: str
    status: str
    qc_codes: list[str] = field(default_factory=list)
    error_code: str = ""


def film_lines(films: Sequence[Mapping[str, str]], tags: Mapping[str, str]) -> list[FilmLine]:
    """Dashboard lines from ``BatchSummary.films`` (``tags``: source_file -> film tag)."""
    out = []
    for f in films:
        codes = [safe_code(c) for c in (f.get("qc_flags") or "").split(";") if c.strip()]
        out.append(FilmLine(tag=tags.get(f.get("source_file", ""), "?"), status=safe_code(f.get("status", "")),
                            qc_codes=[c for c in codes if c], error_code=safe_code(f.get("error", ""))))
    return out


def summary_rows(
    *,
    counts: Mapping[str, int],
    qc_counts: Mapping[str, int],
    films_done: int,
    seconds: float,
    stats: Mapping[str, Mapping[str, float]],
    report_path: str,
) -> list[dict[str, Any]]:
    """Rows of the summary table: ``section``, ``item``, ``value``."""
    rows: list[dict[str, Any]] = []
    total = sum(counts.values())
    rows.append({"section": "films", "item": "total", "value": total})
    for k in sorted(counts):
        rows.append({"section": "status", "item": safe_code(k), "value": counts[k]})
    for k in sorted(qc_counts):
        rows.append({"section": "qc", "item": safe_code(k), "value": qc_counts[k]})
    rows.append({"section": "throughput", "item": "films processed this run", "value": films_done})
    rows.append({"section": "throughput", "item": "wall seconds", "value": round(seconds, 1)})
    rate = films_done / seconds * 3600 if seconds > 0 and films_done else 0.0
    rows.append({"section": "throughput", "item": "films/hour", "value": round(rate, 1)})
    for step, s in stats.items():
        rows.append({"section": "seconds", "item": f"{step} median (n={int(s['n'])})", "value": s["median"]})
        rows.append({"section": "seconds", "item": f"{step} p95 (n={int(s['n'])})", "value": s["p95"]})
    rows.append({"section": "report", "item": "path", "value": str(report_path)})
    return rows


def review_markdown(
    *,
    batch_name: str,
    site: str,
    digitizer: str,
    counts: Mapping[str, int],
    qc_counts: Mapping[str, int],
    lines: Sequence[FilmLine],
    report_path: str,
) -> str:
    """Markdown: what needs review in this batch (codes and film tags only)."""
    held = [ln for ln in lines if ln.status in ("flagged", "pending")]
    failed = [ln for ln in lines if ln.status == "failed"]
    out = [
        f"# Batch `{slug(batch_name)}`: what needs review",
        "",
        f"Site `{slug(site)}`, digitizer `{slug(digitizer)}`. "
        + ", ".join(f"{safe_code(k)}: **{v}**" for k, v in sorted(counts.items())),
        "",
    ]
    if not held and not failed:
        out += ["Nothing needs review: every film was archived (or was already).", ""]
    if qc_counts:
        out += ["## QC codes", "", "| QC code | films |", "|---|---:|"]
        out += [f"| `{safe_code(k)}` | {v} |" for k, v in sorted(qc_counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        out.append("")
    if held:
        out += [f"## Held for review ({len(held)})", "", "| film tag | status | QC codes |", "|---|---|---|"]
        out += [f"| `{ln.tag}` | {ln.status} | {', '.join(f'`{c}`' for c in ln.qc_codes) or '-'} |" for ln in held]
        out.append("")
    if failed:
        out += [f"## Failed ({len(failed)})", "", "| film tag | error code | QC codes |", "|---|---|---|"]
        out += [f"| `{ln.tag}` | `{ln.error_code or '-'}` | {', '.join(f'`{c}`' for c in ln.qc_codes) or '-'} |"
                for ln in failed]
        out.append("")
    out += [
        "Open the review page (`filmflow review`) to resolve held films. The per-film report",
        f"`{report_path}` holds patient data: open it on the site's workstation only.",
        "Film tags are the first 10 hex digits of SHA-1 of the source path; the report's rows match by path.",
    ]
    return "\n".join(out)


class BatchDashboard:
    """Artifacts, run name and tags of one ``migrate-batch`` run.

    Parameters
    ----------
    batch_name, site, digitizer : str
        Configuration values (``settings.run``); never patient data.
    total : int
        Films this run will process (for the progress artifact).
    """

    def __init__(self, batch_name: str, site: str, digitizer: str, total: int) -> None:
        self.batch_name, self.site, self.digitizer = batch_name, site, digitizer
        self.total = max(int(total), 0)
        self.done = 0
        self.timings: list[dict[str, float]] = []
        self.push_seconds: list[float] = []
        self.progress_id: UUID | None = None
        self.t0 = time.perf_counter()
        self._label_run()
        self.progress_id = self._guard("progress", lambda: create_progress_artifact(
            0.0 if self.total else 100.0, key=artifact_key(batch_name, "progress"),
            description=f"films processed: 0 of {self.total}"))

    @classmethod
    def from_settings(cls, batch_name: str, settings: Any, total: int) -> "BatchDashboard":
        return cls(batch_name, settings.run.site, settings.run.digitizer, total)

    # -- during the run --------------------------------------------------------------------------
    def film_done(self, state: str, record: Mapping[str, Any]) -> None:
        """One film finished processing (any outcome): collect its timings, update the progress."""
        self.done += 1
        t = record.get("timings") if isinstance(record, Mapping) else None
        if isinstance(t, Mapping):
            self.timings.append(dict(t))
        if self.progress_id is not None:
            pct = 100.0 * self.done / self.total if self.total else 100.0
            self._guard("progress", lambda: update_progress_artifact(
                self.progress_id, min(pct, 100.0), description=f"films processed: {self.done} of {self.total}"))

    def timed_push(self, push: Callable[[str], str]) -> Callable[[str], str]:
        """Wrap :meth:`flows.push.Pusher.push`; the seconds of each confirmed push (store + verify) are kept."""

        def _push(key: str) -> str:
            t = time.perf_counter()
            state = push(key)
            if state == "archived":
                self.push_seconds.append(round(time.perf_counter() - t, 4))
            return state

        return _push

    # -- at the end ------------------------------------------------------------------------------
    def finish(self, summary: Any, sources: Iterable[Any] = ()) -> None:
        """Publish the summary table and the review markdown of ``summary`` (a ``BatchSummary``).

        ``sources`` are the batch's :class:`~filmflow.discover.SourceFile` s, to name films by tag.
        """
        from flows.film import film_tag

        seconds = float(getattr(summary, "seconds", 0.0) or (time.perf_counter() - self.t0))
        tags = {s.relative: film_tag(s.path) for s in sources}
        lines = film_lines(summary.films, tags)
        stats = step_stats(self.timings, self.push_seconds)
        rows = summary_rows(counts=summary.counts, qc_counts=summary.qc_counts, films_done=self.done,
                            seconds=seconds, stats=stats, report_path=summary.report_path)
        if self.progress_id is not None:
            self._guard("progress", lambda: update_progress_artifact(
                self.progress_id, 100.0, description=f"done: {self.done} films processed, {len(lines)} in the batch"))
        self._guard("summary", lambda: create_table_artifact(
            rows, key=artifact_key(self.batch_name, "summary"),
            description=f"Batch {slug(self.batch_name)}: counts, QC codes, throughput, seconds per step"))
        md = review_markdown(batch_name=self.batch_name, site=self.site, digitizer=self.digitizer,
                             counts=summary.counts, qc_counts=summary.qc_counts, lines=lines,
                             report_path=summary.report_path)
        self._guard("review", lambda: create_markdown_artifact(
            md, key=artifact_key(self.batch_name, "review"),
            description=f"Batch {slug(self.batch_name)}: what needs review"))

    # -- helpers ---------------------------------------------------------------------------------
    def _label_run(self) -> None:
        from prefect.runtime import flow_run

        run_id = flow_run.get_id()
        if not run_id:
            return
        name, tags = run_labels(self.batch_name, self.site, self.digitizer)

        def _update() -> None:
            from prefect.client.orchestration import get_client

            with get_client(sync_client=True) as client:
                current = client.read_flow_run(UUID(str(run_id)))
                merged = list(dict.fromkeys([*(current.tags or []), *tags]))
                client.update_flow_run(UUID(str(run_id)), name=name, tags=merged)

        self._guard("run name", _update)

    def _guard(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:  # the dashboard must not fail a batch; say so and go on
            get_run_logger().warning("dashboard %s not updated: %s", what, type(exc).__name__)
            return None

