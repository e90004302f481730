"""The one wrapper around Tesseract, through tesserocr or pytesseract.

Two engines behind the same functions (:func:`ocr_lines`, :func:`ocr_boxes`,
:func:`tesseract_version`), chosen by :attr:`~filmflow.config.OCRConfig.engine`:

* ``tesserocr`` -- the Tesseract library bundled in the tesserocr wheel, with
  Debian's ``tessdata`` models; one loaded engine per thread and process (films
  run in parallel threads or Dask workers), so a call costs no start-up
  (~0.09 s per call with the program);
* ``pytesseract`` -- the ``tesseract`` program, one run per call (``image_to_data``);
* ``auto`` -- tesserocr when it can be imported, else pytesseract.

Availability check and version probe, a size guard, a timeout from
:class:`~filmflow.config.OCRConfig`, ``OMP_THREAD_LIMIT=1`` (set before the
library is loaded and inherited by the program; Tesseract's OpenMP threads make
it ~3x slower on a shared machine), the page segmentation mode and an optional
character whitelist per call. Tesseract's messages are logged at debug level.
"""

from __future__ import annotations

import functools
import glob
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytesseract

from filmflow.config import OCRConfig
from filmflow.errors import OCRError, ToolMissingError
from pipeline.types import OcrLine, OcrWord

__all__ = ["tesseract_version", "ocr_lines", "ocr_boxes", "ocr_engine", "BoxedWord", "MAX_OCR_PIXELS"]

log = logging.getLogger(__name__)

#: Size guard: label crops are small; anything bigger is a caller's bug.
MAX_OCR_PIXELS = 40_000_000


@functools.lru_cache(maxsize=8)
def _version(cmd: str) -> str:
    if shutil.which(cmd) is None:
        raise ToolMissingError(
            f"tesseract not found as {cmd!r}: install Debian's tesseract-ocr and tesseract-ocr-eng, "
            "or set ocr.tesseract_cmd to its path"
        )
    pytesseract.pytesseract.tesseract_cmd = cmd
    try:
        return str(pytesseract.get_tesseract_version())
    except (pytesseract.TesseractNotFoundError, OSError) as exc:
        raise ToolMissingError(f"tesseract at {cmd!r} cannot be run ({exc}); check ocr.tesseract_cmd") from exc


def tesseract_version(config: OCRConfig | None = None) -> str:
    """Version of the Tesseract that :func:`ocr_lines` runs, e.g. ``'5.3.0'``.

    Parameters
    ----------
    config : OCRConfig, optional
        ``engine`` picks the library bundled with tesserocr or the program
        ``tesseract_cmd`` (default ``tesseract`` on PATH).

    Returns
    -------
    str

    Raises
    ------
    ToolMissingError
        When the program is not installed or cannot be run (pytesseract), or
        tesserocr is asked for but not installed.
    """
    config = config or OCRConfig()
    if ocr_engine(config) == "tesserocr":
        m = re.search(r"tesseract\s+(\S+)", _tesserocr().tesseract_version())
        return m.group(1) if m else "unknown"
    return _version(config.tesseract_cmd)


def ocr_engine(config: OCRConfig | None = None) -> str:
    """The engine :func:`ocr_lines` uses under ``config``: ``'tesserocr'`` or ``'pytesseract'``.

    ``auto`` resolves to tesserocr when the module can be imported.

    Raises
    ------
    ToolMissingError
        ``engine = 'tesserocr'`` but tesserocr is not installed.
    """
    engine = (config or OCRConfig()).engine
    if engine == "pytesseract":
        return engine
    if engine == "auto":
        return "tesserocr" if _tesserocr_importable() else "pytesseract"
    _tesserocr()
    return "tesserocr"


@functools.lru_cache(maxsize=1)
def _tesserocr_importable() -> bool:
    try:
        _tesserocr()
    except ToolMissingError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def _tesserocr():
    """The tesserocr module, imported after ``OMP_THREAD_LIMIT`` is set (OpenMP reads it on load)."""
    _limit_threads()
    try:
        import tesserocr
    except ImportError as exc:
        raise ToolMissingError(
            "tesserocr is not installed (pip install tesserocr), or set ocr.engine = 'pytesseract'"
        ) from exc
    return tesserocr


