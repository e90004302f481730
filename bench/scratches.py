"""Benchmark of thin-scratch repair (issue 3): pipeline.scratches.repair_scratches.

    .venv/bin/python bench/scratches.py [--n 60] [--films 30] [--timing-repeats 3]

On the centre patches of the generated evaluation films (bench/image_quality.py ``centre_patch``,
seeded by the film index), each patch is used four times:

* scratched: 1-3 synthetic scratches planted on the scanned patch (1-3 px wide, bright =
  emulsion scraped off: the value moves towards the film's clear level by 30-100 %, or dark =
  the value drops by 20-60 %; straight or slightly curved (sagitta 1-4 px); 5-100 mm long,
  anti-aliased and blurred like the scanner's optics, Gaussian sigma 0.6 px). Reference: the
  noise-free patch. Reported: PSNR before / after, share of the visible scratch pixels
  (planted change > 3 sigma) repaired (after: within 3 sigma of the noise-free value);
* guidewire: a curved bright line 2-3 px wide (an arc of radius 15-60 mm over 60-180 deg,
  the value moving 50-90 % towards the clear level) planted in both the scan and the
  noise-free reference: it must survive;
* catheter: a straight line 1-2 px wide, 15-60 mm, 15-50 % towards the clear level, inside
  the anatomy, planted in both: it must survive;
* untouched patch (anatomy only: bone edges, ribs, vessels).

For the must-survive structures: share of their pixels (coverage > 0.5) changed, and the PSNR
change against the reference. Whole films (``--films``): the straightened film (truth
geometry via pipeline.geometry), pixels changed in the flashed label (its text) and elsewhere.
Timing: one core, a full-size 8x10 in film at 300 DPI (bench/image_quality.py ``large_film``), as
generated and with 5 scratches planted. Real films: the two digitized films of
/work/shared/data/digitized_films (what is inpainted on them; nothing is known to be a scratch).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from skimage.metrics import peak_signal_noise_ratio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from image_quality import LARGE_FILMS, centre_patch, large_film  # noqa: E402
from make_eval_set import make_film  # noqa: E402

from filmflow.synth import BED_LEVEL, D_MIN, SCANNER_GAMMA  # noqa: E402
from pipeline.denoise import estimate_noise_sigma  # noqa: E402
from pipeline.geometry import find_film, straighten  # noqa: E402
from pipeline.scratches import MIN_LENGTH_MM, repair_scratches  # noqa: E402

SEED = 4_100_000
REAL = Path("/work/shared/data/digitized_films")
#: Film's clear level (base + fog) as a fraction of full scale: where a scraped scratch goes.
CLEAR = BED_LEVEL * (10.0 ** -D_MIN) ** SCANNER_GAMMA
#: The radiograph of the set that shows a real pacemaker with its leads (in every 11th film).
PACEMAKER = "19073f37.jpg"
SS = 4  # supersampling of the drawn lines


def coverage(shape: tuple[int, int], pts: np.ndarray, width: float) -> np.ndarray:
    """Share of each pixel covered by the polyline ``pts`` ((K, 2) x, y) of ``width`` px,
    anti-aliased (drawn at 4x and area-averaged), blurred by the scanner optics (sigma 0.6 px)."""
    big = np.zeros((shape[0] * SS, shape[1] * SS), np.uint8)
    p = np.round((pts + 0.5) * SS * 16 - 0.5 * 16).astype(np.int32)  # pixel centres at integers, 4 fractional bits
    cv2.polylines(big, [p], False, 255, thickness=max(1, int(round(width * SS))), lineType=cv2.LINE_8, shift=4)
    m = cv2.resize(big.astype(np.float32) / 255.0, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(m, (0, 0), 0.6).astype(np.float64)


def line_path(rng: np.random.Generator, shape: tuple[int, int], length_px: float, sagitta: float) -> np.ndarray:
    """A straight (sagitta 0) or gently curved (parabolic bow of ``sagitta`` px) path of about
    ``length_px`` px at a random angle and place inside ``shape``."""
    h, w = shape
    length_px = min(length_px, 0.95 * math.hypot(h, w))
    for _ in range(200):
        th = rng.uniform(0, math.pi)
        ux, uy = math.cos(th), math.sin(th)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        t = np.linspace(-length_px / 2, length_px / 2, max(8, int(length_px)))
        bow = sagitta * (1 - (2 * t / length_px) ** 2)
        x, y = cx + t * ux - bow * uy, cy + t * uy + bow * ux
        if x.min() >= 0 and y.min() >= 0 and x.max() <= w - 1 and y.max() <= h - 1:
            return np.column_stack([x, y])
        length_px *= 0.97
    return np.column_stack([x.clip(0, w - 1), y.clip(0, h - 1)])


def arc_path(rng: np.random.Generator, shape: tuple[int, int], radius: float, span_deg: float) -> np.ndarray:
    """An arc of ``radius`` px over ``span_deg`` inside ``shape`` (a guidewire's bend)."""
    h, w = shape
    for _ in range(200):
        a0 = rng.uniform(0, 2 * math.pi)
        a = a0 + np.radians(np.linspace(0, span_deg, max(16, int(radius * np.radians(span_deg)))))
        cx, cy = rng.uniform(-radius, w + radius), rng.uniform(-radius, h + radius)
        x, y = cx + radius * np.cos(a), cy + radius * np.sin(a)
        if x.min() >= 2 and y.min() >= 2 and x.max() <= w - 3 and y.max() <= h - 3:
            return np.column_stack([x, y])
        radius *= 0.97
    return np.column_stack([x.clip(2, w - 3), y.clip(2, h - 3)])


def toward(img: np.ndarray, m: np.ndarray, a: float, level: float) -> np.ndarray:
    """``img`` moved by ``a * m`` of the way towards ``level`` (float64)."""
    return img + a * m * (level - img)


def plant_scratches(x: np.ndarray, rng: np.random.Generator, dpi: float, top: int) -> tuple[np.ndarray, list[dict]]:
    """1-3 scratches on the scanned patch ``x``: (float64 scratched patch, one dict per scratch)."""
    y = x.astype(np.float64)
    info = []
    for _ in range(int(rng.integers(1, 4))):
        width = float(rng.integers(1, 4))
        length_mm = float(rng.uniform(5, 100))
        curved = bool(rng.integers(2))
        pts = line_path(rng, x.shape, length_mm / 25.4 * dpi, rng.uniform(1, 4) if curved else 0.0)
        m = coverage(x.shape, pts, width)
        bright = bool(rng.random() < 0.7)
        a = float(rng.uniform(0.3, 1.0) if bright else rng.uniform(0.2, 0.6))
        before = y
        y = toward(y, m, a, CLEAR * top) if bright else y * (1 - a * m)
        info.append({"m": m, "bright": bright, "width": width, "curved": curved,
                     "length_mm": float(np.hypot(*(pts[-1] - pts[0])) / dpi * 25.4), "delta": np.abs(y - before)})
    return y, info


def q(img: np.ndarray, dtype, top: int) -> np.ndarray:
    return np.clip(np.rint(img), 0, top).astype(dtype)


def psnr(ref: np.ndarray, img: np.ndarray, top: int) -> float:
    return float(peak_signal_noise_ratio(ref, img.astype(np.float64), data_range=top))


def straightened_pair(i: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Film ``i`` straightened (noisy and noise-free, same geometry) and its truth."""
    scan, truth = make_film(i)
    clean, _ = make_film(i, clean=True)
    det = find_film(scan)
    film, _ = straighten(scan, max_skew_deg=20, detection=det)
    film_c, _ = straighten(clean, max_skew_deg=20, detection=det)
    return film, film_c, truth


def run(n: int, films: int, repeats: int) -> None:
    rows: dict[str, list] = {}
    per_scratch = []  # (length_mm, width, bright, curved, visible px, repaired px)
    for i in range(n):
        x, c, top, truth = centre_patch(i)
        dpi = truth["dpi"]
        sigma = estimate_noise_sigma(x)
        rng = np.random.default_rng(SEED + i)
        # 1. scratched
        ys, info = plant_scratches(x, rng, dpi, top)
        yq = q(ys, x.dtype, top)
        out, rep = repair_scratches(yq, dpi=dpi, sigma=sigma)
        vis_all = np.zeros(x.shape, bool)
        for s in info:
            vis = s["delta"] > 3 * sigma
            vis_all |= vis
            fixed = vis & (np.abs(out.astype(np.float64) - c) <= 3 * sigma)
            per_scratch.append((s["length_mm"], s["width"], s["bright"], s["curved"], int(vis.sum()), int(fixed.sum()),
                                int(np.sum(vis & (out != yq)))))
        off = ~cv2.dilate(np.uint8(sum(s["m"] for s in info) > 0.02), np.ones((9, 9), np.uint8)).astype(bool)
        rows.setdefault("scratched", []).append((psnr(c, yq, top), psnr(c, out, top), psnr(c, x, top),
                                                 float(np.mean(out[off] != yq[off])), rep.pixels))
        def planted(name: str, m: np.ndarray, a: float) -> None:
            """Plant the line ``m`` (coverage) at strength ``a`` toward clear film, in the scan and
            the reference, repair, and record how much of the line and the patch changed."""
            yl, cl = q(toward(x.astype(np.float64), m, a, CLEAR * top), x.dtype, top), toward(c, m, a, CLEAR * top)
            out, rep = repair_scratches(yl, dpi=dpi, sigma=sigma)
            body = m > 0.5
            rows.setdefault(name, []).append((psnr(cl, yl, top), psnr(cl, out, top), float(np.mean(out[body] != yl[body])),
                                              float(np.mean(out != yl)), rep.pixels))

        # 2. guidewire (must survive): curved, 2-3 px
        radius = rng.uniform(15, 60) / 25.4 * dpi
        m = coverage(x.shape, arc_path(rng, x.shape, radius, rng.uniform(60, 180)), float(rng.integers(2, 4)))
        planted("guidewire", m, float(rng.uniform(0.5, 0.9)))
        # 3. catheter (must survive): straight, 1-2 px, 15-60 mm
        length = rng.uniform(15, 60) / 25.4 * dpi
        m = coverage(x.shape, line_path(rng, x.shape, length, 0.0), float(rng.integers(1, 3)))
        planted("catheter", m, float(rng.uniform(0.15, 0.5)))
        # 4. anatomy alone
        out, rep = repair_scratches(x, dpi=dpi, sigma=sigma)
        key = "anatomy, 19073f37.jpg (a real pacemaker and its leads)" if truth["source"].endswith(PACEMAKER) else "anatomy"
        rows.setdefault(key, []).append((psnr(c, x, top), psnr(c, out, top), 0.0, float(np.mean(out != x)), rep.pixels))

    label_rows = []
    for i in range(films):
        film, film_c, truth = straightened_pair(i)
        r0, c0, r1, c1 = truth["label_box"]
        pad = int(0.1 * truth["dpi"])
        box = (slice(max(0, r0 - pad), r1 + pad), slice(max(0, c0 - pad), c1 + pad))
        t = time.process_time()
        out, rep = repair_scratches(film, dpi=truth["dpi"])
        dt = time.process_time() - t
        lab = np.zeros(film.shape, bool)
        lab[box] = True
        inner = np.zeros(film.shape, bool)
        inner[r0:r1, c0:c1] = True
        label_rows.append((int(np.sum(out[inner] != film[inner])), int(np.sum(out[lab] != film[lab])),
                           int(np.sum(out[~lab] != film[~lab])), film.size, rep.pixels, 1000 * dt / (film.size / 1e6)))

    print(f"\n### Scratch repair ({n} centre patches of the generated films; min length {MIN_LENGTH_MM:g} mm)\n")
    print("| patches | films | PSNR before (dB, median) | PSNR after | PSNR of the unscratched scan | structure pixels changed (mean / max) | "
          "pixels changed elsewhere (mean / max) | films with any change |")
    print("|---|---|---|---|---|---|---|---|")
    for name in rows:
        a = np.asarray(rows[name], dtype=np.float64)
        if name == "scratched":
            print(f"| scratched (1-3 scratches) | {len(a)} | {np.median(a[:, 0]):.2f} | {np.median(a[:, 1]):.2f} | "
                  f"{np.median(a[:, 2]):.2f} | - | {100 * a[:, 3].mean():.3f} % / {100 * a[:, 3].max():.3f} % | "
                  f"{int(np.sum(a[:, 4] > 0))} |")
        else:
            d = a[:, 1] - a[:, 0]
            struct = "-" if name.startswith("anatomy") else f"{100 * a[:, 2].mean():.2f} % / {100 * a[:, 2].max():.1f} %"
            print(f"| {name} (must survive) | {len(a)} | {np.median(a[:, 0]):.2f} | {np.median(a[:, 1]):.2f} | - | {struct} | "
                  f"{100 * a[:, 3].mean():.3f} % / {100 * a[:, 3].max():.3f} % | {int(np.sum(a[:, 4] > 0))} "
                  f"(PSNR change min {d.min():+.2f} dB) |")
    ps = np.asarray(per_scratch, dtype=np.float64)
    print("\n| scratches | count | visible px | inpainted (share of visible px) | repaired: within 3 sigma of the noise-free value | "
          "scratches >= 50 % repaired |")
    print("|---|---|---|---|---|---|")
    groups = {
        f"all, >= {MIN_LENGTH_MM:g} mm": ps[:, 0] >= MIN_LENGTH_MM,
        f"all, < {MIN_LENGTH_MM:g} mm": ps[:, 0] < MIN_LENGTH_MM,
        "bright, >= min": (ps[:, 0] >= MIN_LENGTH_MM) & (ps[:, 2] == 1),
        "dark, >= min": (ps[:, 0] >= MIN_LENGTH_MM) & (ps[:, 2] == 0),
        "straight, >= min": (ps[:, 0] >= MIN_LENGTH_MM) & (ps[:, 3] == 0),
        "curved, >= min": (ps[:, 0] >= MIN_LENGTH_MM) & (ps[:, 3] == 1),
    }
    for w in (1, 2, 3):
        groups[f"{w} px wide, >= min"] = (ps[:, 0] >= MIN_LENGTH_MM) & (ps[:, 1] == w)
    for name, sel in groups.items():
        s = ps[sel]
        if len(s) == 0:
            continue
        share = s[:, 5].sum() / max(1, s[:, 4].sum())
        good = np.sum(s[:, 5] >= 0.5 * np.maximum(s[:, 4], 1))
        print(f"| {name} | {len(s)} | {int(s[:, 4].sum())} | {100 * s[:, 6].sum() / max(1, s[:, 4].sum()):.1f} % | "
              f"{100 * share:.1f} % | {int(good)}/{len(s)} |")
    if label_rows:
        lr = np.asarray(label_rows, dtype=np.float64)
        print(f"\n| whole straightened films ({films}) | label pixels changed (label box / box + 0.1 in) | "
              "films with a label pixel changed (box / box + 0.1 in) | pixels changed elsewhere (mean share) | "
              "films with any change | CPU ms per Mpx (median) |")
        print("|---|---|---|---|---|---|")
        print(f"| no planted lines | {int(lr[:, 0].sum())} / {int(lr[:, 1].sum())} | {int(np.sum(lr[:, 0] > 0))} / "
              f"{int(np.sum(lr[:, 1] > 0))} | {100 * np.mean(lr[:, 2] / lr[:, 3]):.4f} % | {int(np.sum(lr[:, 4] > 0))} | "
              f"{np.median(lr[:, 5]):.0f} |")
    # timing: full-size film, one core; as generated, and with 5 scratches planted
    name = next(iter(LARGE_FILMS))
    scan, truth = large_film(name, 7)
    film, _ = straighten(scan, max_skew_deg=20, detection=find_film(scan))
    top = (1 << truth["bits_stored"]) - 1
    rng = np.random.default_rng(SEED - 1)
    scratched = film.astype(np.float64)
    for _ in range(5):
        m = coverage(film.shape, line_path(rng, film.shape, rng.uniform(40, 150) / 25.4 * truth["dpi"], 0.0), 2.0)
        scratched = toward(scratched, m, 0.8, CLEAR * top)
    for label, img in (("as generated", film), ("5 scratches planted", q(scratched, film.dtype, top))):
        best = float("inf")
        for _ in range(repeats):
            t = time.process_time()
            out, rep = repair_scratches(img, dpi=truth["dpi"])
            best = min(best, time.process_time() - t)
        print(f"\nTiming ({name}, straightened {film.shape[1]}x{film.shape[0]} = {film.size / 1e6:.1f} Mpx, {label}; one core, "
              f"CPU best of {repeats}): {1000 * best:.0f} ms, {1000 * best / (film.size / 1e6):.0f} ms per Mpx; "
              f"{rep.lines} lines, {rep.pixels} pixels inpainted, {rep.candidates} straight runs tested")


def run_real() -> None:
    """The two real digitized films of /work/shared/data/digitized_films (NEMA WG04 SC1_UNC: a CT
    film sheet with 12 framed images and printed text; MG1_J2KI: a mammography film with a lead
    marker), straightened as the flow does, at the flow's default 150 DPI (their files carry none)."""
    import pydicom

    from pipeline import polarity

    print("\n| real digitized film | straightened | sigma | straight runs tested | lines inpainted | pixels | CPU ms per Mpx |")
    print("|---|---|---|---|---|---|---|")
    for name in ("SC1_UNC.dcm", "MG1_J2KI.dcm"):
        px = pydicom.dcmread(REAL / name).pixel_array
        if polarity.assess(px).inverted:
            px = polarity.invert(px, bits_stored=16)
        film, _ = straighten(px, max_skew_deg=20)
        t = time.process_time()
        _, rep = repair_scratches(film, dpi=150.0)
        dt = time.process_time() - t
        print(f"| {name} | {film.shape[1]}x{film.shape[0]} | {rep.sigma:.2f} | {rep.candidates} | {rep.lines} | {rep.pixels} | "
              f"{1000 * dt / (film.size / 1e6):.0f} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="scratch repair benchmark")
    ap.add_argument("--n", type=int, default=60, help="centre patches")
    ap.add_argument("--films", type=int, default=30, help="whole straightened films for the label check")
    ap.add_argument("--timing-repeats", type=int, default=3)
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    load0 = os.getloadavg()
    run(args.n, args.films, args.timing_repeats)
    if REAL.is_dir():
        run_real()
    load1 = os.getloadavg()
    print(f"\nload average {load0[0]:.2f} -> {load1[0]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
