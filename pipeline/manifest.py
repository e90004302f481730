"""Load the manifest (a RIS export CSV) and reconcile a film's label with it.

Error messages name the line number and the column, never the value: manifest
values are patient data and messages reach logs and the dashboard.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path, PurePath

from rapidfuzz import fuzz

from filmflow.config import ManifestConfig
from filmflow.errors import ManifestError
from pipeline.label_fields import parse_date, parse_person_name
from pipeline.types import FieldDisagreement, LabelReading, ManifestRow, Reconciliation

__all__ = ["load_manifest", "reconcile", "REQUIRED", "HEADER_FIELDS"]

#: Columns every manifest must have (DICOM keywords; the CSV names come from ``ManifestConfig.columns``).
REQUIRED = ("PatientID", "PatientName", "PatientBirthDate", "StudyDate")
_OPTIONAL = ("AccessionNumber", "scan_file")
#: Identity values written to the DICOM header, by keyword.
HEADER_FIELDS = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyDate",
                 "AccessionNumber", "InstitutionName")


def load_manifest(
    path: str | Path,
    config: ManifestConfig,
    *,
    date_order: str = "MDY",
    pivot: int = 30,
) -> list[ManifestRow]:
    """Read a manifest CSV into normalised rows.

    Parameters
    ----------
    path : path
        The CSV file (header on line 1; comma-separated; quoting as Excel).
    config : ManifestConfig
        ``columns`` maps DICOM keywords to the CSV's column names; ``encoding``.
    date_order : {'MDY', 'DMY'}
        For ambiguous ``NN/NN/YYYY`` dates (see :func:`pipeline.label_fields.parse_date`).
    pivot : int
        Two-digit years below ``pivot`` are 20YY.

    Returns
    -------
    list of ManifestRow
        One per non-empty data line, in file order; names as upper-case PN
        (``FAMILY^GIVEN^MIDDLE``), dates as DA ``YYYYMMDD``; ``line`` is the
        1-based line number of the row in the file.

    Raises
    ------
    ManifestError
        The file is missing or not in ``config.encoding``; a required column is
        missing; a row has an empty PatientID/PatientName or a date that is not
        a valid date; two rows share PatientID + StudyDate + scan_file. The
        message names the line number and column, never the value.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {p}: {exc.strerror}") from exc
    try:
        text = raw.decode(config.encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ManifestError(
            f"manifest {p.name} is not valid {config.encoding} (line {line}); "
            "set manifest.encoding to the file's encoding (e.g. 'latin-1' or 'cp1252')"
        ) from None
    except LookupError:
        raise ManifestError(f"manifest.encoding {config.encoding!r} is not a known encoding") from None
    text = text.lstrip("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ManifestError(f"manifest {p.name} is empty; it needs a header line") from None
    header = [h.strip() for h in header]
    index: dict[str, int] = {}
    for kw in (*REQUIRED, *_OPTIONAL):
        col = config.columns.get(kw, "")
        if col and col in header:
            index[kw] = header.index(col)
        elif kw in REQUIRED:
            raise ManifestError(
                f"manifest {p.name} has no column {col or '(unmapped)'!r} for {kw}; "
                f"map it with manifest.columns.{kw}"
            )
    rows: list[ManifestRow] = []
    seen: dict[tuple[str, str, str], int] = {}
    for rec in reader:
        line = reader.line_num
        if not any(c.strip() for c in rec):
            continue
        if len(rec) < len(header):
            rec = rec + [""] * (len(header) - len(rec))
        vals = {kw: rec[i].strip() for kw, i in index.items()}

        def col(kw: str) -> str:
            return config.columns[kw]

        if not vals["PatientID"]:
            raise ManifestError(f"manifest {p.name} line {line}, column {col('PatientID')!r}: empty patient ID")
        name = parse_person_name(vals["PatientName"], order="family_first")
        if not name:
            raise ManifestError(f"manifest {p.name} line {line}, column {col('PatientName')!r}: empty patient name")
        dates = {}
        for kw in ("PatientBirthDate", "StudyDate"):
            try:
                dates[kw] = parse_date(vals[kw], date_order=date_order, pivot=pivot)
            except ValueError:
                raise ManifestError(
                    f"manifest {p.name} line {line}, column {col(kw)!r}: not a valid date "
                    "(use YYYY-MM-DD, MM/DD/YYYY, DD.MM.YYYY or DD-MON-YYYY)"
                ) from None
        row = ManifestRow(
            line=line,
            PatientID=vals["PatientID"],
            PatientName=name,
            PatientBirthDate=dates["PatientBirthDate"],
            StudyDate=dates["StudyDate"],
            AccessionNumber=vals.get("AccessionNumber", ""),
            scan_file=vals.get("scan_file", ""),
        )
        key = (row.PatientID, row.StudyDate, row.scan_file)
        if key in seen:
            raise ManifestError(
                f"manifest {p.name} line {line} duplicates line {seen[key]} "
                "(same patient ID, study date and scan file)"
            )
        seen[key] = line
        rows.append(row)
    if not rows:
        raise ManifestError(f"manifest {p.name} has a header but no rows; export the batch's rows, or run without --manifest")
    return rows


# --------------------------------------------------------------------------------------------
def _norm_id(s: str) -> str:
    return "".join(c for c in s.upper() if c.isalnum())


def _norm_name(s: str) -> str:
    return " ".join(parse_person_name(s).replace("^", " ").split())


def _name_score(a: str, b: str) -> float:
    return float(fuzz.ratio(_norm_name(a), _norm_name(b)))


def reconcile(
    reading: LabelReading,
    rows: Sequence[ManifestRow] | None,
    *,
    scan_file: str,
    config: ManifestConfig,
) -> Reconciliation:
    """Match a film's label reading with the manifest.

    Parameters
    ----------
    reading : LabelReading
        From :func:`pipeline.label.read_label`.
    rows : sequence of ManifestRow or None
        From :func:`load_manifest`; empty or None when the batch has no manifest.
    scan_file : str
        The film's scan file (only its name is compared with ``scan_file`` cells).
    config : ManifestConfig
        ``name_match_threshold`` (rapidfuzz ratio, 0..100).

    Returns
    -------
    Reconciliation
        Candidates are the rows naming this scan file when the manifest has a
        ``scan_file`` for it; otherwise rows whose PatientID equals the label's;
        otherwise rows whose name matches (ratio >= threshold) with an equal
        birth date. ``agree``: one candidate, no contradiction (PatientID,
        PatientName by fuzzy ratio, PatientBirthDate, StudyDate,
        AccessionNumber -- each compared only when both sides have it), and
        identity confirmed by the label: its PatientID equal to the row's, or
        its name and birth date both matching. ``disagree``: one candidate with
        a contradiction, or without identity confirmation (then
        ``disagreements`` lists the unconfirmed fields with an empty label
        value). ``ambiguous``: two or more; ``no_match``: none;
        ``no_manifest``: no rows. ``header`` takes the manifest's values only
        for ``agree``, else the label's.
    """
    label = {kw: reading.value(kw) for kw in HEADER_FIELDS}
    label_header = {kw: v for kw, v in label.items() if v}
    if not rows:
        return Reconciliation(status="no_manifest", header=label_header)
    thr = config.name_match_threshold
    name = PurePath(scan_file).name if scan_file else ""
    cands = [r for r in rows if r.scan_file and name and PurePath(r.scan_file).name == name]
    if not cands and label["PatientID"]:
        cands = [r for r in rows if _norm_id(r.PatientID) == _norm_id(label["PatientID"])]
    if not cands and label["PatientName"] and label["PatientBirthDate"]:
        cands = [r for r in rows if r.PatientBirthDate == label["PatientBirthDate"]
                 and _name_score(r.PatientName, label["PatientName"]) >= thr]
    if not cands:
        return Reconciliation(status="no_match", header=label_header)
    if len(cands) > 1:
        # several studies of one patient: the study date (then accession) may single one out
        narrowed = [r for r in cands if label["StudyDate"] and r.StudyDate == label["StudyDate"]]
        if len(narrowed) > 1 and label["AccessionNumber"]:
            narrowed = [r for r in narrowed if _norm_id(r.AccessionNumber) == _norm_id(label["AccessionNumber"])]
        if len(narrowed) != 1:
            return Reconciliation(status="ambiguous", candidates=tuple(cands), header=label_header)
        cands = narrowed
    row = cands[0]
    dis: list[FieldDisagreement] = []
    if label["PatientID"] and _norm_id(label["PatientID"]) != _norm_id(row.PatientID):
        dis.append(FieldDisagreement("PatientID", label["PatientID"], row.PatientID))
    if label["PatientName"] and _name_score(label["PatientName"], row.PatientName) < thr:
        dis.append(FieldDisagreement("PatientName", label["PatientName"], row.PatientName))
    for kw in ("PatientBirthDate", "StudyDate"):
        if label[kw] and label[kw] != getattr(row, kw):
            dis.append(FieldDisagreement(kw, label[kw], getattr(row, kw)))
    if label["AccessionNumber"] and row.AccessionNumber and _norm_id(label["AccessionNumber"]) != _norm_id(row.AccessionNumber):
        dis.append(FieldDisagreement("AccessionNumber", label["AccessionNumber"], row.AccessionNumber))
    id_ok = bool(label["PatientID"]) and _norm_id(label["PatientID"]) == _norm_id(row.PatientID)
    name_dob_ok = (bool(label["PatientName"]) and bool(label["PatientBirthDate"])
                   and _name_score(label["PatientName"], row.PatientName) >= thr
                   and label["PatientBirthDate"] == row.PatientBirthDate)
    if not dis and not (id_ok or name_dob_ok):
        # matched by scan_file only: the label does not confirm who this is
        for kw in ("PatientID", "PatientName", "PatientBirthDate"):
            if not label[kw]:
                dis.append(FieldDisagreement(kw, "", getattr(row, kw)))
    if dis:
        return Reconciliation(status="disagree", row=row, candidates=tuple(cands), disagreements=tuple(dis),
                              header=label_header)
    header = dict(label_header)
    header.update({
        "PatientID": row.PatientID,
        "PatientName": row.PatientName,
        "PatientBirthDate": row.PatientBirthDate,
        "StudyDate": row.StudyDate,
    })
    if row.AccessionNumber:
        header["AccessionNumber"] = row.AccessionNumber
    return Reconciliation(status="agree", row=row, candidates=(row,), header=header)
