"""Read a scan file into a :class:`pipeline.types.Scan`.

The original file is read exactly once (its bytes are hashed and decoded from
memory) and never modified. Grayscale 8- and 16-bit TIFF, PNG and JPEG are
accepted; RGB/RGBA are converted to gray at their own bit depth.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import math
import struct
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from filmflow.errors import ScanTooLargeError, UnreadableScanError, UnsupportedScanError
from pipeline.types import Scan

log = logging.getLogger(__name__)

#: Smallest accepted scan side, pixels (anything smaller is a thumbnail, not a film scan).
MIN_SIDE_PX = 64
#: Plausible DPI range for resolution tags; values outside are treated as absent.
DPI_RANGE = (10.0, 10000.0)
#: ITU-R BT.601 luma weights used for RGB -> gray.
LUMA = (0.299, 0.587, 0.114)


def load_scan(path: str | Path, *, default_dpi: float, max_pixels: int) -> Scan:
    """Decode a scan file.

    Parameters
    ----------
    path : str or Path
        The scan file (TIFF, PNG or JPEG). Read once, never written.
    default_dpi : float
        Resolution used when the file carries no usable resolution tag.
    max_pixels : int
        Largest accepted declared pixel count (rows x cols); checked from the
        header before any pixel is decoded.

    Returns
    -------
    Scan
        ``pixels`` is an ndarray of shape (M, N), uint8 or uint16.

    Raises
    ------
    UnreadableScanError
        The file is empty, truncated, not an image, or cannot be read (permissions).
    UnsupportedScanError
        Multi-page TIFF, floating-point or 32-bit integer samples, colour palette,
        CMYK/other colour spaces, bilevel images, or smaller than 64 x 64 pixels.
    ScanTooLargeError
        The header declares more than ``max_pixels`` pixels.

    Notes
    -----
    DPI comes from TIFF XResolution/ResolutionUnit (inch or centimetre), PNG
    pHYs (per metre) or JPEG JFIF density, as decoded by Pillow into
    ``info['dpi']``. A TIFF without ResolutionUnit (or unit "none") has no
    physical resolution, so ``default_dpi`` is used and ``dpi_from_file`` is
    False. With different horizontal and vertical resolutions the horizontal
    one is used (a warning is logged).

    ``bits_stored`` is 8 for 8-bit files; for 16-bit files it is
    ``ceil(log2(max + 1))`` clamped to 12..16, since scanners deliver 12, 14 or
    16 significant bits in 16-bit containers.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except PermissionError:
        raise UnreadableScanError("scan file cannot be read (permission denied); check the file's permissions") from None
    except IsADirectoryError:
        raise UnreadableScanError("scan path is a folder, not a file") from None
    except OSError as exc:
        raise UnreadableScanError(f"scan file cannot be read ({exc.strerror or type(exc).__name__}); check the storage") from None
    if not data:
        raise UnreadableScanError("scan file is empty (0 bytes); rescan the film")
    sha = hashlib.sha256(data).hexdigest()

    pixels, dpi_xy, fmt = _decode(data, max_pixels)

    dpi, from_file = float(default_dpi), False
    if dpi_xy is not None:
        try:
            dx, dy = float(dpi_xy[0]), float(dpi_xy[1])
        except (TypeError, ValueError, IndexError):
            dx = dy = float("nan")
        if math.isfinite(dx) and DPI_RANGE[0] <= dx <= DPI_RANGE[1]:
            dpi, from_file = dx, True
            if math.isfinite(dy) and abs(dy - dx) > 0.01 * dx:
                log.warning("scan has non-square resolution (%.1f x %.1f dpi); using the horizontal value", dx, dy)
        else:
            log.warning("scan carries an implausible resolution tag (%r); using default_dpi=%s", dpi_xy, default_dpi)

    if pixels.dtype == np.uint8:
        bits = 8
    else:
        vmax = int(pixels.max())
        bits = min(16, max(12, math.ceil(math.log2(vmax + 1)) if vmax > 0 else 12))
    pixels.setflags(write=False)
    return Scan(pixels=pixels, dpi=dpi, dpi_from_file=from_file, bits_stored=bits, sha256=sha, source_format=fmt)


