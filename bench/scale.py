"""Scale: peak memory of a large batch vs a small one, and films/hour with 1 vs 2 workers.

    .venv/bin/python bench/scale.py                      # both parts, default sizes
    .venv/bin/python bench/scale.py --part memory --big 1000 --small 10
    .venv/bin/python bench/scale.py --part throughput --films 20 --workers 1 2

Each measurement is one real ``filmflow migrate`` run (subprocess) into a folder
archive, against one Prefect server started here (so no run pays for, or
counts the memory of, a temporary server).

- memory: small generated films (7 x 8.5 in at 60 DPI, 8-bit PNG, unique
  noise per film); peak RSS is the largest sum of RSS over the CLI's process
  tree, sampled every 0.1 s with psutil. Target: big/small <= 1.5.
- throughput: 14 x 17 in films at 150 DPI, 16-bit TIFF (2100 x 2550 px), every
  step on (polarity, geometry, denoise, OCR, QC, DICOM build, dciodvfy, archive
  store + verify). films/hour = films / the batch's own seconds (as printed
  by the CLI, i.e. without interpreter start-up). Target: 2 workers >= 1.7 x 1 worker.

Inputs are synthetic (filmflow.synth.make_film_scan, seeded) from
/work/shared/data/radiographs/00870a9c.jpg (Hannover Medical School COVID-19
image repository, CC BY 3.0).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RADIOGRAPH = ROOT.parent / "shared" / "data" / "radiographs" / "00870a9c.jpg"
sys.path.insert(0, str(ROOT / "tests"))

from fixtures_prefect import free_port, prefect_env, wait_healthy  # noqa: E402


RADIOGRAPHS = sorted(p for p in RADIOGRAPH.parent.iterdir() if p.suffix.lower() in (".jpg", ".png"))


def make_distinct_films(folder: Path, n: int, *, dpi: float, size_in: tuple[float, float], seed: int) -> None:
    """Write ``n`` 16-bit TIFF film scans that differ in picture (radiograph, flips), label and skew.

    Distinct pictures and identities keep the (near-)duplicate checks quiet, so
    that good films run every step up to the archive.
    """
    import tifffile

    from filmflow.synth import make_film_scan

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    families = ("ABERNATHY", "BLOMQVIST", "CARVALHO", "DRUMMOND", "EKWUEME", "FONTAINE", "GALLAGHER", "HOLLOWAY",
                "IVANOVA", "JANSSEN", "KOWALCZYK", "LINDGREN", "MORIARTY", "NAKAMURA", "OYELARAN", "PETERSEN")
    for i in range(n):
        path = RADIOGRAPHS[i % len(RADIOGRAPHS)]
        img = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0
        k = i // len(RADIOGRAPHS)
        img = np.ascontiguousarray(img[:, ::-1] if k % 2 else img)
        img = np.ascontiguousarray(img[::-1, :] if (k // 2) % 2 else img)
        fields = {"PatientName": f"{families[i % len(families)]}^{'ANNA' if i % 3 else 'PAUL'}",
                  "PatientID": f"{43000000 + 7919 * i:08d}", "PatientBirthDate": f"19{40 + i % 50:02d}0{1 + i % 9}1{i % 9}",
                  "StudyDate": f"20{i % 20:02d}0{1 + i % 9}2{i % 8}",
                  "InstitutionName": "BENCH HOSPITAL"}
        scan, _ = make_film_scan(img, fields, rng=rng, skew_deg=float(rng.uniform(-4, 4)), dpi=dpi, film_size_in=size_in,
                                 bits=16, bits_stored=12, dust=False, margin_in=0.4)
        tifffile.imwrite(folder / f"film_{i:05d}.tif", scan, resolution=(dpi, dpi), resolutionunit="INCH", compression="zlib")


def make_films(folder: Path, n: int, *, dpi: float, size_in: tuple[float, float], bits: int, seed: int) -> None:
    """Write ``n`` film scans: one rendered base film, each copy with its own seeded noise (unique bytes)."""
    from filmflow.synth import make_film_scan

    folder.mkdir(parents=True, exist_ok=True)
    img = np.asarray(Image.open(RADIOGRAPH).convert("L"), dtype=np.float32) / 255.0
    rng = np.random.default_rng(seed)
    fields = {"PatientName": "BENCH^FILM", "PatientID": "42000001", "PatientBirthDate": "19600101",
              "StudyDate": "19990101", "AccessionNumber": "B0000001", "InstitutionName": "BENCH HOSPITAL"}
    base, _ = make_film_scan(img, fields, rng=rng, skew_deg=1.2, dpi=dpi, film_size_in=size_in, bits=bits,
                             bits_stored=12 if bits == 16 else 8, dust=False, margin_in=0.3)
    top = 4095 if bits == 16 else 255
    for i in range(n):
        noise = rng.integers(-2, 3, size=base.shape)
        film = np.clip(base.astype(np.int32) + noise, 0, top).astype(base.dtype)
        if bits == 16:
            import tifffile

            tifffile.imwrite(folder / f"film_{i:05d}.tif", film, resolution=(dpi, dpi), resolutionunit="INCH",
                             compression="zlib")
        else:
            Image.fromarray(film).save(folder / f"film_{i:05d}.png", dpi=(dpi, dpi), compress_level=1)


def run_batch(src: Path, tmp: Path, api_url: str, workers: int, tag: str) -> dict:
    """One CLI run; returns peak tree RSS (MiB), the batch seconds and the status counts."""
    env = prefect_env(tmp / "prefect-home-cli", api_url)
    env["OMP_THREAD_LIMIT"] = "1"
    cmd = [sys.executable, "-m", "filmflow.cli", "migrate", str(src), "--archive", str(tmp / f"archive-{tag}"),
           "--work-dir", str(tmp / f"work-{tag}"), "--workers", str(workers)]
    t0 = time.perf_counter()
    # output to files: a pipe nobody reads while polling fills up and blocks the run
    out_path, err_path = tmp / f"{tag}.out", tmp / f"{tag}.err"
    with open(out_path, "w") as out_fh, open(err_path, "w") as err_fh:
        proc = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=out_fh, stderr=err_fh, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [ps, *ps.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.1)
    proc.wait()
    wall = time.perf_counter() - t0
    out, err = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{tag}: exit {proc.returncode}\n{err[-3000:]}")
    m = re.search(r"scans in ([0-9.]+) s", out)
    counts = out.strip().splitlines()[-3] if out.strip() else ""
    return {"peak_mib": peak / 2**20, "batch_s": float(m.group(1)) if m else wall, "wall_s": wall, "counts": counts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("memory", "throughput", "both"), default="both")
    ap.add_argument("--big", type=int, default=1000)
    ap.add_argument("--small", type=int, default=10)
    ap.add_argument("--films", type=int, default=20, help="films of the throughput runs")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="filmflow-scale-"))
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    home = tmp / "prefect-home-server"
    home.mkdir()
    server = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start", "--host", "127.0.0.1",
                               "--port", str(port), "--analytics-off", "--no-late-runs"],
                              env=prefect_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                              start_new_session=True, cwd=home)
    rows: list[tuple[str, ...]] = []
    try:
        wait_healthy(api_url, server, timeout=180)
        if a.part in ("memory", "both"):
            res = {}
            for n in (a.small, a.big):
                src = tmp / f"mem-{n}"
                make_films(src, n, dpi=60, size_in=(7.0, 8.5), bits=8, seed=n)
                res[n] = run_batch(src, tmp, api_url, workers=2, tag=f"mem-{n}")
                rows.append((f"memory, {n} small films, 2 workers", f"{res[n]['peak_mib']:.0f} MiB",
                             f"{res[n]['batch_s']:.1f} s", res[n]["counts"]))
            ratio = res[a.big]["peak_mib"] / res[a.small]["peak_mib"]
            rows.append((f"peak RSS {a.big} / {a.small} films", f"{ratio:.2f}x", "target <= 1.5x", "PASS" if ratio <= 1.5 else "FAIL"))
        if a.part in ("throughput", "both"):
            src = tmp / "thr"
            make_distinct_films(src, a.films, dpi=150, size_in=(14.0, 17.0), seed=17)
            rates = {}
            for w in a.workers:
                r = run_batch(src, tmp, api_url, workers=w, tag=f"thr-{w}")
                rates[w] = a.films / r["batch_s"] * 3600
                rows.append((f"14x17 in 150 DPI 16-bit, {a.films} films, {w} worker(s)", f"{rates[w]:.0f} films/h",
                             f"{r['batch_s']:.1f} s", r["counts"]))
            if len(rates) >= 2:
                lo, hi = min(rates), max(rates)
                speedup = rates[hi] / rates[lo]
                rows.append((f"speed-up {lo} -> {hi} workers", f"{speedup:.2f}x", "target >= 1.7x", "PASS" if speedup >= 1.7 else "FAIL"))
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measurement':<{width}}  {'value':>14}  {'time / target':>16}  statuses")
    for r in rows:
        print(f"{r[0]:<{width}}  {r[1]:>14}  {r[2]:>16}  {r[3]}")
    print(f"\ncpu: {os.cpu_count()} cores; python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
