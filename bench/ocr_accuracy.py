"""Label OCR accuracy benchmark (issue 4): generated labels on real radiographs.

Films come from :mod:`bench/make_labels.py` (fixed seed): labels in the three
``filmflow.synth.FONTS`` kinds (DejaVu/Liberation Sans Mono Bold, Sans Bold,
Sans Mono), capital height 2-4 mm, contrast 0.35-0.82, blur, noise, quarter
turns and small tilts, light-on-dark patches, four corners, four date styles,
optional institution/sex/accession lines, pasted into crops of the real
radiographs in ``/work/shared/data/radiographs`` (CC BY 3.0) at 150, 200 and
300 DPI, plus a separate 100-DPI set.

For each film, :func:`pipeline.label.read_label` (the pipeline) and the plain
baseline (Tesseract on the whole film, default settings: ``--psm 3``, no
whitelist, same parser :func:`pipeline.label_fields.parse_label`) are run in
the same process, one film at a time, ``OMP_THREAD_LIMIT=1``. Reported:

* per-field and all-fields exact-match accuracy (fields present in the truth);
* ``wrong-pt``: films whose reconciliation with a manifest holding the true
  identity (plus every other generated identity as distractors) is ``agree``
  while the PatientID read is wrong or the header's PatientID is not the true
  one -- must be 0;
* ``flagged``: films sent to review by :func:`qc.checks.check_label` (with the
  fields the matched manifest row corroborates, as the flow does) +
  :func:`qc.checks.check_identity` with default thresholds (every film here is a
  good film whose true identity is in the manifest);
* time per label (median and 90th percentile, seconds): wall clock, and CPU
  time of this process plus its Tesseract runs (one core each; the CPU figure
  does not grow when other work shares the machine).

The pipeline rows are repeated per Tesseract engine (``--engine``: tesserocr,
the library loaded once per thread, and pytesseract, one ``tesseract`` program
run per call) on the same films in the same run. ``--errors`` lists every field
read wrong (truth, value read, confidence, font, DPI, contrast, cap height).

Usage::

    .venv/bin/python bench/ocr_accuracy.py [--quick] [--seed 4] [--no-baseline]
        [--engine both|tesserocr|pytesseract] [--errors] [--site-formats]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ["OMP_THREAD_LIMIT"] = "1"

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from make_labels import make_one  # noqa: E402

from filmflow.config import ManifestConfig, OCRConfig, QCConfig  # noqa: E402
from pipeline.label import read_label  # noqa: E402
from pipeline.label_fields import parse_label  # noqa: E402
from pipeline.manifest import reconcile  # noqa: E402
from pipeline.ocr import ocr_lines, tesseract_version  # noqa: E402
from pipeline.types import LabelReading, ManifestRow  # noqa: E402
from qc.checks import check_identity, check_label, corroborated_fields  # noqa: E402

FIELDS = ("PatientName", "PatientID", "PatientBirthDate", "StudyDate", "AccessionNumber", "PatientSex",
          "InstitutionName")
#: The generator's identifier formats (bench/make_labels.py), as a site would configure them.
SITE_FORMATS = {"PatientID": ["99999999"], "AccessionNumber": ["A9999999"]}
SHORT = {"PatientName": "name", "PatientID": "ID", "PatientBirthDate": "DOB", "StudyDate": "date",
         "AccessionNumber": "acc", "PatientSex": "sex", "InstitutionName": "inst"}


def pipeline_read(film: np.ndarray, dpi: float, config: OCRConfig) -> LabelReading:
    """The pipeline's label reader."""
    return read_label(film, dpi=dpi, config=config)


def baseline_read(film: np.ndarray, dpi: float, config: OCRConfig) -> LabelReading:
    """Tesseract on the whole film, default settings, same parser (``dpi`` unused)."""
    u8 = film if film.dtype == np.uint8 else (film >> 8).astype(np.uint8)
    lines = ocr_lines(u8, config=config, psm=3)
    return LabelReading(fields=parse_label(lines, config=config), lines=tuple(ln.text for ln in lines))


