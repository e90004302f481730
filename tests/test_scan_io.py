"""pipeline.scan_io.load_scan: formats, DPI sources, bit depth, and every error class.

Inputs are generated in tmp_path from fixed arrays (no external files), except the
sample scans (sample_scans/SOURCES.md).
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from filmflow.errors import FilmflowError, ScanTooLargeError, UnreadableScanError, UnsupportedScanError
from pipeline.scan_io import load_scan

KW = {"default_dpi": 150.0, "max_pixels": 50_000_000}


def gradient(dtype, shape=(120, 100), top=None):
    top = top if top is not None else np.iinfo(dtype).max
    ramp = np.linspace(0, top, shape[0] * shape[1]).reshape(shape)
    return np.rint(ramp).astype(dtype)


@pytest.mark.parametrize(
    ("top", "bits"), [(4095, 12), (16383, 14), (65535, 16), (900, 12), (40000, 16)]
)
def test_tiff16_preserved_and_bits_stored(tmp_path, top, bits):
    arr = gradient(np.uint16, top=top)
    p = tmp_path / "s.tif"
    Image.fromarray(arr).save(p, compression="tiff_adobe_deflate", dpi=(300, 300))
    scan = load_scan(p, **KW)
    assert scan.pixels.dtype == np.uint16
    np.testing.assert_array_equal(scan.pixels, arr)
    assert scan.bits_stored == bits
    assert (scan.dpi, scan.dpi_from_file, scan.source_format) == (300.0, True, "TIFF")


def test_tiff_dpi_in_centimetres(tmp_path):
    p = tmp_path / "cm.tif"
    Image.fromarray(gradient(np.uint16, top=4095)).save(p, resolution_unit="cm", x_resolution=100 / 2.54, y_resolution=100 / 2.54)
    scan = load_scan(p, **KW)
    assert scan.dpi == pytest.approx(100.0, abs=0.01)
    assert scan.dpi_from_file


def test_tiff_without_resolution_uses_default(tmp_path):
    p = tmp_path / "nores.tif"
    tifffile.imwrite(p, gradient(np.uint16, top=4095), photometric="minisblack")
    scan = load_scan(p, default_dpi=123.0, max_pixels=10**7)
    assert (scan.dpi, scan.dpi_from_file) == (123.0, False)


def test_png8_phys(tmp_path):
    arr = gradient(np.uint8)
    p = tmp_path / "s.png"
    Image.fromarray(arr).save(p, dpi=(200, 200))
    scan = load_scan(p, **KW)
    assert scan.pixels.dtype == np.uint8 and scan.bits_stored == 8
    np.testing.assert_array_equal(scan.pixels, arr)
    assert scan.dpi == pytest.approx(200.0, abs=0.01) and scan.dpi_from_file


def test_png16(tmp_path):
    arr = gradient(np.uint16, top=16383)
    p = tmp_path / "s16.png"
    Image.fromarray(arr).save(p)
    scan = load_scan(p, **KW)
    assert scan.pixels.dtype == np.uint16 and scan.bits_stored == 14
    np.testing.assert_array_equal(scan.pixels, arr)
    assert not scan.dpi_from_file


def test_jpeg_jfif_density(tmp_path):
    p = tmp_path / "s.jpg"
    Image.fromarray(gradient(np.uint8)).save(p, quality=95, dpi=(96, 96))
    scan = load_scan(p, **KW)
    assert scan.source_format == "JPEG" and scan.pixels.dtype == np.uint8
    assert (scan.dpi, scan.dpi_from_file) == (96.0, True)


def test_rgb_to_gray_keeps_8_bits(tmp_path):
    rgb = np.zeros((80, 90, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    p = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(p)
    scan = load_scan(p, **KW)
    assert scan.pixels.shape == (80, 90) and scan.pixels.dtype == np.uint8
    assert int(scan.pixels[0, 0]) == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)


def test_rgba_to_gray(tmp_path):
    p = tmp_path / "rgba.png"
    Image.fromarray(np.full((70, 70, 4), 128, np.uint8)).save(p)
    scan = load_scan(p, **KW)
    assert scan.pixels.dtype == np.uint8 and int(scan.pixels.max()) == 128


def test_rgb16_tiff_to_gray16(tmp_path):
    rgb = np.zeros((70, 70, 3), np.uint16)
    rgb[...] = (4000, 2000, 1000)
    p = tmp_path / "rgb16.tif"
    tifffile.imwrite(p, rgb, photometric="rgb")
    scan = load_scan(p, **KW)
    assert scan.pixels.dtype == np.uint16
    assert int(scan.pixels[0, 0]) == round(0.299 * 4000 + 0.587 * 2000 + 0.114 * 1000)


def test_sha256_of_original_bytes_and_file_untouched(tmp_path):
    p = tmp_path / "s.tif"
    Image.fromarray(gradient(np.uint16, top=4095)).save(p)
    before = p.read_bytes()
    scan = load_scan(p, **KW)
    assert scan.sha256 == hashlib.sha256(before).hexdigest()
    assert p.read_bytes() == before
    assert not scan.pixels.flags.writeable


def test_sample_scans_load(sample_dir, sample_truth):
    for name, truth in sample_truth.items():
        if truth["expect"] == "failed":
            continue
        scan = load_scan(sample_dir / truth["scan_file"], **KW)
        assert scan.bits_stored == truth["bits_stored"], name
        if truth["dpi_in_file"]:
            assert scan.dpi == pytest.approx(truth["dpi"], rel=1e-3), name
        else:
            assert not scan.dpi_from_file and scan.dpi == KW["default_dpi"]


# --- errors ----------------------------------------------------------------------------------------
def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.tif"
    p.write_bytes(b"")
    with pytest.raises(UnreadableScanError, match="empty"):
        load_scan(p, **KW)


def test_truncated_tiff(tmp_path):
    p = tmp_path / "t.tif"
    Image.fromarray(gradient(np.uint16, (400, 300), 4095)).save(p, compression="tiff_adobe_deflate")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableScanError):
        load_scan(p, **KW)


def test_truncated_png(tmp_path):
    p = tmp_path / "t.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (300, 300), dtype=np.uint8)).save(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableScanError):
        load_scan(p, **KW)


def test_sample_broken_scan(sample_dir):
    with pytest.raises(UnreadableScanError):
        load_scan(sample_dir / "broken_scan.tif", **KW)


def test_text_file_named_tif(tmp_path):
    p = tmp_path / "notes.tif"
    p.write_text("this is not an image\n")
    with pytest.raises(UnreadableScanError, match="not a readable image"):
        load_scan(p, **KW)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_permission_denied(tmp_path):
    p = tmp_path / "locked.tif"
    Image.fromarray(gradient(np.uint8)).save(p)
    p.chmod(0)
    with pytest.raises(UnreadableScanError, match="permission"):
        load_scan(p, **KW)


def test_permission_denied_injected(tmp_path, monkeypatch):
    """Fault injection for the permission path (works when tests run as root)."""
    from pathlib import Path

    def deny(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(UnreadableScanError, match="permission"):
        load_scan(tmp_path / "x.tif", **KW)


def test_directory(tmp_path):
    with pytest.raises(UnreadableScanError):
        load_scan(tmp_path, **KW)


def test_huge_declared_dimensions_refused_before_decoding(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header(60000, 60000))
    with pytest.raises(ScanTooLargeError, match="max_pixels"):
        load_scan(p, default_dpi=150, max_pixels=100_000_000)


def test_just_over_the_limit(tmp_path):
    p = tmp_path / "s.png"
    Image.fromarray(gradient(np.uint8, (100, 100))).save(p)
    with pytest.raises(ScanTooLargeError):
        load_scan(p, default_dpi=150, max_pixels=100 * 100 - 1)
    assert load_scan(p, default_dpi=150, max_pixels=100 * 100).pixels.shape == (100, 100)


def test_limit_is_not_left_on_pillow(tmp_path):
    """A scan's max_pixels is Pillow's bomb guard for that scan only: a small limit once set
    used to stay process-wide, and a later, larger image opened by anyone in the process
    (the next film, a test, a review thumbnail) was refused as a bomb."""
    before = Image.MAX_IMAGE_PIXELS
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    Image.fromarray(gradient(np.uint8, (100, 100))).save(small)
    Image.fromarray(gradient(np.uint8, (300, 300))).save(big)
    assert load_scan(small, default_dpi=150, max_pixels=100 * 100).pixels.shape == (100, 100)
    assert Image.MAX_IMAGE_PIXELS == before
    with Image.open(big) as im:  # 9x the small scan's limit: would raise if that limit stayed
        assert im.size == (300, 300)
    with pytest.raises(ScanTooLargeError, match="declares 300 x 300 = 90000 pixels"):
        load_scan(big, default_dpi=150, max_pixels=100 * 100)
    assert Image.MAX_IMAGE_PIXELS == before


def test_pillow_default_limit_does_not_refuse_a_scan_the_config_allows(tmp_path, monkeypatch):
    """Pillow checks its own process-wide limit again when a TIFF is loaded; a scan within
    scan.max_pixels but above Pillow's limit (89 Mpx by default; 5000 px here) still loads."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    p = tmp_path / "s.tif"
    tifffile.imwrite(p, gradient(np.uint16, (100, 100)))
    assert load_scan(p, default_dpi=150, max_pixels=10**6).pixels.shape == (100, 100)
    assert Image.MAX_IMAGE_PIXELS == 5000


