"""Preview images for the review page, rendered from the real pixels.

* original: the scan file as read by :func:`pipeline.scan_io.load_scan`;
* processed: the same scan re-straightened by :func:`pipeline.geometry.straighten`
  (after the polarity inversion the pipeline recorded), i.e. the film the DICOM
  object is made of, before denoise;
* label: the crop ``record['label_box']`` (row0, col0, row1, col1) of the
  processed film.

Each is downscaled (area interpolation) to at most ``max_side`` pixels and
windowed to 8 bits for display only: window centre and width are given in
percent of full scale (``2**bits_stored - 1``); without them the window spans
the 1st..99th percentiles. Nothing is written next to the originals; rendered
PNGs are cached in memory only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from filmflow.config import Settings
from pipeline import geometry, polarity, scan_io, scratches

KINDS = ("original", "processed", "label")
#: Allowed preview sizes (longest side, pixels): the page asks for one of these.
SIZES = (256, 512, 900, 1400, 2400)


class PreviewError(Exception):
    """A preview cannot be rendered (file missing, film not found, no label box)."""


@dataclass(frozen=True)
class Window:
    """Display window in percent of full scale; ``None`` = automatic (1st..99th percentile)."""

    center: float | None = None
    width: float | None = None

    @classmethod
    def parse(cls, center: Any, width: Any) -> "Window":
        c = _clamp_float(center, 0.0, 100.0)
        w = _clamp_float(width, 0.1, 200.0)
        return cls(c, w) if c is not None and w is not None else cls()


def _clamp_float(v: Any, lo: float, hi: float) -> float | None:
    if v in (None, ""):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(f):
        return None
    return round(min(hi, max(lo, f)), 2)


def downscale(image: np.ndarray, max_side: int) -> np.ndarray:
    """Area-downscale ``image`` (M, N) so its longest side is at most ``max_side``; returns float32."""
    rows, cols = image.shape
    scale = min(1.0, max_side / max(rows, cols))
    img = image.astype(np.float32)  # display copy only; the pixels themselves are untouched
    if scale < 1.0:
        img = cv2.resize(img, (max(1, round(cols * scale)), max(1, round(rows * scale))), interpolation=cv2.INTER_AREA)
    return img


def window_to_uint8(image: np.ndarray, *, bits_stored: int, window: Window) -> np.ndarray:
    """Map ``image`` (float, stored-value units) through a linear window to uint8 for display."""
    full = float(2**bits_stored - 1)
    if window.center is None or window.width is None:
        lo, hi = (float(v) for v in np.percentile(image, [1, 99]))
        if hi <= lo:
            lo, hi = float(image.min()), float(image.max()) or 1.0
    else:
        c, w = window.center / 100.0 * full, window.width / 100.0 * full
        lo, hi = c - w / 2, c + w / 2
    out = (image - lo) * (255.0 / max(hi - lo, 1e-6))
    return np.clip(out, 0, 255).astype(np.uint8)


def encode_png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise PreviewError("PNG encoding failed")
    return buf.tobytes()


def original_pixels(source_path: str, settings: Settings) -> tuple[np.ndarray, int]:
    """The scan's pixels (read-only) and bits stored."""
    scan = scan_io.load_scan(Path(source_path), default_dpi=settings.scan.default_dpi, max_pixels=settings.scan.max_pixels)
    return scan.pixels, scan.bits_stored