@functools.lru_cache(maxsize=8)
def _tessdata(configured: str, cmd: str, lang: str) -> str:
    """The tessdata folder holding ``{lang}.traineddata`` for each ``+``-joined language."""
    def has(d: str) -> bool:
        return bool(d) and all(os.path.isfile(os.path.join(d, f"{x}.traineddata")) for x in lang.split("+"))

    if configured:
        if has(configured):
            return configured
        raise ToolMissingError(f"ocr.tessdata_dir {configured!r} holds no {lang}.traineddata")
    tried = [os.environ.get("TESSDATA_PREFIX", "")]
    if shutil.which(cmd) is not None:
        try:  # 'List of available languages in "/usr/share/tesseract-ocr/5/tessdata/" (2):'
            out = subprocess.run([cmd, "--list-langs"], capture_output=True, text=True, timeout=30)
            m = re.search(r'"([^"]+)"', out.stdout + out.stderr)
            if m:
                tried.append(m.group(1))
        except (OSError, subprocess.SubprocessError):
            pass
    tried += sorted(glob.glob("/usr/share/tesseract-ocr/*/tessdata"), reverse=True)
    tried += ["/usr/share/tessdata", "/usr/local/share/tessdata"]
    for d in tried:
        if has(d):
            return d
    raise ToolMissingError(
        f"no tessdata folder with {lang}.traineddata found: install Debian's tesseract-ocr-{lang.split('+')[0]}, "
        "or set ocr.tessdata_dir (or TESSDATA_PREFIX)"
    )


_local = threading.local()


def _api(config: OCRConfig):
    """This thread's loaded tesserocr engine for ``config``'s language and tessdata (one per
    thread and process: an engine is not thread-safe, and a forked worker must not share
    its parent's)."""
    tesserocr = _tesserocr()
    path = _tessdata(config.tessdata_dir, config.tesseract_cmd, config.lang)
    key = (os.getpid(), path, config.lang)
    apis = getattr(_local, "apis", None)
    if apis is None:
        apis = _local.apis = {}
    api = apis.get(key)
    if api is None:
        try:
            api = tesserocr.PyTessBaseAPI(path=path, lang=config.lang, oem=tesserocr.OEM.DEFAULT)
        except RuntimeError as exc:
            raise ToolMissingError(
                f"tesserocr cannot load language {config.lang!r} from {path!r}; check ocr.tessdata_dir"
            ) from exc
        apis[key] = api
    return api


@dataclass(frozen=True)
class BoxedWord:
    """A word read by Tesseract and where it is: ``box`` (row0, col0, row1, col1), half-open,
    in the pixels of the image that was read; ``symbols`` its characters, each with its box
    (same convention), in reading order -- given by the tesserocr engine only (empty with
    pytesseract, whose ``image_to_data`` stops at words)."""

    word: OcrWord
    box: tuple[int, int, int, int]
    symbols: tuple[tuple[str, tuple[int, int, int, int]], ...] = ()


def _limit_threads() -> None:
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")


def ocr_lines(
    image: np.ndarray,
    *,
    config: OCRConfig,
    psm: int = 6,
    whitelist: str | None = None,
) -> list[OcrLine]:
    """Run Tesseract on a prepared image and return its text lines.

    Parameters
    ----------
    image : ndarray of shape (M, N), uint8
        Prepared (upright, rescaled) grayscale image, dark text on light.
    config : OCRConfig
        ``engine``, ``tesseract_cmd``, ``tessdata_dir``, ``lang``, ``timeout_s``.
    psm : int
        Tesseract page segmentation mode (6 = a uniform block of text,
        7 = one line, 10 = one character, 11 = sparse text, 3 = automatic).
    whitelist : str, optional
        Characters Tesseract may output (``tessedit_char_whitelist``); spaces
        are always allowed (Tesseract 5 drops word gaps otherwise).

    Returns
    -------
    list of OcrLine
        Lines in Tesseract's reading order; each word with its confidence
        (0..100). Empty when nothing was read. :func:`ocr_boxes` also gives
        each word's box.

    Raises
    ------
    ToolMissingError
        Tesseract (the program, or tesserocr and the ``tessdata`` models) is not installed.
    OCRError
        Tesseract failed or exceeded ``config.timeout_s``.
    ValueError
        ``image`` is not a 2-D uint8 array or exceeds :data:`MAX_OCR_PIXELS`.

    Notes
    -----
    Sets ``OMP_THREAD_LIMIT=1`` in :data:`os.environ` when it is not set, before
    tesserocr is loaded; the Tesseract subprocess inherits it. With tesserocr the
    engine of the calling thread is reused (``SetPageSegMode``, ``SetVariable``,
    ``Recognize(timeout=...)``, then a result iterator at word level); see the
    tesserocr README and Tesseract's ``baseapi.h``.
    """
    return [OcrLine(tuple(b.word for b in ln)) for ln in ocr_boxes(image, config=config, psm=psm, whitelist=whitelist)]


def ocr_boxes(
    image: np.ndarray,
    *,
    config: OCRConfig,
    psm: int = 6,
    whitelist: str | None = None,
) -> list[list[BoxedWord]]:
    """:func:`ocr_lines` with each word's box: lines of :class:`BoxedWord`, same errors."""
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"ocr_lines needs a 2-D uint8 image, got {image.dtype} {image.shape}")
    if image.size > MAX_OCR_PIXELS:
        raise ValueError(f"image of {image.size} pixels exceeds the OCR size guard ({MAX_OCR_PIXELS})")
    if ocr_engine(config) == "tesserocr":
        return _boxes_tesserocr(image, config=config, psm=psm, whitelist=whitelist)
    return _boxes_pytesseract(image, config=config, psm=psm, whitelist=whitelist)