def test_concurrent_loads_leave_no_global_behind(tmp_path):
    """The flow loads scans from several threads at once: afterwards Pillow's limit and the
    warnings filters are what they were (per-call warnings.catch_warnings left filters behind)."""
    import threading
    import warnings

    p = tmp_path / "s.png"
    Image.fromarray(gradient(np.uint8, (120, 120))).save(p)
    filters, limit = list(warnings.filters), Image.MAX_IMAGE_PIXELS
    errors: list[Exception] = []

    def work(max_pixels):
        for _ in range(150):
            try:
                load_scan(p, default_dpi=150, max_pixels=max_pixels)
            except ScanTooLargeError:
                pass
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(m,)) for m in (1000, 10**8, 10**8, 1000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert Image.MAX_IMAGE_PIXELS == limit
    assert list(warnings.filters) == filters


def test_float_tiff(tmp_path):
    p = tmp_path / "f.tif"
    tifffile.imwrite(p, np.ones((80, 80), np.float32))
    with pytest.raises(UnsupportedScanError, match="floating-point"):
        load_scan(p, **KW)


def test_multipage_tiff(tmp_path):
    p = tmp_path / "m.tif"
    pages = [Image.fromarray(gradient(np.uint8)) for _ in range(2)]
    pages[0].save(p, save_all=True, append_images=pages[1:])
    with pytest.raises(UnsupportedScanError, match="multi-page"):
        load_scan(p, **KW)


def test_colour_palette(tmp_path):
    p = tmp_path / "p.png"
    im = Image.new("P", (80, 80))
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    im.save(p)
    with pytest.raises(UnsupportedScanError, match="palette"):
        load_scan(p, **KW)


def test_gray_palette_accepted(tmp_path):
    p = tmp_path / "g.png"
    im = Image.new("P", (80, 80), 1)
    im.putpalette([0, 0, 0, 77, 77, 77] + [0] * 762)
    im.save(p)
    scan = load_scan(p, **KW)
    assert scan.pixels.dtype == np.uint8 and int(scan.pixels[0, 0]) == 77


def test_cmyk(tmp_path):
    p = tmp_path / "c.tif"
    Image.new("CMYK", (80, 80)).save(p)
    with pytest.raises(UnsupportedScanError, match="CMYK"):
        load_scan(p, **KW)


def test_too_small(tmp_path):
    p = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((32, 200), np.uint8)).save(p)
    with pytest.raises(UnsupportedScanError, match="minimum"):
        load_scan(p, **KW)


def test_error_messages_carry_no_path(tmp_path):
    p = tmp_path / "DOE_JANE_00123456.tif"
    p.write_bytes(b"\x00" * 10)
    with pytest.raises(FilmflowError) as exc:
        load_scan(p, **KW)
    assert "DOE" not in str(exc.value) and "00123456" not in str(exc.value)