def processed_pixels(source_path: str, record: dict[str, Any], settings: Settings) -> tuple[np.ndarray, int]:
    """The straightened film as the pipeline produced it (polarity, deskew, crop, quarter turns),
    with the film scratches inpainted when the flow inpainted any (``scratches_repaired`` in the
    record: the reviewer must see what the repair removed); not denoised."""
    scan = scan_io.load_scan(Path(source_path), default_dpi=settings.scan.default_dpi, max_pixels=settings.scan.max_pixels)
    pixels = scan.pixels
    if record.get("inverted"):  # the flow's own inversion, so the preview shows the same values
        pixels = polarity.invert(pixels, bits_stored=scan.bits_stored)
    margin_px = int(round(settings.geometry.bed_margin_mm / 25.4 * scan.dpi))
    try:
        film, _geom = geometry.straighten(pixels, max_skew_deg=settings.geometry.max_skew_deg, margin_px=margin_px,
                                          content_min_confidence=settings.geometry.content_skew_min_confidence)
    except Exception as exc:  # FilmNotFoundError and friends: show the reason, not a broken image
        raise PreviewError(f"the film could not be re-straightened for preview ({type(exc).__name__})") from exc
    if record.get("scratches_repaired"):  # as flows/film.py does: before any quarter turn (forced or the label's)
        film, _report = scratches.repair_scratches(film, dpi=scan.dpi)
    turns = int((record.get("geometry") or {}).get("rotation_k") or 0)
    if turns:  # the orientation the pipeline decided (label upside down) or a reviewer forced
        film = np.ascontiguousarray(np.rot90(film, turns))
    return film, scan.bits_stored


def label_pixels(film: np.ndarray, record: dict[str, Any]) -> np.ndarray:
    """The label crop of the processed film, with a small margin."""
    box = record.get("label_box")
    if not box or len(box) != 4:
        raise PreviewError("no label was found on this film")
    r0, c0, r1, c1 = (int(v) for v in box)
    # generous context: a tight label box may clip the first characters, and the reviewer must see them
    pr, pc = max(8, (r1 - r0) // 4), max(8, (c1 - c0) // 8)
    r0, c0 = max(0, r0 - pr), max(0, c0 - pc)
    r1, c1 = min(film.shape[0], r1 + pr), min(film.shape[1], c1 + pc)
    if r1 <= r0 or c1 <= c0:
        raise PreviewError("the label box lies outside the film")
    return film[r0:r1, c0:c1]


class PreviewCache:
    """Renders previews and keeps the last few films' pixels and PNGs in memory (thread-safe)."""

    def __init__(self, settings: Settings, *, films: int = 3, pngs: int = 96) -> None:
        self.settings = settings
        self._films: OrderedDict[tuple[str, str, str], tuple[np.ndarray, int]] = OrderedDict()
        self._pngs: OrderedDict[tuple, bytes] = OrderedDict()
        self._max_films, self._max_pngs = films, pngs
        self._lock = threading.Lock()

    def _pixels(self, kind: str, source_path: str, sha256: str, record: dict[str, Any]) -> tuple[np.ndarray, int]:
        base = "original" if kind == "original" else "processed"
        key = (base, source_path, sha256)
        with self._lock:
            if key in self._films:
                self._films.move_to_end(key)
                return self._films[key]
        loader: Callable[[], tuple[np.ndarray, int]]
        if base == "original":
            loader = lambda: original_pixels(source_path, self.settings)  # noqa: E731
        else:
            loader = lambda: processed_pixels(source_path, record, self.settings)  # noqa: E731
        try:
            value = loader()
        except PreviewError:
            raise
        except Exception as exc:  # unreadable/missing scan: a message for the page
            raise PreviewError(f"the scan could not be read for preview ({type(exc).__name__})") from exc
        with self._lock:
            self._films[key] = value
            while len(self._films) > self._max_films:
                self._films.popitem(last=False)
        return value

    def render(self, kind: str, source_path: str, sha256: str, record: dict[str, Any], *, size: int, window: Window) -> bytes:
        """PNG bytes of one preview.

        Raises
        ------
        PreviewError
        """
        if kind not in KINDS:
            raise PreviewError("unknown preview kind")
        size = min(SIZES, key=lambda s: abs(s - size))
        key = (kind, source_path, sha256, size, window, tuple(record.get("label_box") or ()))
        with self._lock:
            if key in self._pngs:
                self._pngs.move_to_end(key)
                return self._pngs[key]
        pixels, bits = self._pixels(kind, source_path, sha256, record)
        if kind == "label":
            pixels = label_pixels(pixels, record)
        img = window_to_uint8(downscale(pixels, size), bits_stored=bits, window=window)
        png = encode_png(img)
        with self._lock:
            self._pngs[key] = png
            while len(self._pngs) > self._max_pngs:
                self._pngs.popitem(last=False)
        return png
