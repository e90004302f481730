"""Benchmark of the L/R lead-marker reader and the orientation it decides (issues 3 and 4).

    .venv/bin/python bench/marker_accuracy.py [--n 240] [--seed 7] [--pipeline 30]

Films are generated with a fixed seed from the real radiographs in
/work/shared/data/radiographs (provenance and licences in its SOURCES.md) by
``filmflow.synth.make_film_scan`` with its ``marker`` option: 16-bit, 100/150/200 DPI,
label in a random corner; one film in four without a marker; markers L or R, 5..30 mm,
penumbra blur 0..0.8 mm, 0..2 inches inside an edge, a frame on some, drawn in five
fonts (NimbusSans-Bold, DejaVuSans-Bold, URWGothic-Demi are in the reader's template
bank; LiberationSansNarrow-Bold and DejaVuSansCondensed-Bold are not, though the bank has
NimbusSansNarrow-Bold and DejaVuSans-Bold, similar designs), 10 % mirrored, 15 % laid at a wrong quarter turn on the
film (the orientation cue then lies). The finished film (cropped to its truth box, no
skew: straightening is benchmarked in image_quality.py) is then turned by a random
quarter turn, as if fed into the digitizer that way.

The label's orientation cue is simulated from the truth: a label reads upright after
its true turn (0/180 or, for the 20 % of cards flashed sideways, 90/270), or is
unreadable (20 %): the label reader has its own benchmark (ocr_accuracy.py), and this
one isolates what the marker adds. Only ``pipeline.marker.read_marker`` is timed
(process CPU time, one core).

Prints markdown tables: marker reading (detection, letter accuracy, mirrored
confident, false markers), orientation (decided %, wrong) with the label alone and
label + marker, and time per film.

``--pipeline N`` also runs N whole films (skewed scans written as 16-bit TIFF, every
marker laid upright, label upright or flashed sideways) through ``flows.film.process_film``
(real label OCR + marker + ``decide_turns``), and prints decided / wrong orientation and
laterality there.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from filmflow import synth  # noqa: E402
from pipeline import marker as marker_mod  # noqa: E402
from pipeline.orientation import decide_turns, rotate_box, turns_from_label  # noqa: E402
from pipeline.types import LabelRegion  # noqa: E402

DATA = Path("/work/shared/data/radiographs")
RADIOGRAPHS = ("00870a9c.jpg", "19073f37.jpg", "21982772.jpg", "865336ed.jpg", "bfefde5d.jpg", "c0f74558.jpg",
               "00000001_000.png", "h0001.png", "tb0005.png", "tb0007.png")
FONTS = ("/usr/share/fonts/opentype/urw-base35/NimbusSans-Bold.otf",
         "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
         "/usr/share/fonts/opentype/urw-base35/URWGothic-Demi.otf",
         "/usr/share/fonts/truetype/liberation/LiberationSansNarrow-Bold.ttf",  # not in the bank (Nimbus Sans Narrow is)
         "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf")  # not in the bank
FIELDS = {"InstitutionName": "COUNTY MEDICAL CENTER", "PatientName": "DOE^JANE", "PatientID": "00123456",
          "PatientBirthDate": "19560314", "StudyDate": "20190402", "AccessionNumber": "A1234567"}


def radiograph(name: str) -> np.ndarray:
    return np.asarray(Image.open(DATA / name).convert("L"), dtype=np.float32) / 255.0


def make_case(i: int, rng: np.random.Generator, cache: dict) -> dict:
    """One generated film, turned as scanned, with its truth."""
    name = RADIOGRAPHS[i % len(RADIOGRAPHS)]
    if name not in cache:
        cache[name] = radiograph(name)
    dpi = float(rng.choice([100.0, 150.0, 200.0]))
    has = rng.random() >= 0.25
    spec = None
    misplaced = False
    if has:
        misplaced = rng.random() < 0.15
        spec = {"letter": str(rng.choice(["L", "R"])),
                "height_mm": float(np.exp(rng.uniform(np.log(5.0), np.log(30.0)))),
                "rotation_k": int(rng.integers(1, 4)) if misplaced else 0,
                "mirrored": bool(rng.random() < 0.10),
                "frame": bool(rng.random() < 0.3),
                "blur_mm": float(rng.uniform(0.0, 0.8)),
                "font": FONTS[i % len(FONTS)]}
    sideways = rng.random() < 0.2
    label_k = int(rng.choice([1, 3])) if sideways else 0
    corner = str(rng.choice(synth.LABEL_CORNERS))
    scan, truth = synth.make_film_scan(cache[name], FIELDS, rng=rng, dpi=dpi, film_size_in=(8.0, 10.0), bits=16,
                                       bits_stored=12, noise=float(rng.uniform(0.005, 0.02)), label_corner=corner,
                                       label_rotation_k=label_k, dust=True, margin_in=0.3, marker=spec)
    b = truth["film_box"]
    film = scan[b[0]:b[2], b[1]:b[3]]
    # film box is the bed-padded crop: label/marker boxes are in the upright film, offset by the rim
    off_r, off_c = (film.shape[0] - truth["film_shape"][0]) // 2, (film.shape[1] - truth["film_shape"][1]) // 2
    film_k = int(rng.integers(0, 4))
    shape = film.shape
    turned = np.ascontiguousarray(np.rot90(film, film_k))
    lb = [v + o for v, o in zip(truth["label_box"], (off_r, off_c, off_r, off_c))]
    label_box = rotate_box(tuple(lb), shape, film_k)
    mk = truth.get("marker")
    mbox = None
    if mk:
        mbox = rotate_box(tuple(v + o for v, o in zip(mk["box"], (off_r, off_c, off_r, off_c))), shape, film_k)
    return {"film": turned, "dpi": dpi, "film_k": film_k, "upright_turns": (-film_k) % 4,
            "label_read_k": None if rng.random() < 0.2 else (-label_k - film_k) % 4,
            "label_box": label_box, "marker": mk, "marker_box": mbox, "misplaced": misplaced,
            "font": Path(spec["font"]).stem if spec else "", "height_mm": spec["height_mm"] if spec else 0.0,
            "marker_read_k_truth": None if not mk else (-mk["rotation_k"] - film_k) % 4}


def run_pipeline(n: int, seed: int) -> None:
    """Whole films through flows.film.process_film: orientation and laterality as the migration decides them."""
    import tempfile

    import tifffile

    from filmflow.config import Settings
    from flows.film import process_film

    rng = np.random.default_rng(seed + 1000)
    cache: dict = {}
    settings = Settings()
    res = defaultdict(int)
    cpu = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            name = RADIOGRAPHS[i % len(RADIOGRAPHS)]
            if name not in cache:
                cache[name] = radiograph(name)
            dpi = float(rng.choice([150.0, 200.0]))
            has = rng.random() >= 0.2
            letter = str(rng.choice(["L", "R"]))
            spec = {"letter": letter, "height_mm": float(rng.uniform(8.0, 20.0)), "blur_mm": float(rng.uniform(0, 0.4)),
                    "font": FONTS[i % len(FONTS)]} if has else None
            label_k = int(rng.choice([1, 3])) if rng.random() < 0.2 else 0
            scan, truth = synth.make_film_scan(cache[name], FIELDS, rng=rng, dpi=dpi, film_size_in=(8.0, 10.0), bits=16,
                                               bits_stored=12, skew_deg=float(rng.uniform(-3, 3)),
                                               label_corner=str(rng.choice(synth.LABEL_CORNERS)),
                                               label_rotation_k=label_k, margin_in=0.3, marker=spec)
            film_k = int(rng.integers(0, 4))
            path = Path(tmp) / f"f{i:03d}.tif"
            tifffile.imwrite(path, np.ascontiguousarray(np.rot90(scan, film_k)), resolution=(dpi, dpi),
                             resolutionunit="INCH")
            staging = Path(tmp) / f"s{i:03d}"
            staging.mkdir()
            out = process_film(path, source_file=path.name, settings=settings, batch_name="bench",
                               manifest_rows=None, staging_dir=staging)
            rec = out.record
            geo = rec.get("geometry", {})
            want = (-film_k) % 4
            key = "sideways card" if label_k else "upright card"
            res[f"{key} films"] += 1
            if geo.get("orientation_decided"):
                res[f"{key} decided"] += 1
                res[f"{key} wrong"] += int(geo.get("rotation_k") != want)
                if geo.get("rotation_k") != want:
                    print(f"  wrong: fed at {90 * film_k} deg, card at {90 * label_k} deg, turned "
                          f"{90 * geo.get('rotation_k', 0)} deg by {geo.get('orientation_source')}; marker {rec.get('marker')}")
            lat = rec.get("laterality", "")
            res["laterality read"] += int(bool(lat))
            res["laterality wrong"] += int(bool(lat) and (not has or lat != letter))
            res["with marker"] += int(has)
            t = rec.get("timings", {})
            cpu.append((t.get("ocr", 0.0), t.get("marker", 0.0)))
    print()
    print(f"| whole films through process_film (n={n}) | films | orientation decided | wrong |")
    print("|---|---|---|---|")
    for key in ("upright card", "sideways card"):
        print(f"| label {key} | {res[f'{key} films']} | {res[f'{key} decided']} | {res[f'{key} wrong']} |")
    print(f"\nlaterality read on {res['laterality read']} of {res['with marker']} films with a marker; wrong: "
          f"{res['laterality wrong']}")
    if cpu:
        print(f"step wall time per film (the flow's timer): ocr median {statistics.median(c[0] for c in cpu):.2f} s, "
              f"marker median {statistics.median(c[1] for c in cpu):.3f} s")


def overlaps(a, b) -> bool:
    return a is not None and b is not None and min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--pipeline", type=int, default=0, help="also run this many whole films through process_film")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    cache: dict = {}
    marker_mod.classify_glyph(np.ones((6, 4), bool))  # template bank built once per process, not timed
    rows = []
    times = []
    for i in range(args.n):
        c = make_case(i, rng, cache)
        t0 = time.process_time()
        r = marker_mod.read_marker(c["film"], dpi=c["dpi"], exclude_box=c["label_box"])
        times.append(time.process_time() - t0)
        c.pop("film")
        c["read"] = r
        rows.append(c)

    def pct(a, b):
        return f"{100.0 * a / b:.1f}" if b else "-"

    # marker reading, by group
    groups = defaultdict(list)
    for c in rows:
        mk = c["marker"]
        if not mk:
            groups["no marker"].append(c)
            continue
        groups["mirrored" if mk["mirrored"] else "marker"].append(c)
        if not mk["mirrored"]:
            h = c["height_mm"]
            groups["  5-10 mm" if h < 10 else ("  10-20 mm" if h < 20 else "  20-30 mm")].append(c)
            groups[f"  {int(c['dpi'])} dpi"].append(c)
            groups[f"  font {c['font']}"].append(c)
    print("| films | n | confident read % | letter right % of read | turn right % of read | wrong letter (n) |")
    print("|---|---|---|---|---|---|")
    order = ["marker", "  5-10 mm", "  10-20 mm", "  20-30 mm", "  100 dpi", "  150 dpi", "  200 dpi"]
    order += sorted(k for k in groups if k.startswith("  font")) + ["mirrored", "no marker"]
    for g in order:
        cs = groups.get(g, [])
        read = [c for c in cs if c["read"].confident]
        right = [c for c in read if c["marker"] and c["read"].letter == c["marker"]["letter"]
                 and overlaps(c["read"].box, c["marker_box"])]
        turn = [c for c in right if c["read"].rotation_k == c["marker_read_k_truth"]]
        label = {"marker": "with a marker (not mirrored)", "mirrored": "mirrored marker (must not be confident)",
                 "no marker": "no marker (confident = false marker)"}.get(g, g)
        print(f"| {label} | {len(cs)} | {pct(len(read), len(cs))} | {pct(len(right), len(read))} | "
              f"{pct(len(turn), len(read))} | {len(read) - len(right)} |")

    # orientation
    print()
    print(f"| orientation rule ({len(rows)} films) | decided % | right | wrong | undecided |")
    print("|---|---|---|---|---|")
    variants = ("label only (before markers)", "label + marker, label_alone=True (sites flashing cards upright)",
                "label + marker, marker_alone=True", "label + marker, label_alone=False (strict, default)")
    causes: dict[str, dict[str, int]] = {}
    for name in variants:
        right = wrong = und = 0
        causes[name] = defaultdict(int)
        for c in rows:
            lk = c["label_read_k"]
            r = c["read"]
            if name.startswith("label only"):
                t, src = turns_from_label(None if lk is None else LabelRegion((0, 0, 1, 1), rotation_k=lk)), "label"
            else:
                d = decide_turns(lk, r.rotation_k if r.confident else None, marker_alone="marker_alone=True" in name,
                                 label_alone="label_alone=True" in name)
                t, src = d.turns, d.source
            if t is None:
                und += 1
            elif t == c["upright_turns"]:
                right += 1
            else:
                wrong += 1
                causes[name]["marker laid at a wrong turn" if "marker" in src and c["misplaced"] else
                             "card flashed sideways on a sideways-fed film" if src == "label" else src] += 1
        print(f"| {name} | {pct(right + wrong, len(rows))} | {right} | {wrong} | {und} |")
    print()
    for name in variants:
        if causes[name]:
            print(f"wrong, {name}: " + "; ".join(f"{k} {v}" for k, v in sorted(causes[name].items())))
    print()
    t = np.asarray(times) * 1000
    print(f"read_marker CPU time per film: median {statistics.median(t):.1f} ms, p95 {np.percentile(t, 95):.1f} ms, "
          f"max {t.max():.1f} ms (n={len(t)})")
    if args.pipeline:
        run_pipeline(args.pipeline, args.seed)


if __name__ == "__main__":
    main()
