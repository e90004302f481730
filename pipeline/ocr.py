"""The one wrapper around Tesseract (through pytesseract's ``image_to_data``).

Availability check and version probe (:func:`tesseract_version`), a size guard,
a timeout from :class:`~filmflow.config.OCRConfig`, ``OMP_THREAD_LIMIT=1`` for
the Tesseract process (its OpenMP threads make it ~3x slower on a shared
machine), the page segmentation mode and an optional character whitelist.
Tesseract's stderr is logged at debug level.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from dataclasses import dataclass

import numpy as np
import pytesseract

from filmflow.config import OCRConfig
from filmflow.errors import OCRError, ToolMissingError
from pipeline.types import OcrLine, OcrWord

__all__ = ["tesseract_version", "ocr_lines", "ocr_boxes", "BoxedWord", "MAX_OCR_PIXELS"]

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
    """Version of the installed Tesseract, e.g. ``'5.3.0'``.

    Parameters
    ----------
    config : OCRConfig, optional
        ``tesseract_cmd`` names the program (default ``tesseract`` on PATH).

    Returns
    -------
    str

    Raises
    ------
    ToolMissingError
        When the program is not installed or cannot be run.
    """
    return _version((config or OCRConfig()).tesseract_cmd)


@dataclass(frozen=True)
class BoxedWord:
    """A word read by Tesseract and where it is: ``box`` (row0, col0, row1, col1), half-open,
    in the pixels of the image that was read."""

    word: OcrWord
    box: tuple[int, int, int, int]


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
        ``tesseract_cmd``, ``lang``, ``timeout_s``.
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
        Tesseract is not installed.
    OCRError
        Tesseract failed or exceeded ``config.timeout_s``.
    ValueError
        ``image`` is not a 2-D uint8 array or exceeds :data:`MAX_OCR_PIXELS`.

    Notes
    -----
    Sets ``OMP_THREAD_LIMIT=1`` in :data:`os.environ` when it is not set; the
    Tesseract subprocess inherits it.
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
    tesseract_version(config)
    _limit_threads()
    pytesseract.pytesseract.tesseract_cmd = config.tesseract_cmd
    opts = f"--psm {int(psm)} -c preserve_interword_spaces=0"
    if whitelist:
        # the space must be in the whitelist or Tesseract 5 drops word gaps;
        # pytesseract splits the config with shlex: quote the whitelist
        wl = whitelist if " " in whitelist else whitelist + " "
        opts += " -c tessedit_char_whitelist=" + _shell_quote(wl)
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