def generate(n: int, dpis: tuple[float, ...], seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    return [make_one(rng, dpis) for _ in range(n)]


def evaluate(films: list[tuple], rows: list[ManifestRow], reader, ocr: OCRConfig) -> list[dict]:
    mcfg, qcfg = ManifestConfig(), QCConfig()
    out = []
    for film, truth, p, _ in films:
        t0, c0 = time.perf_counter(), _cpu()
        r = reader(film, p.dpi, ocr)
        dt, cpu = time.perf_counter() - t0, _cpu() - c0
        rec = reconcile(r, rows, scan_file="", config=mcfg)
        flags = [q for q in (*check_label(r, config=qcfg, corroborated=corroborated_fields(r, rec)), *check_identity(rec))
                 if q.severity in ("review", "fail")]
        read_id = r.value("PatientID")
        wrong_pt = rec.status == "agree" and ((read_id and read_id != truth["PatientID"])
                                             or rec.header.get("PatientID") != truth["PatientID"])
        out.append({
            "ok": {kw: r.value(kw) == v for kw, v in truth.items()},
            "errors": [(kw, v, r.value(kw), r.fields[kw].confidence if kw in r.fields else None)
                       for kw, v in truth.items() if r.value(kw) != v],
            "params": p,
            "found": r.region is not None or bool(r.fields),
            "wrong_pt": bool(wrong_pt),
            "flagged": bool(flags),
            "id_wrong_unflagged": bool(read_id and read_id != truth["PatientID"] and not flags),
            "time": dt, "cpu": cpu, "font": p.font, "dpi": p.dpi,
            "kind": r.region.kind if r.region is not None else "",
        })
    return out


def kind_table(n: int, seed: int, res_printed: list[dict]) -> list[str]:
    """Label kinds (issue 4): ``n`` films of each kind from ``make_labels.make_kind`` (150-300
    DPI, seed ``seed``), located and classified (no OCR); and how the printed labels of the
    accuracy set ``res_printed`` were classified (false ``handwritten`` must stay ~0)."""
    from make_labels import KINDS, make_kind

    from pipeline.label import locate_label

    rng = np.random.default_rng(seed)
    out = ["| label kind | n | located % | -> printed % | -> adhesive % | -> handwritten % | CPU s/film locate+classify med |",
           "|---|---|---|---|---|---|---|"]
    for kind in KINDS:
        got, cpu = [], []
        for _ in range(n):
            film, _, p, _ = make_kind(rng, kind)
            c0 = time.process_time()
            reg = locate_label(film, dpi=p.dpi)
            cpu.append(time.process_time() - c0)
            got.append(reg.kind if reg is not None else "")
        pct = [f"{100 * got.count(k) / n:.1f}" for k in KINDS]
        out.append(f"| {kind} | {n} | {100 * sum(bool(g) for g in got) / n:.1f} | {' | '.join(pct)} | {np.median(cpu):.3f} |")
    ks = [r["kind"] for r in res_printed if r["kind"]]
    out.append(f"| printed, accuracy set above | {len(res_printed)} | {100 * len(ks) / max(1, len(res_printed)):.1f} | "
               + " | ".join(f"{100 * ks.count(k) / max(1, len(res_printed)):.1f}" for k in KINDS) + " | - |")
    return out


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the Tesseract runs)."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def row(name: str, res: list[dict]) -> str:
    if not res:
        return ""
    cells = [name, str(len(res))]
    for kw in FIELDS:
        hits = [r["ok"][kw] for r in res if kw in r["ok"]]
        cells.append(f"{100 * np.mean(hits):.1f}" if hits else "-")
    cells.append(f"{100 * np.mean([all(r['ok'].values()) for r in res]):.1f}")
    cells.append(str(sum(r["wrong_pt"] for r in res)))
    cells.append(str(sum(r["id_wrong_unflagged"] for r in res)))
    cells.append(f"{100 * np.mean([r['flagged'] for r in res]):.1f}")
    t = np.array([r["time"] for r in res])
    cells.append(f"{np.median(t):.2f} / {np.percentile(t, 90):.2f}")
    c = np.array([r["cpu"] for r in res])
    cells.append(f"{np.median(c):.2f} / {np.percentile(c, 90):.2f}")
    return "| " + " | ".join(cells) + " |"


