"""Parse the OCR text of a flashed ID label into DICOM-formatted fields.

The label is a few ``KEY: value`` lines (see :mod:`filmflow.synth` for the
layout used by the sample scans)::

    ST. ELSEWHERE GENERAL HOSPITAL
    NAME: DOE, JANE
    ID: 00123456  DOB: 03/14/1956  SEX: F
    DATE: 2019-04-02  ACC: A1234567

Keys are found word by word (tolerant of OCR confusions such as ``1D`` for
``ID`` and ``D0B`` for ``DOB``); a value runs from its key to the next key on the
same line. A line without any key is taken as the institution name.

The functions here are pure: no image, no Tesseract.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Sequence

from rapidfuzz import fuzz

from filmflow.config import OCRConfig
from pipeline.types import FieldValue, OcrLine, OcrWord

__all__ = ["KEYS", "parse_label", "value_spans", "key_value_spans", "parse_date", "parse_ocr_date", "parse_person_name", "fix_digits", "apply_format"]

#: Label keys per DICOM keyword (upper case, without the trailing colon).
KEYS: dict[str, tuple[str, ...]] = {
    "PatientName": ("NAME", "PATIENT NAME", "PAT NAME", "PT NAME", "PATIENT", "PATIENT'S NAME", "NOM"),
    "PatientID": (
        "ID", "ID#", "ID NO", "MRN", "MR#", "MR NO", "MRN#", "HOSP NO", "HOSP NO.", "HOSP#", "HOSPITAL NO",
        "PATIENT ID", "PAT ID", "PT ID", "PID", "UNIT NO", "CHART", "CHART NO",
    ),
    "PatientBirthDate": ("DOB", "D.O.B", "D.O.B.", "BIRTH", "BIRTH DATE", "BIRTHDATE", "DATE OF BIRTH", "BORN"),
    "StudyDate": ("DATE", "EXAM", "EXAM DATE", "STUDY DATE", "DATE OF EXAM", "EXAMINED"),
    "AccessionNumber": ("ACC", "ACC#", "ACC NO", "ACCESSION", "ACCESSION NO", "ACCESSION#", "ACCN"),
    "PatientSex": ("SEX", "GENDER"),
}

_MONTHS = {m: i + 1 for i, m in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"))}
_MONTHS["SEPT"] = 9

#: OCR confusions corrected in fields known to be numeric (letter -> digit).
_TO_DIGIT = str.maketrans({"O": "0", "o": "0", "Q": "0", "D": "0", "I": "1", "l": "1", "|": "1", "i": "1",
                           "S": "5", "s": "5", "B": "8", "Z": "2", "z": "2", "G": "6", "T": "7"})
#: OCR confusions corrected in keys (digit -> letter).
_TO_LETTER = str.maketrans({"0": "O", "1": "I", "5": "S", "8": "B", "|": "I", "$": "S"})

#: Keys as Tesseract misreads them in small bold imprinter fonts (after :data:`_TO_LETTER`),
#: accepted only with key punctuation after them (``10:`` for ``ID:``, ``008:`` for ``DOB:``).
_KEY_MISREADS = {"IO": "PatientID", "TO": "PatientID", "LD": "PatientID", "OOB": "PatientBirthDate",
                 "DOOB": "PatientBirthDate", "DO8": "PatientBirthDate", "OATE": "StudyDate", "OOB.": "PatientBirthDate"}
#: Separators Tesseract produces for the PN component separator ``^``.
_CARET_LIKE = "^*\"“”„"
#: Family-name particles that start a multi-word family name.
_PARTICLES = frozenset({"VAN", "VON", "DER", "DEN", "DE", "DI", "DA", "DEL", "DELLA", "DU", "LA", "LE", "DOS", "DAS",
                        "BIN", "BEN", "AL", "EL", "TER", "TEN", "ST", "ST.", "MAC", "Y"})


# --------------------------------------------------------------------------------------------
# dates
# --------------------------------------------------------------------------------------------
def _year(y: str, pivot: int) -> int:
    if len(y) == 2:
        yy = int(y)
        return 2000 + yy if yy < pivot else 1900 + yy
    if len(y) == 4:
        return int(y)
    raise ValueError("year must have 2 or 4 digits")


def _da(y: int, m: int, d: int) -> str:
    if not 1800 <= y <= 2199:
        raise ValueError(f"year {y} out of range 1800..2199")
    _dt.date(y, m, d)  # raises ValueError for 31.02. and friends
    return f"{y:04d}{m:02d}{d:02d}"


def _month(tok: str) -> int | None:
    t = tok.upper().rstrip(".")
    if t in _MONTHS:
        return _MONTHS[t]
    # OCR confusions in month names: 0CT, N0V, AUC...
    t = t.translate(_TO_LETTER)
    if t in _MONTHS:
        return _MONTHS[t]
    if len(t) >= 3 and t[:3] in _MONTHS:  # APRIL, MARCH, ...
        return _MONTHS[t[:3]]
    return None


def parse_date(text: str, *, date_order: str = "MDY", pivot: int = 30) -> str:
    """Parse a date as printed on a label or in a manifest into DICOM DA.

    Parameters
    ----------
    text : str
        ``2019-04-02`` (ISO), ``2019/04/02``, ``20190402``, ``04/02/2019`` (US),
        ``02.04.2019`` (European, always day first), ``02-APR-2019``,
        ``02 APR 2019``, ``APR 02 2019``, two-digit-year variants of these
        (``04/02/19``, ``02-APR-19``). OCR confusions in the digit groups
        (``O``->0, ``I``/``l``->1, ``S``->5, ``B``->8) are corrected.
    date_order : {'MDY', 'DMY'}
        How to read ``NN/NN/YYYY`` and ``NN-NN-YYYY``. When only one reading is a
        valid date (a first group > 12), that reading is used.
    pivot : int
        Two-digit years ``YY < pivot`` are 20YY, others 19YY.

    Returns
    -------
    str
        ``YYYYMMDD``.

    Raises
    ------
    ValueError
        When ``text`` is not a date in a supported form, or names an impossible
        date (``31.02.1990``). The message does not repeat ``text``.

    References
    ----------
    DICOM PS3.5 section 6.2, Value Representation DA.
    """
    if date_order not in ("MDY", "DMY"):
        raise ValueError("date_order must be 'MDY' or 'DMY'")
    return _parse_date(text, date_order, pivot)


def parse_ocr_date(text: str, *, date_order: str = "MDY", pivot: int = 30) -> str:
    """:func:`parse_date` for OCR text, undoing a misread zero when that is unambiguous.

    Fonts with a dotted or slashed zero are read as ``8``, ``6`` or ``9`` now
    and then (``2019-04-82``). When ``text`` is not a valid date and exactly one
    way of turning such digits back into ``0`` gives a valid date, that date
    is returned.

    Raises
    ------
    ValueError
        As :func:`parse_date`, also when several corrections are possible.
    """
    try:
        return parse_date(text, date_order=date_order, pivot=pivot)
    except ValueError:
        pass
    pos = [i for i, c in enumerate(text) if c in "869"]
    if not pos or len(pos) > 8:
        raise ValueError("not a date")
    found: set[str] = set()
    for i in pos:
        try:
            found.add(parse_date(text[:i] + "0" + text[i + 1:], date_order=date_order, pivot=pivot))
        except ValueError:
            continue
    if len(found) != 1:
        raise ValueError("not a date, or not unambiguously correctable")
    return found.pop()


def _parse_date(text: str, date_order: str, pivot: int) -> str:
    s = text.replace(",", " ").strip().strip(".;:'\"`")  # a quote mark beside a date: a speck
    s = re.sub(r"\s*([./-])\s*", r"\1", s)  # "02 - APR - 2019" -> "02-APR-2019"
    parts = [p for p in re.split(r"[\s./-]+", s) if p]
    if not parts:
        raise ValueError("empty date")
    # month names anywhere
    named = [i for i, p in enumerate(parts) if re.search(r"[A-Za-z]{3,}", p) and _month(p)]
    if named and len(parts) == 3:
        i = named[0]
        mo = _month(parts[i])
        rest = [p.translate(_TO_DIGIT) for j, p in enumerate(parts) if j != i]
        if not all(r.isdigit() for r in rest):
            raise ValueError("not a date")
        if i == 1:  # DD-MON-YYYY
            d, y = rest
        elif i == 0:  # MON DD YYYY
            d, y = rest
        else:  # YYYY DD MON is not a thing; YYYY-MON-DD is
            y, d = rest
        if len(d) > 2:
            raise ValueError("not a date")
        return _da(_year(y, pivot), mo, int(d))
    digits = [p.translate(_TO_DIGIT) for p in parts]
    if not all(p.isdigit() for p in digits):
        raise ValueError("not a date")
    if len(digits) == 1:
        p = digits[0]
        if len(p) == 8:
            return _da(int(p[:4]), int(p[4:6]), int(p[6:]))
        raise ValueError("not a date")
    if len(digits) != 3:
        raise ValueError("not a date")
    a, b, c = digits
    if len(a) == 4:  # ISO order
        return _da(int(a), int(b), int(c))
    if len(a) > 2 or len(b) > 2 or len(c) not in (2, 4):
        raise ValueError("not a date")
    y = _year(c, pivot)
    sep_dot = "." in s and "/" not in s and "-" not in s
    order = "DMY" if sep_dot else date_order
    first, second = (int(a), int(b))
    try:
        return _da(y, first, second) if order == "MDY" else _da(y, second, first)
    except ValueError:
        if sep_dot:
            raise
        # the other reading, when the first group cannot be a month (e.g. 14/03/1956 with MDY)
        if order == "MDY" and first > 12:
            return _da(y, second, first)
        if order == "DMY" and second > 12:
            return _da(y, first, second)
        raise


# --------------------------------------------------------------------------------------------
# person names
# --------------------------------------------------------------------------------------------
def _clean_name_part(s: str) -> str:
    s = s.replace("’", "'").replace("‘", "'").replace("`", "'")
    s = re.sub(r"\s*-\s*", "-", s)  # "SMITH - JONES" -> "SMITH-JONES"
    s = re.sub(r"[^A-Za-zÀ-ÖØ-öø-ÿ0-9' .-]", " ", s)
    return " ".join(s.upper().split()).strip(" .-'")


def _pn(family: str, given: str = "", middle: str = "") -> str:
    comps = [_clean_name_part(family), _clean_name_part(given), _clean_name_part(middle)]
    while comps and not comps[-1]:
        comps.pop()
    return "^".join(comps)


def parse_person_name(text: str, *, order: str = "family_first") -> str:
    """Normalise a person name to DICOM PN ``FAMILY^GIVEN^MIDDLE``, upper case.

    Parameters
    ----------
    text : str
        ``DOE, JANE``, ``DOE^JANE^MARIE`` (also ``DOE*JANE`` or ``DOE"JANE``, as
        Tesseract reads ``^``), ``JANE DOE`` or ``DOE JANE`` (see ``order``).
        Apostrophes (``O'BRIEN``) and hyphens (``SMITH-JONES``) are kept; family
        names made of several words (``VAN DER BERG``, ``DE LA CRUZ``) are
        recognised by their particles when there is no comma.
    order : {'family_first', 'given_first'}
        Order of names separated by spaces only.

    Returns
    -------
    str
        PN value; empty trailing components are dropped (``DOE^JANE``).

    Notes
    -----
    Without ``^`` separators a label does not say where the given name ends
    and a middle name starts (``NGUYEN, THI MAI``): all given words stay in the
    given-name component (``NGUYEN^THI MAI``), no middle name is invented.

    References
    ----------
    DICOM PS3.5 section 6.2.1, Person Name (PN) value representation.
    """
    if order not in ("family_first", "given_first"):
        raise ValueError("order must be 'family_first' or 'given_first'")
    t = text.strip()
    for ch in _CARET_LIKE:
        t = t.replace(ch, "^")
    if "^" in t:
        comps = t.split("^")
        return _pn(comps[0], comps[1] if len(comps) > 1 else "", " ".join(comps[2:]))
    if "," in t:
        family, _, rest = t.partition(",")
        return _pn(family, rest.replace(",", " "))
    words = _clean_name_part(t).split()
    if not words:
        return ""
    if len(words) == 1:
        return _pn(words[0])
    if order == "family_first":
        n = 1
        while n < len(words) - 1 and words[n - 1] in _PARTICLES:
            n += 1
        return _pn(" ".join(words[:n]), " ".join(words[n:]))
    # given_first: GIVEN [MIDDLE...] FAMILY, the family starting at the first particle after the given name
    start = len(words) - 1
    for i in range(1, len(words) - 1):
        if words[i] in _PARTICLES:
            start = i
            break
    return _pn(" ".join(words[start:]), " ".join(words[:start]))


# --------------------------------------------------------------------------------------------
# identifiers
# --------------------------------------------------------------------------------------------
def fix_digits(text: str) -> str:
    """Correct OCR letter-for-digit confusions in an identifier that is mostly digits.

    A leading run of letters holding at least one letter other than
    ``O``/``I``/``l``/``D``/``Q`` (``A`` in ``A1234567``, ``B`` in ``B0234576``) is kept as a prefix; the rest is mapped ``O``->0, ``I``/``l``->1,
    ``S``->5, ``B``->8 (and ``Z``->2, ``G``->6) when at least half of it is
    digits already. Otherwise ``text`` is returned unchanged.
    """
    conf = "OoQDIl|iSsBZzGT"
    n = 0
    while n < len(text) and text[n].isalpha():
        n += 1
    # a leading letter run is a real prefix when it holds a letter that is not a usual confusion
    # a leading B/S/Z/G/T before digits is taken as a letter (accession numbers like B0234576)
    j = max((i for i in range(n) if text[i] not in "OoQDIl|i"), default=-1)
    prefix = text[:j + 1] if n < len(text) else ""
    rest = text[len(prefix):]
    if not rest:
        return text
    ndig = sum(c.isdigit() for c in rest)
    if ndig * 2 < len(rest):
        return text
    return prefix + rest.translate(_TO_DIGIT)


_TO_LETTER = str.maketrans({"0": "O", "1": "I", "2": "Z", "5": "S", "6": "G", "8": "B"})
_TO_DIGIT_STRICT = str.maketrans({"O": "0", "Q": "0", "D": "0", "I": "1", "L": "1", "Z": "2", "S": "5", "G": "6", "B": "8", "T": "7"})


def apply_format(value: str, masks: Sequence[str]) -> str | None:
    """Fit an identifier read by OCR to a site's format masks.

    Each mask has one character per position: ``A`` a letter, ``9`` a digit,
    ``X`` either. Look-alike characters are swapped into the class the mask
    wants (``8``->``B`` where a letter is due, ``S``->``5`` where a digit is due).

    Parameters
    ----------
    value : str
        Upper-case identifier as read.
    masks : sequence of str
        The site's formats for this field (configuration ``ocr.field_formats``).

    Returns
    -------
    str or None
        The value fitted to the first mask of the same length it can fit, or
        None when it fits none (the caller lowers the confidence: a human checks it).
    """
    for mask in masks:
        if len(mask) != len(value):
            continue
        out = []
        for c, m in zip(value, mask.upper()):
            if m == "A":
                c = c.translate(_TO_LETTER)
                if not c.isalpha():
                    break
            elif m == "9":
                c = c.translate(_TO_DIGIT_STRICT)
                if not c.isdigit():
                    break
            elif m == "X":
                if not c.isalnum():
                    break
            elif c != m:
                break
            out.append(c)
        else:
            return "".join(out)
    return None


def _clean_id(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]", "", s).strip("-")


# --------------------------------------------------------------------------------------------
# the label
# --------------------------------------------------------------------------------------------
def _norm_key_word(w: str) -> str:
    return w.upper().strip(":;.,'\"|_-").translate(_TO_LETTER)


def _key_table(config: OCRConfig) -> list[tuple[tuple[str, ...], str]]:
    table: list[tuple[tuple[str, ...], str]] = []
    extra = config.field_patterns or {}
    for kw in KEYS:
        for k in (*KEYS[kw], *extra.get(kw, ())):
            toks = tuple(_norm_key_word(t) for t in k.split())
            if all(toks):
                table.append((toks, kw))
    table.sort(key=lambda e: -len(e[0]))  # longest match first: STUDY DATE before DATE
    return table


def _split_glued_idx(words: Sequence[OcrWord]) -> tuple[list[OcrWord], list[int]]:
    """Split ``ID:00123456`` into ``ID:`` and ``00123456`` (same confidence), drop lone
    punctuation; also the index in ``words`` each output word came from."""
    out: list[OcrWord] = []
    src: list[int] = []
    for i, w in enumerate(words):
        m = re.match(r"^([A-Za-z#.]{2,}[:;])(\S+)$", w.text)
        if m:
            out += [OcrWord(m.group(1), w.confidence), OcrWord(m.group(2), w.confidence)]
            src += [i, i]
        elif w.text.strip(":;.,|_-'\"`~") == "":
            continue  # pure punctuation: a lone colon
        else:
            out.append(w)
            src.append(i)
    return out, src


def _split_glued(words: Sequence[OcrWord]) -> list[OcrWord]:
    return _split_glued_idx(words)[0]


def _find_keys(words: Sequence[OcrWord], table) -> list[tuple[int, int, str]]:
    """(start, end, keyword) of each key in ``words``, left to right."""
    norm = [_norm_key_word(w.text) for w in words]
    found: list[tuple[int, int, str]] = []
    i = 0
    while i < len(words):
        hit = None
        for toks, kw in table:
            n = len(toks)
            if tuple(norm[i:i + n]) == toks:
                hit = (i, i + n, kw)
                break
        if hit is None and words[i].text.rstrip().endswith((":", ";", ".", ")")) and norm[i] in _KEY_MISREADS:
            hit = (i, i + 1, _KEY_MISREADS[norm[i]])
        if hit is None and words[i].text.rstrip().endswith((":", ";")) and len(norm[i]) >= 3:
            # "NAMF:" -- a colon says it is a key; accept a close single-word key
            best = max(((fuzz.ratio(norm[i], toks[0]), kw) for toks, kw in table if len(toks) == 1 and len(toks[0]) >= 3),
                       default=(0.0, ""))
            if best[0] >= 75:
                hit = (i, i + 1, best[1])
        if hit:
            found.append(hit)
            i = hit[1]
        else:
            i += 1
    return found


def _value(kw: str, words: Sequence[OcrWord], config: OCRConfig) -> FieldValue | None:
    if not words:
        return None
    raw = " ".join(w.text for w in words)
    conf = min(w.confidence for w in words)
    if kw == "PatientName":
        v = parse_person_name(raw, order=config.name_order)
        return FieldValue(v, conf, raw) if v else None
    if kw in ("PatientBirthDate", "StudyDate"):
        # try the longest run of leading words that parses (a date may be split by OCR)
        for n in range(min(len(words), 3), 0, -1):
            text = " ".join(w.text for w in words[:n])
            try:
                v = parse_ocr_date(text, date_order=config.date_order, pivot=config.two_digit_year_pivot)
            except ValueError:
                continue
            return FieldValue(v, min(w.confidence for w in words[:n]), text)
        return None
    if kw == "PatientSex":
        t = words[0].text.upper().strip(":;.,")
        t = {"0": "O", "MALE": "M", "FEMALE": "F", "OTHER": "O"}.get(t, t)
        return FieldValue(t[0], words[0].confidence, words[0].text) if t[:1] in ("M", "F", "O") and len(t) == 1 else None
    if kw in ("PatientID", "AccessionNumber"):
        masks = config.field_formats.get(kw)
        if masks:
            v = _clean_id(words[0].text).upper()
            fitted = apply_format(v, masks)
            if fitted is None:  # fits no site format: keep what was read, but a human must check it
                return FieldValue(v, 0.0, words[0].text) if v else None
            return FieldValue(fitted, words[0].confidence, words[0].text)
        v = fix_digits(_clean_id(words[0].text))
        return FieldValue(v.upper(), words[0].confidence, words[0].text) if v else None
    v = " ".join(raw.split())
    return FieldValue(v, conf, raw) if v else None


#: Words a value may span, by keyword (a date split by OCR: ``02 - APR - 2019``).
_SPAN_WORDS = {"PatientBirthDate": 3, "StudyDate": 3}


def key_value_spans(lines: Sequence[OcrLine], *, config: OCRConfig) -> dict[str, tuple[int, int, int, int]]:
    """:func:`value_spans` with the key: ``(line, first key word, first value word, end word)``
    indices into ``lines`` (the key's words run from the second index to the third)."""
    table = _key_table(config)
    out: dict[str, tuple[int, int, int, int]] = {}
    for li, line in enumerate(lines):
        words, src = _split_glued_idx(line.words)
        keys = _find_keys(words, table)
        for j, (s, e, kw) in enumerate(keys):
            end = keys[j + 1][0] if j + 1 < len(keys) else len(words)
            if kw in out or e >= end:
                continue
            n = {"PatientID": 1, "AccessionNumber": 1, "PatientSex": 1}.get(kw, _SPAN_WORDS.get(kw, end - e))
            end = min(end, e + n)
            out[kw] = (li, src[s], src[e], src[end - 1] + 1)
    return out


def value_spans(lines: Sequence[OcrLine], *, config: OCRConfig) -> dict[str, tuple[int, int, int]]:
    """Where each keyed value was read: ``(line, first word, end word)`` indices into ``lines``.

    The first occurrence of each key counts, as in :func:`parse_label`, whether or not its
    value could be parsed (a value the OCR garbled can then be read again). Identifiers and
    the sex span one word, dates up to three, other values run to the next key.
    """
    return {kw: (li, a, b) for kw, (li, _, a, b) in key_value_spans(lines, config=config).items()}


def parse_label(lines: Sequence[OcrLine], *, config: OCRConfig) -> dict[str, FieldValue]:
    """Parse OCR lines of a label into DICOM-formatted fields.

    Parameters
    ----------
    lines : sequence of OcrLine
        Tesseract's lines in reading order, words with confidences.
    config : OCRConfig
        ``name_order``, ``date_order``, ``two_digit_year_pivot`` and extra keys
        (``field_patterns``, DICOM keyword -> list of key phrases).

    Returns
    -------
    dict
        DICOM keyword -> :class:`FieldValue`, for the fields found and parsed:
        ``InstitutionName`` (the first line without keys, LO as printed),
        ``PatientName`` (PN), ``PatientID``, ``PatientBirthDate`` (DA),
        ``StudyDate`` (DA), ``AccessionNumber``, ``PatientSex`` (``M``/``F``/``O``).
        A field whose value cannot be parsed (an impossible date) is left out
        rather than guessed. ``confidence`` is the minimum Tesseract confidence
        of the value's words.
    """
    table = _key_table(config)
    out: dict[str, FieldValue] = {}
    for line in lines:
        words = _split_glued(line.words)
        if not words:
            continue
        keys = _find_keys(words, table)
        if not keys:
            text = " ".join(w.text for w in words).strip()
            letters = sum(c.isalpha() for c in text)
            if "InstitutionName" not in out and letters >= 4 and letters >= 0.6 * len(text.replace(" ", "")):
                inst = re.sub(r"[^A-Za-z0-9 .,'&()/-]", "", " ".join(text.split()))
                inst = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9.)]+$", "", inst)
                if inst:
                    out["InstitutionName"] = FieldValue(inst.upper(), min(w.confidence for w in words), text)
            continue
        for j, (s, e, kw) in enumerate(keys):
            end = keys[j + 1][0] if j + 1 < len(keys) else len(words)
            fv = _value(kw, words[e:end], config)
            if fv is not None and kw not in out:
                out[kw] = fv
    return out
