"""Property tests (issue 8): parsers and the scan loader raise only filmflow's documented errors.

- ``pipeline.scan_io.load_scan`` on random bytes, on mutated real image files
  (TIFF/PNG/JPEG headers with random bytes flipped or cut), and on random small
  images of every dtype/mode: either a Scan (2-D uint8/uint16, never written
  to) or a :class:`filmflow.errors.FilmError` subclass -- nothing else.
- ``pipeline.label_fields.parse_date`` on random text: a DA string (8 digits,
  a real date) or ``ValueError`` (documented).
- ``pipeline.label_fields.parse_label`` and ``parse_person_name`` on random
  OCR lines/text: never raise.

Hypothesis runs derandomized with a fixed number of examples (reproducible in CI).
"""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from filmflow.config import OCRConfig
from filmflow.errors import FilmError
from pipeline import label_fields
from pipeline.scan_io import load_scan
from pipeline.types import OcrLine, OcrWord

SETTINGS = settings(derandomize=True, max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _load(tmp_path, data: bytes):
    p = tmp_path / "scan.bin"
    p.write_bytes(data)
    try:
        scan = load_scan(p, default_dpi=150.0, max_pixels=4_000_000)
    except FilmError:
        return None
    assert scan.pixels.ndim == 2 and scan.pixels.dtype in (np.uint8, np.uint16)
    assert not scan.pixels.flags.writeable
    assert p.read_bytes() == data  # never written
    return scan


def _encoded(fmt: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(80, 96), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **({"compression": "tiff_deflate"} if fmt == "TIFF" else {}))
    return buf.getvalue()


BASES = {fmt: _encoded(fmt, i) for i, fmt in enumerate(("TIFF", "PNG", "JPEG"))}


@SETTINGS
@given(data=st.binary(max_size=2048))
def test_random_bytes_only_film_errors(tmp_path, data):
    _load(tmp_path, data)


@SETTINGS
@given(fmt=st.sampled_from(sorted(BASES)), cut=st.integers(0, 4000),
       flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=8))
def test_mutated_images_only_film_errors(tmp_path, fmt, cut, flips):
    data = bytearray(BASES[fmt])
    for pos, val in flips:
        data[pos % len(data)] = val
    if cut:
        data = data[: max(1, len(data) - cut)]
    _load(tmp_path, bytes(data))


@SETTINGS
@given(h=st.integers(1, 160), w=st.integers(1, 160), seed=st.integers(0, 2**32 - 1),
       kind=st.sampled_from(["L", "I;16", "RGB", "RGBA", "LA", "P", "1", "F", "I", "CMYK"]),
       fmt=st.sampled_from(["TIFF", "PNG", "JPEG"]))
def test_random_small_images(tmp_path, h, w, seed, kind, fmt):
    rng = np.random.default_rng(seed)
    if kind == "I;16":
        im = Image.fromarray(rng.integers(0, 65536, size=(h, w), dtype=np.uint16))
    elif kind == "F":
        im = Image.fromarray(rng.random((h, w), dtype=np.float32))
    elif kind == "I":
        im = Image.fromarray(rng.integers(-(2**31), 2**31 - 1, size=(h, w), dtype=np.int32))
    else:
        im = Image.fromarray(rng.integers(0, 256, size=(h, w), dtype=np.uint8)).convert(kind)
    buf = io.BytesIO()
    try:
        im.save(buf, format=fmt)
    except (OSError, KeyError, ValueError):
        return  # Pillow cannot write this mode in this format: nothing to test
    scan = _load(tmp_path, buf.getvalue())
    if scan is not None:
        assert min(scan.pixels.shape) >= 64
        assert scan.pixels.shape == (h, w)


@SETTINGS
@given(text=st.text(max_size=40))
def test_parse_date_returns_a_real_date_or_value_error(text):
    for order in ("MDY", "DMY"):
        try:
            da = label_fields.parse_date(text, date_order=order, pivot=30)
        except ValueError:
            continue
        assert len(da) == 8 and da.isdigit()
        dt.date(int(da[:4]), int(da[4:6]), int(da[6:]))


@SETTINGS
@given(text=st.from_regex(r"[0-9OIlSB]{1,4}[./ -][0-9A-Za-z]{1,4}[./ -][0-9OIl]{2,4}", fullmatch=True))
def test_parse_date_on_date_like_text(text):
    try:
        da = label_fields.parse_date(text)
    except ValueError:
        return
    dt.date(int(da[:4]), int(da[4:6]), int(da[6:]))


def _lines(texts: list[str]) -> list[OcrLine]:
    return [OcrLine(words=tuple(OcrWord(text=w, confidence=90.0) for w in t.split())) for t in texts]


KEYISH = st.sampled_from(["NAME:", "ID:", "DOB:", "DATE:", "ACC:", "SEX:", "1D:", "D0B:", "MRN", "HOSP NO", ":", "^", ","])


@SETTINGS
@given(texts=st.lists(st.lists(st.one_of(KEYISH, st.text(min_size=1, max_size=12).filter(lambda s: s.strip())),
                               max_size=8).map(" ".join), max_size=6))
def test_parse_label_never_raises(texts):
    fields = label_fields.parse_label(_lines(texts), config=OCRConfig())
    assert set(fields) <= set(label_fields.KEYS) | {"InstitutionName"}
    for kw, fv in fields.items():
        assert isinstance(fv.value, str)
        if kw in ("PatientBirthDate", "StudyDate") and fv.value:
            dt.date(int(fv.value[:4]), int(fv.value[4:6]), int(fv.value[6:8]))


@SETTINGS
@given(text=st.text(max_size=60), order=st.sampled_from(["family_first", "given_first"]))
def test_parse_person_name_never_raises(text, order):
    pn = label_fields.parse_person_name(text, order=order)
    assert isinstance(pn, str) and pn.count("^") <= 4