def error_line(engine: str, i: int, r: dict) -> str:
    p = r["params"]
    errs = "; ".join(f"{SHORT[kw]}: {t!r} -> {v!r} ({c})" for kw, t, v, c in r["errors"])
    return (f"{engine} #{i}: {errs}  [{p.font}, {p.dpi:.0f} dpi, cap {p.cap_mm:.1f} mm, contrast {p.contrast:.2f}, "
            f"blur {p.blur_sigma_px:.1f}, noise {p.noise_sigma:.3f}, k {p.rotation_k}, "
            f"{'light-on-dark' if p.light_on_dark else 'dark-on-light'}, found {r['found']}]")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    tver = subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    try:
        lib = f"; tesserocr {tesserocr_version()} (Tesseract {tesseract_version(OCRConfig(engine='tesserocr'))})"
    except Exception as exc:  # noqa: BLE001 -- tesserocr missing: say so in the table footer
        lib = f"; tesserocr unavailable ({type(exc).__name__})"
    return f"nproc {os.cpu_count()}, {cpu}, {platform.python_version()}, {' '.join(tver)}{lib}"


def tesserocr_version() -> str:
    import tesserocr

    return tesserocr.__version__


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="~60 labels (48 at >=150 dpi + 12 at 100 dpi)")
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--engine", choices=("both", "tesserocr", "pytesseract"), default="both",
                    help="Tesseract engine(s) of the pipeline rows (the baseline uses the first)")
    ap.add_argument("--errors", action="store_true", help="list every field read wrong")
    ap.add_argument("--kinds", type=int, default=None,
                    help="films per label kind in the label-kind table (default 40, --quick 10; 0 skips it)")
    ap.add_argument("--site-formats", action="store_true",
                    help="configure the generator's identifier formats as a site would "
                    "(ocr.field_formats: PatientID 99999999, AccessionNumber A9999999)")
    a = ap.parse_args(argv)
    n_main, n_100 = (48, 12) if a.quick else (300, 60)
    engines = ("tesserocr", "pytesseract") if a.engine == "both" else (a.engine,)
    formats = SITE_FORMATS if a.site_formats else {}
    ocr = OCRConfig(engine=engines[0], field_formats=formats)
    main_set = generate(n_main, (150.0, 200.0, 300.0), a.seed)
    low_set = generate(n_100, (100.0,), a.seed + 1)
    every = main_set + low_set
    rows = [ManifestRow(line=i + 2, PatientID=t["PatientID"], PatientName=t["PatientName"],
                        PatientBirthDate=t["PatientBirthDate"], StudyDate=t["StudyDate"],
                        AccessionNumber=t.get("AccessionNumber", ""), scan_file="")
            for i, (_, t, _, _) in enumerate(every)]
    head = ["set", "n", *(SHORT[k] for k in FIELDS), "all", "wrong-pt", "ID wrong unflagged", "flagged %",
            "wall s/label med / p90", "CPU s/label med / p90"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    errors: list[str] = []
    for engine in engines:
        cfg = OCRConfig(engine=engine, field_formats=formats)
        engine = engine + (", site formats" if formats else "")
        res_main = evaluate(main_set, rows, pipeline_read, cfg)
        res_low = evaluate(low_set, rows, pipeline_read, cfg)
        out.append(row(f"pipeline [{engine}], 150-300 dpi", res_main))
        for font in ("mono", "sans", "mono_regular"):
            out.append(row(f"  font {font}", [r for r in res_main if r["font"] == font]))
        for dpi in (150.0, 200.0, 300.0):
            out.append(row(f"  {dpi:.0f} dpi", [r for r in res_main if r["dpi"] == dpi]))
        out.append(row(f"pipeline [{engine}], 100 dpi", res_low))
        errors += [error_line(engine, i, r) for i, r in enumerate(res_main + res_low) if r["errors"]]
    if not a.no_baseline:
        out.append(row("baseline (whole film, psm 3), 150-300 dpi", evaluate(main_set, rows, baseline_read, ocr)))
        out.append(row("baseline, 100 dpi", evaluate(low_set, rows, baseline_read, ocr)))
    print(f"label OCR accuracy, % exact match; seed {a.seed}; {'quick' if a.quick else 'full'} run")
    print("\n".join(x for x in out if x))
    n_kinds = a.kinds if a.kinds is not None else (10 if a.quick else 40)
    if n_kinds:
        print(f"\nlabel kinds, seed {a.seed + 2}")
        print("\n".join(kind_table(n_kinds, a.seed + 2, res_main)))
    if a.errors:
        print("\nfields read wrong (engine, film, field: truth -> read (confidence); label parameters):")
        print("\n".join(errors) or "none")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{time.strftime('%Y-%m-%d %H:%M %Z')}; {machine()}; load average at the end {load}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
