"""Generate filmflow's bad-input corpus (issue 8), seeded and reproducible.

Run from the repository root with the project's venv::

    .venv/bin/python tests/bad_inputs/make_bad_inputs.py            # rewrite scans/ and manifests/
    .venv/bin/python tests/bad_inputs/make_bad_inputs.py --special DIR   # add FIFO/symlink items to DIR

``scans/`` holds the committed files; ``add_special(folder)`` adds the items git
cannot hold or that must be made at run time (a FIFO, symbolic-link loops, a
link to a device, a folder named like a scan, an unreadable file). Every item,
its fault and its expected outcome is listed in ``EXPECTED`` (the test reads
it) and in ``MANIFEST.md`` (people read it); keep the two in step.

Provenance: every image is synthetic (numpy, seeded; film scans by
:func:`filmflow.synth.make_film_scan` from the CC BY 3.0 radiograph
``/work/shared/data/radiographs/00870a9c.jpg``, Hannover Medical School COVID-19
image repository) except ``photo_of_screen.jpg``: figure 3 of Trop Med Health
doi 10.1186/s41182-020-00203-0 (via covid-chestxray-dataset), CC BY 4.0.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import struct
import zlib
from pathlib import Path
from unittest import mock

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SCANS = HERE / "scans"
MANIFESTS = HERE / "manifests"
DATA = HERE.parent.parent.parent / "shared" / "data"
SEED = 8080

#: relative path -> (expected report status, expected code: the error's code or one of the QC
#: flags; a tuple means any of them). QC "fail" findings quarantine a film as ``failed``.
#: ``None`` as status: no report row (the item is not a scan file).
EXPECTED: dict[str, tuple[str | tuple[str, ...] | None, str | tuple[str, ...]]] = {
    "zero_bytes.tif": ("failed", "unreadable_scan"),
    "truncated.tif": ("failed", "unreadable_scan"),
    "truncated.png": ("failed", "unreadable_scan"),
    "truncated.jpg": ("failed", "unreadable_scan"),
    "text_named.tif": ("failed", "unreadable_scan"),
    "html_named.png": ("failed", "unreadable_scan"),
    "gif_named.png": ("failed", "unsupported_scan"),
    "bomb.png": ("failed", "scan_too_large"),
    "bomb.tif": ("failed", "scan_too_large"),
    "multipage.tif": ("failed", "unsupported_scan"),
    "float32.tif": ("failed", "unsupported_scan"),
    "int32_wide.tif": ("failed", "unsupported_scan"),
    "palette_colour.png": ("failed", "unsupported_scan"),
    "cmyk.jpg": ("failed", "unsupported_scan"),
    "one_bit.tif": ("failed", "unsupported_scan"),
    "tiny_8x8.png": ("failed", "unsupported_scan"),
    "thin_2000x40.png": ("failed", "unsupported_scan"),
    "all_black.tif": ("failed", "film_not_found"),
    "all_white.tif": ("failed", "film_not_found"),
    "empty_bed.tif": ("failed", "film_not_found"),
    "no_label.png": ("flagged", "label_not_found"),
    "unknown_layout.png": ("flagged", ("missing_PatientID", "missing_PatientName", "missing_StudyDate", "label_not_found")),
    "photo_of_screen.jpg": ("flagged", ("no_bed_visible", "label_not_found")),
    # 8 significant bits in a 16-bit container: bits_stored is clamped to >= 12, so QC sees a near-blank image
    "sixteen_bit_8_used.tif": (("flagged", "failed"), ("blank", "low_dynamic_range")),
    # a readable film whose label, at 60 dpi, is read (all five fields right with tesserocr since the
    # denoiser stopped taking one-pixel strokes for dust) but with low confidence, or not at all with
    # another engine: held either way; the path itself causes no error
    "path with spaces/Fïlm ñame çopy.png": ("flagged", ("label_not_found", "missing_PatientID", "low_confidence_StudyDate",
                                                          "low_confidence_PatientBirthDate", "low_confidence_AccessionNumber")),
    # made at run time by add_special()
    "fifo.tif": ("failed", "unreadable_scan"),
    "device_link.tif": ("failed", "unreadable_scan"),
    "loop_a.tif": ("failed", "unreadable_scan"),
    "loop_b.tif": ("failed", "unreadable_scan"),
    "dangling_link.png": ("failed", "unreadable_scan"),
    "folder_named.tif": (None, ""),
    "subdir/up": (None, ""),
}
#: Items only ``add_special`` makes (not committed).
SPECIAL = ("fifo.tif", "device_link.tif", "loop_a.tif", "loop_b.tif", "dangling_link.png", "folder_named.tif", "subdir/up")

#: manifest file -> (fault, text the error must contain)
MANIFEST_FAULTS: dict[str, tuple[str, str]] = {
    "missing_columns.csv": ("no birth_date/study_date columns", "no column 'birth_date'"),
    "duplicate_rows.csv": ("line 3 repeats line 2", "line 3 duplicates line 2"),
    "latin1.csv": ("Latin-1 bytes (names with accents) in a UTF-8 manifest", "not valid utf-8 (line 3)"),
    "bad_date.csv": ("study date 31.02.1990", "line 2, column 'study_date': not a valid date"),
    "empty.csv": ("zero bytes", "is empty"),
}


def _tiff(arr: np.ndarray, path: Path, **kw: object) -> None:
    import tifffile

    tifffile.imwrite(path, arr, photometric="minisblack", compression="zlib", resolution=(60.0, 60.0),
                     resolutionunit="INCH", **kw)


def _film(rng: np.random.Generator, *, dpi: float, bits: int) -> np.ndarray:
    from filmflow.synth import make_film_scan

    img = np.asarray(Image.open(DATA / "radiographs" / "00870a9c.jpg").convert("L"), dtype=np.float32) / 255.0
    fields = {"PatientName": "TESTPERSON^BAD", "PatientID": "99000001", "PatientBirthDate": "19600101",
              "StudyDate": "19990101", "AccessionNumber": "Z0000001"}
    scan, _ = make_film_scan(img, fields, rng=rng, skew_deg=1.5, dpi=dpi, film_size_in=(7.0, 8.5), bits=bits,
                             bits_stored=12, dust=False, margin_in=0.3)
    return scan


def _png_bomb(width: int, height: int) -> bytes:
    """A valid-looking PNG whose IHDR declares ``width`` x ``height`` 8-bit gray pixels; a few bytes of IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")


