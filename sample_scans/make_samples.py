"""Generate filmflow's bundled sample scans from real radiographs (seeded, reproducible).

Run with the project's venv from the repository root::

    .venv/bin/python sample_scans/make_samples.py [--data /work/shared/data] [--out sample_scans]

Writes, next to this script: one scan file per film (16-bit deflate TIFF, 8-bit
PNG, one JPEG), a JSON sidecar ``<name>.json`` with the ground truth (skew,
film corners, label fields, ``expect``), ``manifest.csv`` (the RIS export
the migration reconciles against) and ``broken_scan.tif`` (a truncated TIFF).
Provenance of every radiograph: ``sample_scans/SOURCES.md``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from filmflow.synth import make_film_scan

HERE = Path(__file__).resolve().parent
SEED = 20260101

ATTR_MHH = "Hannover Medical School COVID-19 image repository (doi 10.6084/m9.figshare.12275009), via covid-chestxray-dataset; CC BY 3.0"
ATTR_NEMA = "NEMA DICOM WG04 compression test set (RG2_UNC.dcm); NEMA public test images"
ATTR_NIH = "NIH ChestX-ray14, as shipped in the torchxrayvision tests; NIH dataset terms, repo Apache-2.0"
ATTR_TBX = "TBX11K, as shipped in the torchxrayvision tests; TBX11K terms, repo Apache-2.0"
INSTITUTION = "ST. ELSEWHERE GENERAL HOSPITAL"

# Scans at 150 DPI (one at 200): the resolution film digitizers are run at for archive
# migration, and where issue 4's label-reading target is set.
# name, radiograph, attribution, format, dpi tag kind, dpi, film size (in), skew, label corner, date style, bits_stored, PN, ID, DOB, study date, accession, sex
FILMS = [
    ("film_01", "00870a9c.jpg", ATTR_MHH, "tiff16", "inch", 150, (7.0, 8.5), -5.8, "top-left", "iso", 12, "O'BRIEN^SEAN", "00123456", "19560314", "20190402", "A1234567", "M"),
    ("film_02", "19073f37.jpg", ATTR_MHH, "tiff16", "inch", 150, (8.0, 10.0), 2.4, "top-right", "us", 14, "SMITH-JONES^ANNA", "00234567", "19781102", "20180917", "A2234568", "F"),
    ("film_03", "21982772.jpg", ATTR_MHH, "png8", "phys", 200, (6.0, 7.5), -1.3, "bottom-left", "eu", 8, "MUELLER^HANS", "00345678", "19490630", "20170105", "A3234569", "M"),
    ("film_04", "865336ed.jpg", ATTR_MHH, "tiff16", "cm", 150, (7.0, 8.5), 4.7, "bottom-right", "mon", 16, "NGUYEN^THI MAI", "00456789", "19851224", "20200311", "A4234570", "F"),
    ("film_05", "bfefde5d.jpg", ATTR_MHH, "jpeg", "jfif", 150, (7.0, 8.5), -3.2, "top-left", "mon", 8, "GARCIA^LUIS", "00567890", "19630219", "20161128", "A5234571", "M"),
    ("film_06", "c0f74558.jpg", ATTR_MHH, "tiff16", "none", 150, (7.0, 8.5), 0.6, "top-right", "iso", 12, "DUBOIS^CLAIRE", "00678901", "19700801", "20151009", "A6234572", "F"),
    ("film_07", "RG2_UNC.dcm", ATTR_NEMA, "tiff16", "inch", 150, (7.0, 8.5), -0.4, "top-left", "us", 12, "KOWALSKI^PIOTR", "00789012", "19520517", "20140722", "A7234573", "M"),
    ("film_08", "00000001_000.png", ATTR_NIH, "png8", "phys", 200, (6.5, 7.5), 5.9, "bottom-left", "iso", 8, "OKAFOR^CHIDI", "00890123", "19900109", "20210604", "A8234574", "M"),
    ("film_09", "19073f37.jpg", ATTR_MHH, "png8", "phys", 150, (8.0, 8.0), -4.4, "top-right", "eu", 8, "LINDQVIST^ASTRID", "00901234", "19671130", "20130215", "A9234575", "F"),
    ("film_10", "h0001.png", ATTR_TBX, "tiff16", "inch", 150, (7.0, 8.5), 1.9, "bottom-right", "us", 14, "MACDONALD^IAIN", "01012345", "19450704", "20120830", "B0234576", "M"),
    ("film_11", "tb0005.png", ATTR_TBX, "png8", "phys", 200, (6.5, 7.5), -2.7, "top-left", "mon", 8, "SATO^YUKI", "01123456", "19991212", "20220118", "B1234577", "F"),
    # the flagged film: its manifest row carries a different PatientID than its label
    ("film_12", "tb0007.png", ATTR_TBX, "tiff16", "inch", 150, (7.0, 8.5), 3.6, "top-right", "iso", 12, "D'ANGELO^MARCO", "01234567", "19580325", "20190910", "B2234578", "M"),
]
#: Label fonts, in turn: a typewriter-like Courier and a sans-serif; the monospaced imprinter
#: font with dotted zeros goes on the 200-DPI scans only: at 150 DPI its zeros are read as 6 or 8
#: often enough that such films are held for review (bench/ocr_accuracy.py measures every font).
LABEL_FONTS = ("courier", "sans")
FLAGGED = {"film_12": {"PatientID": "01234576"}}  # two digits swapped in the RIS


def load_radiograph(path: Path) -> np.ndarray:
    """Read a radiograph as float in [0, 1] (MONOCHROME2 display: bone bright), 0.5..99.5 % stretched."""
    if path.suffix == ".dcm":
        ds = pydicom.dcmread(path)
        a = ds.pixel_array.astype(np.float64)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            a = a.max() - a
    else:
        a = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    lo, hi = np.percentile(a, [0.5, 99.5])
    return np.clip((a - lo) / max(hi - lo, 1e-9), 0.0, 1.0)


def save_scan(scan: np.ndarray, path: Path, fmt: str, tag: str, dpi: float) -> None:
    im = Image.fromarray(scan)
    if fmt == "tiff16" and tag == "none":
        # Pillow always writes a resolution; tifffile writes none unless asked
        import tifffile

        tifffile.imwrite(path, scan, photometric="minisblack", compression="zlib")
    elif fmt == "tiff16":
        kw: dict = {"compression": "tiff_adobe_deflate"}
        if tag == "inch":
            kw["dpi"] = (dpi, dpi)
        elif tag == "cm":
            kw.update(resolution_unit="cm", x_resolution=dpi / 2.54, y_resolution=dpi / 2.54)
        im.save(path, format="TIFF", **kw)
    elif fmt == "png8":
        im.save(path, format="PNG", dpi=(dpi, dpi), optimize=True)
    elif fmt == "jpeg":
        im.save(path, format="JPEG", quality=92, dpi=(int(dpi), int(dpi)))
    else:
        raise ValueError(fmt)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    rows = []
    for (name, src, attr, fmt, tag, dpi, size, skew, corner, dstyle, bits_stored, pn, pid, dob, sdate, acc, sex) in FILMS:
        fields = {
            "InstitutionName": INSTITUTION,
            "PatientName": pn,
            "PatientID": pid,
            "PatientBirthDate": dob,
            "StudyDate": sdate,
            "AccessionNumber": acc,
            "PatientSex": sex,
        }
        bits = 8 if fmt in ("png8", "jpeg") else 16
        scan, truth = make_film_scan(
            load_radiograph(args.data / "radiographs" / src),
            fields,
            rng=rng,
            skew_deg=skew,
            dpi=dpi,
            film_size_in=size,
            bits=bits,
            bits_stored=bits_stored if bits == 16 else 12,
            noise=float(rng.uniform(0.006, 0.015)),
            label_corner=corner,
            date_style=dstyle,
            font="mono" if dpi >= 200 else LABEL_FONTS[int(name[-2:]) % len(LABEL_FONTS)],
            margin_in=float(rng.uniform(0.3, 0.8)),
            source=f"radiographs/{src}",
            attribution=attr,
        )
        ext = {"tiff16": ".tif", "png8": ".png", "jpeg": ".jpg"}[fmt]
        fname = name + ext
        save_scan(scan, out / fname, fmt, tag, dpi)
        truth.update(
            scan_file=fname,
            container=fmt,
            dpi_tag=tag,
            dpi_in_file=tag != "none",
            expect="flagged" if name in FLAGGED else "archived",
        )
        if name in FLAGGED:
            truth["manifest_differs"] = FLAGGED[name]
        (out / f"{name}.json").write_text(json.dumps(truth, indent=2, ensure_ascii=False) + "\n")
        row = {**fields, **FLAGGED.get(name, {})}
        # the RIS export mixes ISO and compact dates
        fmt_date = (lambda d: f"{d[:4]}-{d[4:6]}-{d[6:]}") if len(rows) % 2 == 0 else (lambda d: d)
        rows.append([row["PatientID"], row["PatientName"], fmt_date(row["PatientBirthDate"]), fmt_date(row["StudyDate"]), row["AccessionNumber"], fname])
        print(f"{fname}: {scan.shape} {scan.dtype} skew {skew:+.1f} {corner} {truth['expect']}")

    # an unreadable file: the first third of a valid deflate TIFF
    buf = io.BytesIO()
    Image.fromarray(np.full((400, 300), 3000, np.uint16)).save(buf, format="TIFF", compression="tiff_adobe_deflate", dpi=(120, 120))
    data = buf.getvalue()
    (out / "broken_scan.tif").write_bytes(data[: len(data) // 3])
    (out / "broken_scan.json").write_text(
        json.dumps({"scan_file": "broken_scan.tif", "expect": "failed", "error": "unreadable_scan", "note": "truncated deflate TIFF"}, indent=2) + "\n"
    )
    with (out / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["patient_id", "patient_name", "birth_date", "study_date", "accession_number", "scan_file"])
        w.writerows(rows)


if __name__ == "__main__":
    main()
