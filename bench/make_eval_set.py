"""Generated evaluation set for the film image steps (issue 3): not committed.

Each film is defined by its index alone (seed ``SEED + i``), so any subset can be
regenerated in memory by :func:`make_film`; the CLI writes them to a folder::

    .venv/bin/python bench/make_eval_set.py OUT_DIR [--n 120]

Films: real radiographs from /work/shared/data/radiographs (provenance in
/work/shared/data/SOURCES.md), skew uniform in +-15 degrees, noise 0.3-4 % of full
scale, 8- or 16-bit (12-16 bits stored), 100-300 DPI, film 4x5 to 6x7.5 inches;
odd-numbered films are "hard": film outline wobbling by 0.5-2 px around the nominal
rectangle (the truth) and a 2-8 % illumination ramp across the bed.
"""

from __future__ import annotations

import argparse
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from filmflow.synth import make_film_scan

SEED = 3_000_000
DATA = Path("/work/shared/data/radiographs")
RADIOGRAPHS = (
    "00870a9c.jpg", "19073f37.jpg", "21982772.jpg", "865336ed.jpg", "bfefde5d.jpg", "c0f74558.jpg",
    "RG2_UNC.dcm", "00000001_000.png", "h0001.png", "tb0005.png", "tb0007.png",
)
NOISE_LEVELS = (0.003, 0.01, 0.02, 0.04)
SIZES = ((4.0, 5.0), (5.0, 6.0), (6.0, 7.5))
FIELDS = {
    "PatientName": "EVAL^FILM",
    "PatientID": "0000000",
    "PatientBirthDate": "19700101",
    "StudyDate": "20200101",
    "AccessionNumber": "E0000000",
}


@lru_cache(maxsize=None)
def radiograph(name: str) -> np.ndarray:
    path = DATA / name
    if path.suffix == ".dcm":
        a = pydicom.dcmread(path).pixel_array.astype(np.float64)
    else:
        a = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    lo, hi = np.percentile(a, [0.5, 99.5])
    return np.clip((a - lo) / max(hi - lo, 1e-9), 0, 1)


def params(i: int) -> dict:
    """The parameters of film ``i`` (deterministic)."""
    rng = np.random.default_rng(SEED + i)
    bits = int(rng.choice([8, 16]))
    return {
        "radiograph": RADIOGRAPHS[i % len(RADIOGRAPHS)],
        "skew_deg": float(rng.uniform(-15, 15)),
        "noise": float(NOISE_LEVELS[i % len(NOISE_LEVELS)]),
        "bits": bits,
        "bits_stored": int(rng.choice([12, 14, 16])) if bits == 16 else 8,
        "dpi": float(rng.choice([100, 150, 200, 300])),
        "film_size_in": SIZES[int(rng.integers(len(SIZES)))],
        "label_corner": str(rng.choice(["top-left", "top-right", "bottom-left", "bottom-right"])),
        "margin_in": float(rng.uniform(0.3, 1.0)),
        # every other film is "hard": wavy film edges and uneven bed illumination
        "edge_wobble_px": float(rng.uniform(0.5, 2.0)) if i % 2 else 0.0,
        "bed_gradient": float(rng.uniform(0.02, 0.08)) if i % 2 else 0.0,
    }


def make_film(i: int, *, clean: bool = False) -> tuple[np.ndarray, dict]:
    """Film ``i`` of the set; ``clean=True`` gives the same film without grain, noise and dust."""
    p = params(i)
    scan, truth = make_film_scan(
        radiograph(p["radiograph"]),
        FIELDS,
        rng=np.random.default_rng(SEED + 10_000 + i),
        skew_deg=p["skew_deg"],
        dpi=p["dpi"],
        film_size_in=p["film_size_in"],
        bits=p["bits"],
        bits_stored=p["bits_stored"] if p["bits"] == 16 else 12,
        noise=0.0 if clean else p["noise"],
        dust=not clean,
        label_corner=p["label_corner"],
        margin_in=p["margin_in"],
        edge_wobble_px=p["edge_wobble_px"],
        bed_gradient=p["bed_gradient"],
        source=f"radiographs/{p['radiograph']}",
    )
    truth["noise"] = 0.0 if clean else p["noise"]
    truth["hard"] = bool(p["edge_wobble_px"])
    return scan, truth


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="write the generated evaluation films")
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--n", type=int, default=120)
    args = ap.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for i in range(args.n):
        scan, truth = make_film(i)
        name = f"eval_{i:03d}" + (".tif" if scan.dtype == np.uint16 else ".png")
        Image.fromarray(scan).save(args.out_dir / name, dpi=(truth["dpi"], truth["dpi"]))
        (args.out_dir / f"eval_{i:03d}.json").write_text(json.dumps(truth, indent=1))


if __name__ == "__main__":
    main()