def _tiff_bomb(width: int, height: int) -> bytes:
    """A little-endian baseline TIFF whose IFD declares ``width`` x ``height`` 8-bit gray pixels, one tiny strip."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, 16)]
    ifd_offset = 8 + 16
    out = b"II*\x00" + struct.pack("<I", ifd_offset) + b"\0" * 16
    out += struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        val = struct.pack("<H", value) + b"\0\0" if typ == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, count) + val
    return out + struct.pack("<I", 0)


def make_scans(out: Path = SCANS) -> None:
    """Write the committed bad scans into ``out``."""
    rng = np.random.default_rng(SEED)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    good8 = _film(rng, dpi=60, bits=8)
    buf = io.BytesIO()
    Image.fromarray(good8).save(buf, format="TIFF", compression="tiff_deflate")
    tif = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(good8).save(buf, format="PNG")
    png = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(good8).save(buf, format="JPEG", quality=80)
    jpg = buf.getvalue()

    (out / "zero_bytes.tif").write_bytes(b"")
    (out / "truncated.tif").write_bytes(tif[: len(tif) // 3])
    (out / "truncated.png").write_bytes(png[: len(png) // 3])
    (out / "truncated.jpg").write_bytes(jpg[: len(jpg) // 3])
    (out / "text_named.tif").write_text("scan list for box 12:\nfilm 1\nfilm 2\n", encoding="utf-8")
    (out / "html_named.png").write_text("<html><body>404 Not Found</body></html>\n", encoding="utf-8")
    Image.fromarray(good8).save(out / "gif_named.png", format="GIF")
    (out / "bomb.png").write_bytes(_png_bomb(100_000, 100_000))
    (out / "bomb.tif").write_bytes(_tiff_bomb(60_000, 60_000))
    pages = [Image.fromarray(good8[:200, :200]), Image.fromarray(good8[200:400, :200])]
    pages[0].save(out / "multipage.tif", save_all=True, append_images=pages[1:], compression="tiff_deflate")
    _tiff(good8[:200, :200].astype(np.float32) / 255.0, out / "float32.tif")
    _tiff(good8[:200, :200].astype(np.int32) * 100_000, out / "int32_wide.tif")
    pal = Image.fromarray(good8[:200, :200]).convert("RGB").quantize(colors=16)
    palette = [c for i in range(256) for c in ((i * 7) % 256, (i * 31) % 256, (i * 73) % 256)]
    pal.putpalette(palette)
    pal.save(out / "palette_colour.png")
    Image.fromarray(good8[:200, :200]).convert("CMYK").save(out / "cmyk.jpg", quality=80)
    Image.fromarray(good8[:200, :200]).convert("1").save(out / "one_bit.tif", compression="group4")
    Image.fromarray(good8[:8, :8]).save(out / "tiny_8x8.png")
    Image.fromarray(np.ascontiguousarray(np.tile(good8[:40, :], (1, 5))[:, :2000])).save(out / "thin_2000x40.png")

    shape = good8.shape
    _tiff(np.zeros(shape, np.uint16), out / "all_black.tif")
    _tiff(np.full(shape, 65535, np.uint16), out / "all_white.tif")
    # bare scanner bed: 0.96 of full scale, a gentle illumination falloff and quantised noise (compresses well)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    falloff = 1.0 - 0.02 * ((rows / shape[0] - 0.5) ** 2 + (cols / shape[1] - 0.5) ** 2)
    bed = (np.round(0.96 * 65535 * falloff / 64) * 64 + 64 * rng.integers(-1, 2, shape)).astype(np.uint16)
    _tiff(bed, out / "empty_bed.tif")

    import filmflow.synth as synth

    blank = np.ones((2, 2), np.float32)
    with mock.patch.object(synth, "render_label", lambda *a, **k: blank):
        Image.fromarray(_film(rng, dpi=100, bits=8)).save(out / "no_label.png", dpi=(100, 100))
    odd = ["RADIOLOGY / ROENTGEN", "PT-REF 4471-AB  //  XR CHEST", "SEEN 1999 JAN 01 BY DR. X"]
    with mock.patch.object(synth, "label_lines", lambda *a, **k: odd):
        Image.fromarray(_film(rng, dpi=100, bits=8)).save(out / "unknown_layout.png", dpi=(100, 100))

    photo = Image.open(DATA / "photos_of_displayed_xrays" / "41182_2020_203_Fig3_HTML.jpg")
    photo.convert("RGB").save(out / "photo_of_screen.jpg", quality=85)
    _tiff(good8.astype(np.uint16), out / "sixteen_bit_8_used.tif")  # 16-bit container, values 0..255
    spaced = out / "path with spaces"
    spaced.mkdir()
    Image.fromarray(good8).save(spaced / "Fïlm ñame çopy.png", dpi=(60, 60))


def add_special(folder: Path) -> list[str]:
    """Add the run-time-only items to ``folder``; returns their relative paths.

    - ``fifo.tif``: a named pipe (opening it for reading would block forever);
      stands in for "permission denied", which root -- who runs CI -- bypasses.
    - ``device_link.tif``: symbolic link to ``/dev/zero`` (endless bytes).
    - ``loop_a.tif`` <-> ``loop_b.tif``: a symbolic-link loop between two files.
    - ``dangling_link.png``: link to a file that does not exist.
    - ``folder_named.tif/``: a folder named like a scan (its contents would be scanned; it is empty).
    - ``subdir/up`` -> ``..``: a folder link loop (links to folders are not followed).
    """
    folder = Path(folder)
    os.mkfifo(folder / "fifo.tif")
    os.symlink("/dev/zero", folder / "device_link.tif")
    os.symlink("loop_b.tif", folder / "loop_a.tif")
    os.symlink("loop_a.tif", folder / "loop_b.tif")
    os.symlink("no_such_scan.png", folder / "dangling_link.png")
    (folder / "folder_named.tif").mkdir()
    (folder / "subdir").mkdir()
    os.symlink("..", folder / "subdir" / "up")
    return list(SPECIAL)


def make_manifests(out: Path = MANIFESTS) -> None:
    """Write the faulty manifests (all patient data invented)."""
    out.mkdir(parents=True, exist_ok=True)
    head = "scan_file,patient_id,patient_name,birth_date,study_date,accession_number\n"
    ok = "a.tif,99000001,TESTPERSON^ONE,1960-01-01,1999-01-01,Z1\n"
    (out / "missing_columns.csv").write_text("scan_file,patient_id,patient_name\na.tif,99000001,TESTPERSON^ONE\n", encoding="utf-8")
    (out / "duplicate_rows.csv").write_text(head + ok + ok, encoding="utf-8")
    (out / "latin1.csv").write_bytes((head + ok + "b.tif,99000002,MÜLLER^JOSÉ,1961-02-02,1999-02-02,Z2\n").encode("latin-1"))
    (out / "bad_date.csv").write_text(head + "a.tif,99000001,TESTPERSON^ONE,1960-01-01,31.02.1990,Z1\n", encoding="utf-8")
    (out / "empty.csv").write_bytes(b"")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--special", type=Path, help="add the run-time-only items to this folder and exit")
    a = ap.parse_args()
    if a.special:
        add_special(a.special)
        return
    make_scans()
    make_manifests()


if __name__ == "__main__":
    main()