def _decode(data: bytes, max_pixels: int) -> tuple[np.ndarray, tuple | None, str]:
    """Decode ``data``; return (gray pixels, dpi tuple or None, format)."""
    try:
        # one decode at a time (decoding is a small part of a film's time): warnings.catch_warnings
        # swaps the process-wide filter list and is not thread-safe, and two calls at once left their
        # filters behind for the whole process. Damaged EXIF metadata does not touch the pixels (a
        # damaged image fails when decoded): Pillow's warning about it, raised when a TIFF's
        # directories are read (at open, at load, when frames are counted), is not shown.
        with _DECODE_LOCK, _pillow_guard_off(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Corrupt EXIF data", category=UserWarning)
            im = Image.open(io.BytesIO(data))
            fmt = im.format or "unknown"
            w, h = im.size  # the declared size: nothing is decoded yet
            if w * h > max_pixels:
                raise ScanTooLargeError(
                    f"scan declares {w} x {h} = {w * h} pixels, above scan.max_pixels={max_pixels}; "
                    "rescan at a lower resolution or raise the limit if the file is genuine"
                )
            if fmt not in ("TIFF", "PNG", "JPEG", "MPO"):
                raise UnsupportedScanError(f"scan is a {fmt} image; export it as TIFF, PNG or JPEG")
            if getattr(im, "n_frames", 1) > 1 and fmt != "MPO":
                raise UnsupportedScanError(
                    f"scan is a multi-page {fmt} ({im.n_frames} pages); export one film per file"
                )
            if min(w, h) < MIN_SIDE_PX:
                raise UnsupportedScanError(
                    f"scan is only {w} x {h} pixels (minimum {MIN_SIDE_PX} per side); is it a thumbnail?"
                )
            dpi = im.info.get("dpi")
            if fmt == "TIFF" and _tiff_is_16bit_colour(im):
                arr = _tiff_rgb16(data)
            else:
                im.load()
                arr = _to_gray(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ScanTooLargeError(
            f"scan declares more pixels than scan.max_pixels={max_pixels}; "
            "rescan at a lower resolution or raise the limit if the file is genuine"
        ) from None
    except (UnsupportedScanError, ScanTooLargeError, UnreadableScanError):
        raise
    except UnidentifiedImageError:
        raise UnreadableScanError(
            "scan is not a readable image (truncated, damaged, or not TIFF/PNG/JPEG); rescan or re-export it"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, struct.error) as exc:
        raise UnreadableScanError(
            f"scan cannot be decoded ({type(exc).__name__}: the file is truncated or damaged); rescan or re-export it"
        ) from None
    if arr.ndim != 2:
        raise UnsupportedScanError(f"scan decoded to an array of shape {arr.shape}; expected a 2-D grayscale image")
    return np.ascontiguousarray(arr), dpi, "TIFF" if fmt == "TIFF" else ("JPEG" if fmt in ("JPEG", "MPO") else fmt)


@contextlib.contextmanager
def _pillow_guard_off() -> Iterator[None]:
    """Pillow's own decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``, checked when a file is
    opened and when a TIFF is loaded) switched off for one decode, then restored. Call it under
    ``_DECODE_LOCK`` (one decode at a time), so that no two decodes save and restore it at once.

    :func:`load_scan` checks each scan's declared size against its own ``max_pixels`` before
    anything is decoded, so Pillow's process-wide default (89 Mpx) neither refuses a scan the
    configured limit allows nor leaves a smaller per-scan limit behind for the rest of the process
    (the old way set the global to each call's limit and never restored it). While a scan
    decodes, other Pillow users in the process have no guard either: filmflow opens untrusted
    files only through :func:`load_scan`.
    """
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


_DECODE_LOCK = threading.Lock()


def _tiff_is_16bit_colour(im: Image.Image) -> bool:
    tags = getattr(im, "tag_v2", {})
    bps = tags.get(258)
    spp = tags.get(277, 1)
    if isinstance(bps, (tuple, list)):
        bps = bps[0] if bps else None
    return bps == 16 and spp in (3, 4)


def _tiff_rgb16(data: bytes) -> np.ndarray:
    """16-bit RGB(A) TIFF (Pillow cannot keep its depth): decode with tifffile."""
    import tifffile

    arr = tifffile.imread(io.BytesIO(data))
    if arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise UnsupportedScanError(f"16-bit colour TIFF with layout {arr.shape}/{arr.dtype} is not supported; export as grayscale")
    return _luma(arr[..., :3], np.uint16)


def _luma(rgb: np.ndarray, dtype: type) -> np.ndarray:
    w = np.asarray(LUMA, dtype=np.float64)
    y = rgb.astype(np.float64) @ w
    return np.clip(np.rint(y), 0, np.iinfo(dtype).max).astype(dtype)


def _to_gray(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode == "L":
        return np.asarray(im, dtype=np.uint8)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(im).astype(np.uint16, copy=False)
    if mode == "I":
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise UnsupportedScanError("scan has 32-bit integer samples beyond 16 bits; export as 16-bit grayscale")
        return arr.astype(np.uint16)
    if mode == "LA":
        return np.asarray(im.getchannel("L"), dtype=np.uint8)
    if mode in ("RGB", "RGBA", "RGBX"):
        return _luma(np.asarray(im.convert("RGB")), np.uint8)
    if mode in ("P", "PA"):
        pal = np.asarray(im.getpalette() or [], dtype=np.int32).reshape(-1, 3)
        used = np.unique(np.asarray(im))
        used = used[used < len(pal)]
        colours = pal[used]
        if colours.size and np.all(colours == colours[:, :1]):
            return colours[:, 0].astype(np.uint8)[np.searchsorted(used, np.asarray(im))]
        raise UnsupportedScanError("scan uses a colour palette; export it as 8- or 16-bit grayscale")
    if mode == "F":
        raise UnsupportedScanError("scan has floating-point samples; export it as 8- or 16-bit integer grayscale")
    if mode == "CMYK":
        raise UnsupportedScanError("scan is CMYK (a print separation); export it as grayscale")
    if mode == "1":
        raise UnsupportedScanError("scan is bilevel (1 bit per pixel); rescan the film in grayscale")
    raise UnsupportedScanError(f"scan colour mode {mode} is not supported; export it as 8- or 16-bit grayscale")
