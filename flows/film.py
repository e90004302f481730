"""One film, end to end: the plain composition of the steps (no Prefect here).

:func:`process_film` runs load -> polarity -> geometry -> denoise -> label OCR ->
reconciliation -> QC -> DICOM build/validate, and returns a :class:`FilmOutcome`
holding the per-film record (what the report and the review page show) and the
ledger state it leads to. It never raises for a problem of the film itself:
filmflow's :class:`~filmflow.errors.FilmError` becomes a ``failed`` outcome.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

import numpy as np

from filmflow.config import Settings
from filmflow.errors import FilmError, FilmflowError
from pipeline import denoise as denoise_mod
from pipeline import dicom_film, geometry, label, manifest, marker, ocr, orientation, polarity, scan_io, scratches, uids
from pipeline.types import ManifestRow, Reconciliation
from qc import checks
from qc import phash as qc_phash
from qc.types import QCResult, worst

log = logging.getLogger("filmflow.film")

HEADER_KEYS = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "AccessionNumber", "InstitutionName")


def film_tag(source_path: str | Path) -> str:
    """Short, non-identifying name of a film for logs: 10 hex chars of SHA-1 of its path."""
    return hashlib.sha1(str(source_path).encode("utf-8", "surrogateescape")).hexdigest()[:10]


@dataclass
class FilmOutcome:
    """Result of processing one film.

    ``state`` is the ledger state it leads to: ``processed`` (ready to push),
    ``flagged`` (held for review) or ``failed``.
    """

    state: str
    record: dict[str, Any]
    staged_path: str = ""
    error: str = ""
    qc: list[QCResult] = field(default_factory=list)


class _Timer:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def __call__(self, name: str) -> "_Step":
        return _Step(self, name)


class _Step:
    def __init__(self, timer: _Timer, name: str) -> None:
        self.timer, self.name = timer, name

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.timer.times[self.name] = round(self.timer.times.get(self.name, 0.0) + time.perf_counter() - self.t0, 4)


def process_film(
    source_path: Path,
    *,
    source_file: str,
    settings: Settings,
    batch_name: str,
    manifest_rows: Sequence[ManifestRow] | None,
    staging_dir: Path,
    duplicate_of: Sequence[str] = (),
    overrides: Mapping[str, str] | None = None,
    known_phashes: Mapping[str, str] | None = None,
    reviewed_codes: Collection[str] | None = None,
) -> FilmOutcome:
    """Process one scan into a staged DICOM file (or a flagged/failed outcome).

    Parameters
    ----------
    source_path : Path
        The original scan; read only, never modified.
    source_file : str
        Its name relative to the batch's source folder (report key, manifest ``scan_file``).
    manifest_rows : sequence of ManifestRow or None
        The site's manifest; None when no manifest was given.
    staging_dir : Path
        Where the DICOM file is written (atomically) before it is pushed.
    duplicate_of : sequence of str
        Other source paths with the same SHA-256 (flags ``duplicate_scan``).
    overrides : mapping, optional
        Reviewer-approved header values (DICOM keyword -> value); when given the
        identity and label checks are considered settled by the reviewer.
    reviewed_codes : collection of str, optional
        With ``overrides``: the QC codes the reviewer saw when approving. Only
        those ``review`` findings are settled; one the reviewer never saw (e.g.
        ``scratches_inpainted`` after the settings changed) holds the film again.
        None: every ``review`` finding is settled (approvals recorded before the
        codes were kept).
    known_phashes : mapping, optional
        Perceptual hashes of other films (source path -> hash, see
        :func:`qc.phash.known_phashes`); flags ``near_duplicate``.

    Returns
    -------
    FilmOutcome
    """
    timer = _Timer()
    record: dict[str, Any] = {"source_file": source_file, "source_path": str(source_path), "sha256": "", "batch": batch_name}
    try:
        return _process(source_path, source_file, record, timer, settings, manifest_rows, staging_dir, duplicate_of, overrides,
                        known_phashes or {}, reviewed_codes)
    except FilmError as exc:
        record.update(timings=timer.times, error=f"{exc.code}: {exc}")
        return FilmOutcome("failed", record, error=record["error"])
    except FilmflowError:
        raise  # batch-level (tool missing, ...): the flow decides
    except Exception as exc:  # a bug in filmflow: fail this film, keep the batch going
        # the traceback goes to the work folder's log file only (filmflow logger does not propagate)
        log.error("film %s: internal error %s\n%s", film_tag(source_path), type(exc).__name__, traceback.format_exc())
        record.update(timings=timer.times, error=f"internal_error: {type(exc).__name__} (see the work folder's log)")
        return FilmOutcome("failed", record, error=record["error"])


def _process(
    source_path: Path,
    source_file: str,
    record: dict[str, Any],
    timer: _Timer,
    settings: Settings,
    manifest_rows: Sequence[ManifestRow] | None,
    staging_dir: Path,
    duplicate_of: Sequence[str],
    overrides: Mapping[str, str] | None,
    known_phashes: Mapping[str, str],
    reviewed_codes: Collection[str] | None,
) -> FilmOutcome:
    with timer("load"):
        scan = scan_io.load_scan(source_path, default_dpi=settings.scan.default_dpi, max_pixels=settings.scan.max_pixels)
    record.update(sha256=scan.sha256, dpi=round(scan.dpi, 2), dpi_from_file=scan.dpi_from_file, bits_stored=scan.bits_stored,
                  source_format=scan.source_format, scan_shape=list(scan.pixels.shape))

    with timer("geometry"):
        pixels = scan.pixels
        inverted = False
        assessed = polarity.assess(pixels)  # one pass: the decision here, its margin for QC below
        if settings.geometry.fix_polarity and assessed.inverted:
            pixels = polarity.invert(pixels, bits_stored=scan.bits_stored)
            inverted = True
        margin_px = int(round(settings.geometry.bed_margin_mm / 25.4 * scan.dpi))
        film, geom = geometry.straighten(pixels, max_skew_deg=settings.geometry.max_skew_deg, margin_px=margin_px,
                                         content_min_confidence=settings.geometry.content_skew_min_confidence)
    with timer("qc_geometry"):
        polarity_margin = assessed.margin
        # re-measuring the film's edges checks an edge-based deskew only; a content or unmeasured skew
        # has no film edge to re-measure (the scan border would give back the applied correction)
        residual_skew = (checks.measure_residual_skew(pixels, geom, margin_px=int(round(0.25 * scan.dpi)))
                         if geom.skew_source == "edges" else None)
        # an inverted scan's "bed" must be brighter than the whole film (else: a film's own dark border)
        bed_clearance = (polarity.bed_clearance(film, geom.bed_level, inset_px=margin_px + 8)
                         if inverted and checks.bed_visible(geom) else None)
        del pixels
    undenoised = film  # the label-kind test compares grain, which denoising (and inpainting) removes
    if settings.denoise.scratches and settings.denoise.method != "off":  # off: every pixel as scanned
        # on the film as straightened, before any quarter turn (the reviewer's forced one here, the
        # label's below), as the review page's preview repairs it
        with timer("denoise"):
            film, scratch_report = scratches.repair_scratches(film, dpi=scan.dpi)
        record["scratches_repaired"] = scratch_report.lines
        record["scratches_pixels"] = scratch_report.pixels
    if settings.geometry.rotation_k:  # a reviewer's forced orientation
        repaired = film is not undenoised
        film = np.ascontiguousarray(np.rot90(film, settings.geometry.rotation_k))
        undenoised = np.rot90(undenoised, settings.geometry.rotation_k) if repaired else film
        geom = dataclasses.replace(geom, rotation_k=settings.geometry.rotation_k, orientation_decided=True,
                                   crop_shape=(int(film.shape[0]), int(film.shape[1])))
    record.update(skew_deg=round(geom.skew_deg, 3), inverted=inverted,
                  geometry={"film_box": list(geom.film_box), "film_quad": [list(p) for p in geom.film_quad],
                            "crop_shape": list(geom.crop_shape), "touches_bed_edge": geom.touches_bed_edge,
                            "film_count": geom.film_count, "rotation_k": geom.rotation_k,
                            "orientation_decided": geom.orientation_decided, "skew_source": geom.skew_source})

    with timer("denoise"):
        film = denoise_mod.denoise(film, method=settings.denoise.method, strength=settings.denoise.strength,
                                   despeckle=settings.denoise.despeckle)
    if bed_clearance is not None:
        record["bed_clearance"] = round(bed_clearance, 3)
    record.update(phash=qc_phash.film_phash(film), polarity_margin=round(polarity_margin, 3),
                  residual_skew_deg=None if residual_skew is None else round(residual_skew, 3))

    with timer("ocr"):
        reading = label.read_label(film, dpi=scan.dpi, config=settings.ocr, kind_from=undenoised,
                                   min_field_confidence=settings.qc.min_field_confidence)
    del undenoised
    # which Tesseract read the label (ocr.engine 'auto' resolves per worker); nothing ran without a label
    read = reading.region is not None
    record.update(ocr_engine=ocr.ocr_engine(settings.ocr) if read else "",
                  tesseract_version=ocr.tesseract_version(settings.ocr) if read else "")
    with timer("marker"):
        mark = marker.read_marker(film, dpi=scan.dpi, exclude_box=reading.region.box if reading.region else None)
    decision = orientation.decide_turns(reading.region.rotation_k if reading.region else None,
                                        mark.rotation_k if mark.confident else None,
                                        label_alone=settings.geometry.orientation_label_alone,
                                        marker_alone=settings.geometry.orientation_marker_alone)
    if settings.geometry.rotation_k is None and settings.geometry.fix_orientation:
        record["geometry"].update(orientation_source=decision.source, orientation_note=decision.note)
        if decision.decided:
            turns = decision.turns
            if turns:  # scanned turned: the label and/or the lead marker say so
                reading = orientation.rotate_reading(reading, film.shape, turns)
                mark = orientation.rotate_marker(mark, film.shape, turns)
                film = np.ascontiguousarray(np.rot90(film, turns))
            geom = dataclasses.replace(geom, rotation_k=turns, orientation_decided=True,
                                       crop_shape=(int(film.shape[0]), int(film.shape[1])))
            record["geometry"].update(rotation_k=turns, orientation_decided=True, crop_shape=list(geom.crop_shape))
    label_k = reading.region.rotation_k if reading.region else None
    # a marker reading upside down against the label (opposite turns; a quarter turn apart is a card
    # flashed sideways, common) may be no marker at all: no laterality from it
    disagree = (mark.confident and label_k is not None and mark.rotation_k is not None
                and (label_k - mark.rotation_k) % 4 == 2)
    laterality = mark.letter if mark.confident and not disagree else ""
    record["marker"] = mark.as_record()
    if disagree:
        record.setdefault("notes", []).append("lead marker's turn contradicts the label's: laterality not taken from it")
    if not geom.orientation_decided:
        record.setdefault("notes", []).append(
            f"orientation undecided, film left as scanned ({decision.note or 'no label or marker cue'})")
    record.update(
        laterality=laterality,
        ocr_confidence=round(reading.confidence, 1) if reading.fields else "",
        fields={k: {"value": v.value, "confidence": round(v.confidence, 1), "raw": v.raw} for k, v in reading.fields.items()},
        label_box=list(reading.region.box) if reading.region else None,
        label_kind=reading.region.kind if reading.region else "",
        label_lines=list(reading.lines),
    )

    recon = manifest.reconcile(reading, manifest_rows or (), scan_file=source_file, config=settings.manifest)
    record["reconciliation"] = _recon_dict(recon)
    header = {k: recon.header.get(k, "") or reading.value(k) for k in HEADER_KEYS}
    if not header["InstitutionName"]:
        header["InstitutionName"] = settings.dicom.institution_name
    if overrides:
        header.update({k: v for k, v in overrides.items() if k in HEADER_KEYS})
    record["header"] = header
    record.update({k: header[k] for k in HEADER_KEYS})

    findings: list[QCResult] = []
    findings += checks.check_image(film, bits_stored=scan.bits_stored, config=settings.qc)
    findings += checks.check_sharpness(film, dpi=scan.dpi, config=settings.qc)
    findings += checks.check_geometry(geom, config=settings.qc)
    findings += checks.check_residual_skew(residual_skew, config=settings.qc, geometry=geom)
    findings += checks.check_polarity(polarity_margin, config=settings.qc, geometry=geom)
    findings += checks.check_inversion(inverted, bed_clearance, config=settings.qc)
    findings += checks.check_scratches(record.get("scratches_repaired", 0), record.get("scratches_pixels", 0))
    if overrides is None:
        findings += checks.check_label(reading, config=settings.qc, corroborated=checks.corroborated_fields(reading, recon))
        if manifest_rows is not None:
            findings += checks.check_identity(recon)
        findings += checks.check_duplicate(duplicate_of)
        findings += checks.check_near_duplicate(record["phash"], known_phashes, settings.qc.max_phash_distance)
        record["near_duplicate_of"] = [k for k, _ in qc_phash.near_matches(record["phash"], known_phashes, settings.qc.max_phash_distance)]

    if any(f.code == "no_bed_visible" and f.severity == "info" for f in findings):
        # accepted by the site's qc.no_bed_severity: the report still says what was not checked
        record.setdefault("notes", []).append(
            "no scanner bed visible: film edges, polarity and wholeness not checked (qc.no_bed_severity = info)")
    if overrides is not None:
        findings = [_settled(f) if reviewed_codes is None or f.code in reviewed_codes else f for f in findings]
    verdict = worst(findings)
    if verdict != "pass" or not header["PatientID"]:
        if not header["PatientID"] and not any(f.code == "missing_PatientID" for f in findings):
            findings.append(QCResult("missing_PatientID", "review", None, None, "no Patient ID for the DICOM header"))
        record.update(_qc_fields(findings), timings=timer.times)
        return held(record, findings)

    with timer("dicom"):
        film_uids = uids.film_uids(
            root=settings.dicom.uid_root, sha256=scan.sha256, patient_id=header["PatientID"],
            study_date=header["StudyDate"], accession_number=header["AccessionNumber"],
        )
        steps = [f"deskew {geom.skew_deg:+.2f} deg" if abs(geom.skew_deg) >= geometry.MIN_ROTATION_DEG
                 else "not deskewed", f"crop to film {geom.crop_shape[1]}x{geom.crop_shape[0]}"]
        if geom.rotation_k:
            steps.append(f"turned {90 * geom.rotation_k} deg counter-clockwise")
        if inverted:
            steps.append("polarity inverted")
        if settings.denoise.method != "off":
            steps.append(f"denoise {settings.denoise.method} x{settings.denoise.strength:g}"
                         + ("" if settings.denoise.despeckle else ", no speck repair"))
        if "scratches_repaired" in record:
            n = record["scratches_repaired"]
            steps.append(f"scratch repair ({n} line{'' if n == 1 else 's'} inpainted)")
        ds = dicom_film.build_film_dataset(
            film, bits_stored=scan.bits_stored, pixel_spacing_mm=scan.pixel_spacing_mm, header=header,
            uids=film_uids, config=settings.dicom, skew_deg=geom.skew_deg,
            derivation_description="; ".join(steps), laterality=laterality,
        )
        findings += checks.check_iod(ds)
        staged = staging_dir / f"{film_uids.sop_instance_uid}.dcm"
        dicom_film.write_dataset(ds, staged, transfer_syntax=settings.dicom.transfer_syntax)
        pixel_hash = dicom_film.pixel_sha256(ds)
        del ds, film
    record.update(sop_instance_uid=film_uids.sop_instance_uid, study_instance_uid=film_uids.study_instance_uid,
                  series_instance_uid=film_uids.series_instance_uid, pixel_sha256=pixel_hash)

    if settings.qc.run_dciodvfy:
        from qc.dciodvfy import run_dciodvfy

        with timer("validate"):
            dfind = run_dciodvfy(staged)
        record["dciodvfy"] = [f"{f.level}: {f.message}" for f in dfind]
        findings += checks.check_dicom(dfind)

    if settings.dicom.keep_original and worst(findings) == "pass":
        with timer("dicom_original"):
            record["extra_staged"] = [_stage_original(scan, header, film_uids, settings, staging_dir, geom.skew_deg, laterality)]

    record.update(_qc_fields(findings), timings=timer.times)
    if worst(findings) != "pass":
        staged.unlink(missing_ok=True)
        return held(record, findings)
    return FilmOutcome("processed", record, staged_path=str(staged), qc=findings)


def _stage_original(scan: Any, header: dict[str, str], film_uids: uids.FilmUIDs, settings: Settings, staging_dir: Path,
                    skew_deg: float, laterality: str) -> dict[str, str]:
    """Stage the untouched scan as its own instance (``dicom.keep_original``); its entry in ``record['extra_staged']``."""
    ds = dicom_film.build_original_dataset(
        scan.pixels, bits_stored=scan.bits_stored, pixel_spacing_mm=scan.pixel_spacing_mm, header=header,
        uids=film_uids, config=settings.dicom, skew_deg=skew_deg, laterality=laterality)
    path = staging_dir / f"{film_uids.original_sop_instance_uid}.dcm"
    dicom_film.write_dataset(ds, path, transfer_syntax=settings.dicom.transfer_syntax)
    return {"kind": "original", "path": str(path), "sop_instance_uid": film_uids.original_sop_instance_uid,
            "series_instance_uid": str(ds.SeriesInstanceUID), "pixel_sha256": dicom_film.pixel_sha256(ds)}


def _settled(finding: QCResult) -> QCResult:
    """A reviewer approved the film: their decision settles ``review`` findings (kept as ``info``);
    ``fail`` findings still stop it."""
    if finding.severity != "review":
        return finding
    return dataclasses.replace(finding, severity="info", reason=f"{finding.reason} (accepted by the reviewer)")


def held(record: dict[str, Any], findings: list[QCResult]) -> FilmOutcome:
    """The outcome of a film QC did not pass: ``fail`` findings quarantine it (``failed``),
    ``review`` findings hold it for a reviewer (``flagged``)."""
    record.update(_qc_fields(findings))
    if worst(findings) == "fail":
        codes = ", ".join(f.code for f in findings if f.severity == "fail")
        reasons = "; ".join(f.reason for f in findings if f.severity == "fail")
        error = f"quarantined ({codes}): {reasons}"
        record["error"] = error
        return FilmOutcome("failed", record, error=error, qc=findings)
    return FilmOutcome("flagged", record, qc=findings)


def _qc_fields(findings: list[QCResult]) -> dict[str, Any]:
    return {
        "qc_flags": ";".join(f.code for f in findings if f.severity != "info"),
        "qc": [f.to_dict() for f in findings],
    }


def _recon_dict(recon: Reconciliation) -> dict[str, Any]:
    return {
        "status": recon.status,
        "row_line": recon.row.line if recon.row else None,
        "candidates": [asdict(r) for r in recon.candidates],
        "disagreements": [asdict(d) for d in recon.disagreements],
    }

