"""Export the real digitized films of the shared data set to 16-bit TIFF, as a
film digitizer would hand over a scan.

    .venv/bin/python sample_scans/export_digitized.py OUT_DIR [--src /work/shared/data/digitized_films]

Sources (NEMA DICOM WG04 test set via dicom-test-files; NEMA public test images):
``SC1_UNC.dcm`` (CT film sheet, CEMAX digitizer, 2048 x 2487, 12 bits) and
``MG1_J2KI.dcm`` (mammography film, LUMISYS digitizer, 3064 x 4664, 12 bits, JPEG 2000).
A resolution tag is written only when the DICOM header gives a pixel spacing
(Nominal Scanned Pixel Spacing, else Pixel Spacing); neither file has one, so
the TIFFs carry no resolution, like many real digitizer exports. The output is
not committed: tests export into a temporary folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pydicom
import tifffile

FILES = ("SC1_UNC.dcm", "MG1_J2KI.dcm")
DEFAULT_SRC = Path("/work/shared/data/digitized_films")


def export(out_dir: Path, src_dir: Path = DEFAULT_SRC) -> list[Path]:
    """Write ``<stem>.tif`` (16-bit grayscale, deflate) for each digitized film.

    Returns
    -------
    list of Path
        The TIFFs written, in :data:`FILES` order.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in FILES:
        ds = pydicom.dcmread(src_dir / name)
        px = ds.pixel_array
        if px.ndim != 2:
            raise ValueError(f"{name}: expected one grayscale frame, got shape {px.shape}")
        px = px.astype(np.uint16, copy=False)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            px = ((1 << int(ds.BitsStored)) - 1 - px).astype(np.uint16)
        spacing = ds.get("NominalScannedPixelSpacing") or ds.get("PixelSpacing")
        kw = {}
        if spacing:
            dpi = 25.4 / float(spacing[1])
            kw = {"resolution": (dpi, dpi), "resolutionunit": "INCH"}
        path = out_dir / (Path(name).stem + ".tif")
        tifffile.imwrite(path, px, photometric="minisblack", compression="zlib", **kw)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Export digitized DICOM films to 16-bit TIFF")
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC)
    args = ap.parse_args(argv)
    for p in export(args.out_dir, args.src):
        print(p)


if __name__ == "__main__":
    main()