def _whitelist(whitelist: str | None) -> str:
    # the space must be in the whitelist or Tesseract 5 drops word gaps
    if not whitelist:
        return ""
    return whitelist if " " in whitelist else whitelist + " "


def _boxes_tesserocr(image: np.ndarray, *, config: OCRConfig, psm: int, whitelist: str | None):
    from PIL import Image

    tesserocr = _tesserocr()
    api = _api(config)
    api.SetPageSegMode(int(psm))
    api.SetVariable("tessedit_char_whitelist", _whitelist(whitelist))
    api.SetImage(Image.fromarray(np.ascontiguousarray(image)))
    t0 = time.monotonic()
    ok = api.Recognize(timeout=max(1, int(round(config.timeout_s * 1000))))
    if not ok:
        api.Clear()
        if time.monotonic() - t0 >= 0.9 * config.timeout_s:
            raise OCRError(f"tesseract timed out after {config.timeout_s:g} s; raise ocr.timeout_s if labels are large")
        raise OCRError("tesseract (tesserocr) failed to recognise the image")
    lines: list[list[BoxedWord]] = []
    ril = tesserocr.RIL
    ri = api.GetIterator()
    if ri is not None:
        # symbol by symbol: a word is taken at its first symbol, its symbols' boxes gathered after
        word: tuple[OcrWord, tuple[int, int, int, int]] | None = None
        symbols: list[tuple[str, tuple[int, int, int, int]]] = []

        def flush() -> None:
            if word is not None:
                lines[-1].append(BoxedWord(word[0], word[1], tuple(symbols)))

        for sym in tesserocr.iterate_level(ri, ril.SYMBOL):
            if sym.IsAtBeginningOf(ril.WORD):
                flush()
                word, symbols = None, []
                if sym.IsAtBeginningOf(ril.TEXTLINE) or not lines:
                    lines.append([])
                try:
                    text = (sym.GetUTF8Text(ril.WORD) or "").strip()
                except RuntimeError:  # tesserocr: "No text returned" (an empty page)
                    continue
                conf = float(sym.Confidence(ril.WORD))
                bb = sym.BoundingBox(ril.WORD)
                if not text or conf < 0 or bb is None:
                    continue
                x0, y0, x1, y1 = (int(v) for v in bb)
                word = (OcrWord(text, conf), (y0, x0, y1, x1))
            if word is None:
                continue
            try:
                ch = sym.GetUTF8Text(ril.SYMBOL) or ""
            except RuntimeError:
                continue
            bb = sym.BoundingBox(ril.SYMBOL)
            if ch.strip() and bb is not None:
                x0, y0, x1, y1 = (int(v) for v in bb)
                symbols.append((ch.strip(), (y0, x0, y1, x1)))
        flush()
    api.Clear()
    return [ln for ln in lines if ln]


def _boxes_pytesseract(image: np.ndarray, *, config: OCRConfig, psm: int, whitelist: str | None):
    tesseract_version(config)
    _limit_threads()
    pytesseract.pytesseract.tesseract_cmd = config.tesseract_cmd
    opts = f"--psm {int(psm)} -c preserve_interword_spaces=0"
    if whitelist:
        # pytesseract splits the config with shlex: quote the whitelist
        opts += " -c tessedit_char_whitelist=" + _shell_quote(_whitelist(whitelist))
    try:
        data = pytesseract.image_to_data(
            image, lang=config.lang, config=opts, timeout=config.timeout_s, output_type=pytesseract.Output.DICT
        )
    except pytesseract.TesseractNotFoundError as exc:
        raise ToolMissingError(f"tesseract not found as {config.tesseract_cmd!r}") from exc
    except pytesseract.TesseractError as exc:
        log.debug("tesseract stderr: %s", exc.message)
        raise OCRError(f"tesseract failed (status {exc.status}); see the debug log for its stderr") from exc
    except RuntimeError as exc:  # pytesseract raises RuntimeError on timeout
        if "timeout" in str(exc).lower():
            raise OCRError(
                f"tesseract timed out after {config.timeout_s:g} s; raise ocr.timeout_s if labels are large"
            ) from exc
        raise
    groups: dict[tuple[int, int, int], list[BoxedWord]] = {}
    for i, text in enumerate(data["text"]):
        conf = float(data["conf"][i])
        if conf < 0 or not str(text).strip():
            continue
        key = (data["block_num"][i], data["par_num"][i], data["line_num"][i])
        top, left = int(data["top"][i]), int(data["left"][i])
        box = (top, left, top + int(data["height"][i]), left + int(data["width"][i]))
        groups.setdefault(key, []).append(BoxedWord(OcrWord(str(text).strip(), conf), box))
    return [ws for ws in groups.values() if ws]


def _shell_quote(s: str) -> str:
    import shlex

    return shlex.quote(s)
