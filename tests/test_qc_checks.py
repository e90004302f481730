"""Tests for qc.checks and qc.phash: every check triggered and not triggered.

Inputs: the bundled sample scans (sample_scans/, provenance in sample_scans/SOURCES.md:
synthetic film scans made from CC BY 3.0 / NEMA / NIH / TBX11K radiographs), made
worse in memory (blurred, clipped, compressed, inverted, mis-straightened, cut,
doubled, grey bed, noisy copies); nothing is written back. Label, identity and
DICOM checks take the value types the steps produce (LabelReading,
Reconciliation, a dataset from pipeline.dicom_film). All randomness is seeded.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from filmflow.config import DicomConfig, QCConfig
from filmflow.errors import FilmNotFoundError
from filmflow.ledger import Ledger
from pipeline import denoise, geometry, polarity, scan_io
from pipeline.dicom_film import build_film_dataset
from pipeline.types import FieldDisagreement, FieldValue, LabelReading, LabelRegion, ManifestRow, Reconciliation
from pipeline.uids import film_uids
from qc import checks, phash
from qc.types import QCResult

SAMPLES = Path(__file__).resolve().parent.parent / "sample_scans"
NAMES = [p.stem for p in sorted(SAMPLES.glob("film_*.*")) if p.suffix != ".json"]
CONFIG = QCConfig()


@dataclass(frozen=True)
class Sample:
    name: str
    scan: np.ndarray  # as delivered
    dpi: float
    bits: int
    film: np.ndarray  # straightened + default denoise, as QC sees it in flows/film.py
    geom: object


@pytest.fixture(scope="module")
def samples() -> dict[str, Sample]:
    out = {}
    for name in NAMES:
        path = next(p for p in SAMPLES.glob(f"{name}.*") if p.suffix != ".json")
        scan = scan_io.load_scan(path, default_dpi=150.0, max_pixels=200_000_000)
        film, geom = geometry.straighten(scan.pixels, max_skew_deg=20.0)
        film = denoise.denoise(film, method="bilateral", strength=1.0)
        out[name] = Sample(name, scan.pixels, scan.dpi, scan.bits_stored, film, geom)
    return out


def codes(results: list[QCResult]) -> list[str]:
    return [r.code for r in results]


def full(s: Sample) -> int:
    return (1 << s.bits) - 1


# --- image: blank / saturated / low contrast ----------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_image_checks_pass_on_samples(samples, name):
    s = samples[name]
    assert checks.check_image(s.film, bits_stored=s.bits, config=CONFIG) == []


@pytest.mark.parametrize("name", ["film_01", "film_03"])  # uint16 (12 bits), uint8
def test_blank_film_fails(samples, name):
    s = samples[name]
    rng = np.random.default_rng(0)
    level = full(s) * 0.4
    blank = np.clip(rng.normal(level, 0.002 * full(s), s.film.shape), 0, full(s)).astype(s.film.dtype)
    (r,) = checks.check_image(blank, bits_stored=s.bits, config=CONFIG)
    assert (r.code, r.severity, r.threshold) == ("blank", "fail", CONFIG.blank_std_fraction)
    assert r.measured < CONFIG.blank_std_fraction


@pytest.mark.parametrize("name", ["film_01", "film_03"])
def test_clipped_film_is_saturated(samples, name):
    s = samples[name]
    clipped = s.film.copy()
    clipped[s.film >= np.percentile(s.film, 60)] = full(s)  # 40 % blown out
    result = checks.check_image(clipped, bits_stored=s.bits, config=CONFIG)
    (r,) = [x for x in result if x.code == "saturated"]
    assert r.severity == "review" and r.threshold == CONFIG.max_saturated_fraction
    assert 0.35 < r.measured < 0.45
    assert clipped.dtype == s.film.dtype


@pytest.mark.parametrize("name", ["film_01", "film_03"])
def test_compressed_film_is_low_contrast(samples, name):
    s = samples[name]
    f = s.film.astype(np.int64)
    squeezed = (f // 10 + full(s) // 3).astype(s.film.dtype)  # a tenth of the range
    (r,) = checks.check_image(squeezed, bits_stored=s.bits, config=CONFIG)
    assert (r.code, r.severity) == ("low_contrast", "review")
    assert r.measured < 0.1 < CONFIG.min_dynamic_range


# --- image: blur -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_samples_are_sharp(samples, name):
    s = samples[name]
    value = checks.sharpness(s.film, dpi=s.dpi)
    assert value >= 2.5 * CONFIG.min_sharpness  # measured 3.0 (film_07) .. 13.1 (film_03)
    assert checks.check_sharpness(s.film, dpi=s.dpi, config=CONFIG) == []


@pytest.mark.parametrize("name", NAMES)
def test_blurred_copy_fails(samples, name):
    s = samples[name]
    sigma = 3.0 * s.dpi / 150.0  # 3 px at 150 DPI = 0.5 mm
    blurred = cv2.GaussianBlur(s.film, (0, 0), sigma)
    assert blurred.dtype == s.film.dtype
    (r,) = checks.check_sharpness(blurred, dpi=s.dpi, config=CONFIG)
    assert (r.code, r.severity, r.threshold) == ("blurred", "review", CONFIG.min_sharpness)
    assert r.measured < 0.5 * CONFIG.min_sharpness
    # scanner noise added after the blur does not rescue it
    rng = np.random.default_rng(3)
    noisy = np.clip(blurred + rng.normal(0, 0.005 * full(s), blurred.shape), 0, full(s)).astype(s.film.dtype)
    assert codes(checks.check_sharpness(noisy, dpi=s.dpi, config=CONFIG)) == ["blurred"]


def test_sharpness_does_not_depend_on_bit_depth(samples):
    s = samples["film_03"]  # 8-bit
    as16 = s.film.astype(np.uint16) * 257
    assert checks.sharpness(as16, dpi=s.dpi) == pytest.approx(checks.sharpness(s.film, dpi=s.dpi), rel=1e-3)


def test_sharpness_of_blank_film_is_undefined():
    assert checks.sharpness(np.full((200, 200), 1000, np.uint16), dpi=150) is None
    assert checks.check_sharpness(np.full((200, 200), 1000, np.uint16), dpi=150, config=CONFIG) == []


# --- geometry: residual skew, cut off, several films, not found -------------------------------
@pytest.mark.parametrize("name", ["film_01", "film_03", "film_08"])
def test_residual_skew_after_correct_straightening(samples, name):
    s = samples[name]
    residual = checks.measure_residual_skew(s.scan, s.geom, margin_px=int(0.25 * s.dpi))
    assert abs(residual) < 0.05
    assert checks.check_residual_skew(residual, config=CONFIG) == []


@pytest.mark.parametrize("error_deg", [1.5, -2.0])
def test_residual_skew_when_straightened_wrongly(samples, error_deg):
    s = samples["film_01"]
    wrong = replace(s.geom, skew_deg=s.geom.skew_deg + error_deg)
    residual = checks.measure_residual_skew(s.scan, wrong, margin_px=int(0.25 * s.dpi))
    assert residual == pytest.approx(-error_deg, abs=0.1)
    (r,) = checks.check_residual_skew(residual, config=CONFIG)
    assert (r.code, r.severity, r.threshold) == ("residual_skew", "review", CONFIG.max_residual_skew_deg)
    assert r.measured == pytest.approx(-error_deg, abs=0.1)


def test_residual_skew_of_a_rotated_rescan(samples):
    """The film put 3 degrees further round on the bed is still straightened to < 0.05 degrees."""
    s = samples["film_07"]
    rows, cols = s.scan.shape
    m = cv2.getRotationMatrix2D(((cols - 1) / 2, (rows - 1) / 2), 3.0, 1.0)
    rotated = cv2.warpAffine(s.scan, m, (cols, rows), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    _, geom = geometry.straighten(rotated, max_skew_deg=20.0)
    residual = checks.measure_residual_skew(rotated, geom, margin_px=int(0.25 * s.dpi))
    assert abs(residual) < 0.05


def test_residual_skew_unmeasured_without_bed(samples):
    s = samples["film_01"]
    film, geom = geometry.straighten(s.film, max_skew_deg=20.0)  # a crop: no bed around it
    residual = checks.measure_residual_skew(s.film, geom, margin_px=30)
    assert residual is None
    (r,) = checks.check_residual_skew(residual, config=CONFIG)
    assert (r.code, r.severity) == ("residual_skew_unmeasured", "info")


def test_film_cut_off_by_bed_edge(samples):
    s = samples["film_01"]
    cut = s.scan[:, : s.scan.shape[1] * 2 // 3]  # the right third of the bed (and film) missing
    _, geom = geometry.straighten(cut, max_skew_deg=20.0)
    assert codes(checks.check_geometry(geom, config=CONFIG)) == ["film_cut_off", "orientation_undecided"]
    r = checks.check_geometry(geom, config=CONFIG)[0]
    assert r.severity == "review" and r.measured is True
    assert not samples["film_01"].geom.touches_bed_edge
    assert "film_cut_off" not in codes(checks.check_geometry(samples["film_01"].geom, config=CONFIG))


def test_skew_unmeasured_held_for_review(samples):
    """skew_source 'none' (no trustworthy edge, no content direction): held; measured skews are not."""
    geom = replace(samples["film_01"].geom, skew_source="none", skew_deg=0.0)
    (r,) = [r for r in checks.check_geometry(geom, config=CONFIG) if r.code == "skew_unmeasured"]
    assert r.severity == "review"
    for src in ("edges", "content"):
        geom = replace(samples["film_01"].geom, skew_source=src)
        assert "skew_unmeasured" not in codes(checks.check_geometry(geom, config=CONFIG))
    assert samples["film_01"].geom.skew_source == "edges"


def test_two_films_on_the_bed(samples):
    a, b = samples["film_01"].scan, samples["film_07"].scan  # both 12-bit in uint16
    rows = min(a.shape[0], b.shape[0])
    bed = np.concatenate([a[:rows], b[:rows]], axis=1)
    _, geom = geometry.straighten(bed, max_skew_deg=20.0)
    r = checks.check_geometry(geom, config=CONFIG)[0]
    assert (r.code, r.severity, r.measured, r.threshold) == ("multiple_films", "review", 2, 1)
    assert "multiple_films" not in codes(checks.check_geometry(samples["film_07"].geom, config=CONFIG))


def _bedless(s: Sample) -> np.ndarray:
    """The sample's straightened film cut 8 px inside its edges: a scan already cropped to the film."""
    return np.ascontiguousarray(s.film[8:-8, 8:-8])


@pytest.mark.parametrize("name", ["film_02", "film_08"])
def test_bedless_scan_gives_one_clear_finding(samples, name):
    """No bed around the film (the flow's detection, content skew on): one ``no_bed_visible``
    finding instead of the ``film_cut_off`` (the whole scan touches its edge), ``multiple_films``
    (film_02's anatomy counted as 2+ films), ``polarity_doubtful`` (no bed to judge) and
    ``residual_skew_unmeasured`` the bed-less scan implied."""
    scan = _bedless(samples[name])
    _, geom = geometry.straighten(scan, max_skew_deg=20.0, content_min_confidence=0.12)
    assert geom.skew_source == "content" and geom.touches_bed_edge
    assert not checks.bed_visible(geom)
    found = checks.check_geometry(geom, config=CONFIG)
    assert codes(found) == ["no_bed_visible", "orientation_undecided"]
    assert (found[0].severity, found[0].measured) == ("review", "content")
    assert "no scanner bed" in found[0].reason and "skew taken from the image content" in found[0].reason
    margin = checks.polarity_margin(scan)
    assert codes(checks.check_polarity(margin, config=CONFIG)) == ["polarity_doubtful"]  # without the geometry: as before
    assert checks.check_polarity(margin, config=CONFIG, geometry=geom) == []
    assert checks.check_residual_skew(None, config=CONFIG, geometry=geom) == []
    if name == "film_02":
        assert geom.film_count > 1  # what multiple_films used to report


def test_bedless_scan_with_unmeasured_skew(samples):
    """Skew source 'none' on the whole scan: still the one finding (not skew_unmeasured), saying the
    film was left unrotated; a site may record it only (``qc.no_bed_severity = 'info'``)."""
    scan = _bedless(samples["film_08"])
    det = geometry.content_detection(scan, min_confidence=1.0)  # no content angle is that confident
    _, geom = geometry.straighten(scan, max_skew_deg=20.0, detection=det)
    assert (geom.skew_source, geom.skew_deg) == ("none", 0.0)
    (r, _) = checks.check_geometry(geom, config=CONFIG)
    assert (r.code, r.severity, r.measured) == ("no_bed_visible", "review", "none")
    assert "film left unrotated" in r.reason
    relaxed = QCConfig(no_bed_severity="info")
    assert [(f.code, f.severity) for f in checks.check_geometry(geom, config=relaxed)] == [
        ("no_bed_visible", "info"), ("orientation_undecided", "info")]
    with pytest.raises(ValueError):
        QCConfig(no_bed_severity="pass")


def test_real_geometry_defects_on_the_bed_keep_their_codes(samples):
    """Through the flow's detection (content skew on), a film running off the bed and two films on
    the bed are still film_cut_off and multiple_films, not no_bed_visible."""
    a, b = samples["film_01"].scan, samples["film_07"].scan
    rows = min(a.shape[0], b.shape[0])
    for img, code in ((a[:, : a.shape[1] * 2 // 3], "film_cut_off"), (np.concatenate([a[:rows], b[:rows]], axis=1), "multiple_films")):
        _, geom = geometry.straighten(img, max_skew_deg=20.0, content_min_confidence=0.12)
        assert checks.bed_visible(geom)
        found = codes(checks.check_geometry(geom, config=CONFIG))
        assert code in found and "no_bed_visible" not in found
    for name in NAMES:
        assert checks.bed_visible(samples[name].geom)


def test_film_not_found_is_a_fail(samples):
    s = samples["film_01"]
    bed_only = np.full_like(s.scan, int(np.percentile(s.scan, 99)))
    with pytest.raises(FilmNotFoundError) as info:
        geometry.straighten(bed_only, max_skew_deg=20.0)
    (r,) = checks.check_film_error(info.value)
    assert (r.code, r.severity) == ("film_not_found", "fail")


# --- polarity --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_polarity_margin_clear_on_samples_and_their_negatives(samples, name):
    s = samples[name]
    margin = checks.polarity_margin(s.scan)
    assert margin >= CONFIG.min_polarity_margin  # measured 0.141 (film_12) .. 0.507 (film_06)
    assert checks.check_polarity(margin, config=CONFIG) == []
    negative = polarity.invert(s.scan, bits_stored=s.bits)
    assert polarity.detect_inverted(negative)
    assert checks.polarity_margin(negative) == pytest.approx(margin, abs=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_negatives_on_the_bed_clear_the_bed_level(samples, name):
    """Each sample's negative, inverted back by the flow's rule: the bed lies clearly above the
    whole film (measured 0.16-0.20), so ``inversion_doubtful`` stays quiet."""
    s = samples[name]
    positive = polarity.invert(polarity.invert(s.scan, bits_stored=s.bits), bits_stored=s.bits)
    film, geom = geometry.straighten(positive, max_skew_deg=20.0)
    clearance = polarity.bed_clearance(film, geom.bed_level, inset_px=8)
    assert 0.1 < clearance < 0.3
    assert checks.check_inversion(True, clearance, config=CONFIG) == []


def test_inversion_doubtful_when_the_bed_is_no_brighter_than_the_film():
    rng = np.random.default_rng(6)
    film = np.clip(rng.normal(2000, 300, (300, 200)), 0, 4095).astype(np.uint16)
    hi = float(np.percentile(film[8:-8, 8:-8], 99.9))
    lo = float(np.percentile(film[8:-8, 8:-8], 0.1))
    # the clearance is (bed - p99.9) / (bed - p0.1) of the film inside an 8-px inset
    for bed in (hi + 0.3 * (hi - lo), hi, hi - 50):
        assert polarity.bed_clearance(film, bed) == pytest.approx((bed - hi) / (bed - lo))
    doubtful = polarity.bed_clearance(film, hi + 0.01 * (hi - lo))
    (r,) = checks.check_inversion(True, doubtful, config=CONFIG)
    assert r.code == "inversion_doubtful" and r.severity == "review" and r.threshold == CONFIG.min_bed_clearance
    assert checks.check_inversion(False, doubtful, config=CONFIG) == []  # not inverted: nothing to doubt
    assert checks.check_inversion(True, None, config=CONFIG) == []  # no bed measured: no_bed_visible says why
    assert polarity.bed_clearance(np.full((50, 50), 7, np.uint8), 7.0) == 0.0
    # a wide bed margin kept around the film (geometry.bed_margin_mm) is left out whenever any
    # film is left inside it, not measured as film
    framed = np.pad(film, 60, constant_values=4000)  # 420 x 320: less than 4 x (60 + 8) across
    assert polarity.bed_clearance(framed, 4000.0, inset_px=68) == pytest.approx(
        polarity.bed_clearance(film, 4000.0, inset_px=8))
    with pytest.raises(ValueError):
        polarity.bed_clearance(np.zeros((0, 5), np.uint8), 1.0)


def test_polarity_doubtful_with_a_grey_bed(samples):
    s = samples["film_01"]
    rng = np.random.default_rng(5)
    grey = s.scan.copy()
    w = int(0.05 * min(grey.shape))
    ring = np.ones(grey.shape, bool)
    ring[w:-w, w:-w] = False
    grey[ring] = np.clip(rng.normal(np.median(s.scan[w:-w, w:-w]), 2, ring.sum()), 0, full(s)).astype(grey.dtype)
    margin = checks.polarity_margin(grey)
    (r,) = checks.check_polarity(margin, config=CONFIG)
    assert (r.code, r.severity, r.threshold) == ("polarity_doubtful", "review", CONFIG.min_polarity_margin)
    assert r.measured < 0


def test_polarity_doubtful_without_bed(samples):
    s = samples["film_01"]
    assert checks.polarity_margin(s.film) == -checks.POLARITY_DECISION_OFFSET  # a crop: dark, textured border
    assert codes(checks.check_polarity(checks.polarity_margin(s.film), config=CONFIG)) == ["polarity_doubtful"]


def _polarity_by_numpy(img: np.ndarray) -> tuple[bool, float]:
    """Decision and margin of the polarity rule written with numpy sorts over float64 copies (qc's
    own copy of the rule before it took pipeline.polarity.assess's histogram statistics)."""
    w = max(2, int(min(img.shape) * 0.02))
    ring = np.concatenate([img[:w].ravel(), img[-w:].ravel(), img[:, :w].ravel(), img[:, -w:].ravel()]).astype(np.float64)
    inner = img[w:-w, w:-w]
    p5, p95 = np.percentile(img, [5, 95])
    spread = max(float(p95 - p5), 1e-9)
    if inner.size == 0 or float(np.percentile(ring, 75) - np.percentile(ring, 25)) >= 0.1 * spread:
        return False, -0.25
    s = (float(np.median(inner)) - float(np.median(ring))) / spread
    return s > 0.25, abs(s) - 0.25


@pytest.mark.parametrize("name", NAMES)
def test_polarity_margin_equals_the_numpy_rule(samples, name):
    s = samples[name]
    rng = np.random.default_rng(17)
    noisy = np.clip(s.scan.astype(np.float64) + rng.normal(0, 0.05 * full(s), s.scan.shape), 0, full(s)).astype(s.scan.dtype)
    for img in (s.scan, polarity.invert(s.scan, bits_stored=s.bits), s.film, noisy, s.scan[:5, :40]):
        inverted, margin = _polarity_by_numpy(img)
        assert checks.polarity_margin(img) == pytest.approx(margin, abs=1e-12)
        assert polarity.detect_inverted(img) == inverted


# --- label -----------------------------------------------------------------------------------------
GOOD_FIELDS = {
    "PatientName": FieldValue("DOE^JANE", 91.0, "DOE, JANE"),
    "PatientID": FieldValue("00123456", 88.0, "00123456"),
    "StudyDate": FieldValue("20190402", 85.0, "2019-04-02"),
}
PRINTED = LabelRegion(box=(20, 20, 120, 400))


def test_label_ok():
    assert checks.check_label(LabelReading(fields=dict(GOOD_FIELDS), region=PRINTED), config=CONFIG) == []


def test_label_not_found():
    (r,) = checks.check_label(LabelReading(fields={}), config=CONFIG)
    assert (r.code, r.severity) == ("label_not_found", "review")


def test_required_field_missing():
    fields = {k: v for k, v in GOOD_FIELDS.items() if k != "PatientID"}
    (r,) = checks.check_label(LabelReading(fields=fields, region=PRINTED), config=CONFIG)
    assert (r.code, r.severity) == ("missing_PatientID", "review")


def test_field_confidence_below_threshold():
    fields = dict(GOOD_FIELDS, StudyDate=FieldValue("20190402", 31.5, "2019-O4-02"))
    (r,) = checks.check_label(LabelReading(fields=fields, region=PRINTED), config=CONFIG)
    assert (r.code, r.severity, r.measured, r.threshold) == ("low_confidence_StudyDate", "review", 31.5, CONFIG.min_field_confidence)


def test_handwriting_suspected():
    reading = LabelReading(fields={}, region=replace(PRINTED, kind="handwritten"))
    result = checks.check_label(reading, config=CONFIG)
    assert codes(result)[0] == "handwriting" and result[0].severity == "review"
    assert "handwriting" not in codes(checks.check_label(LabelReading(fields=dict(GOOD_FIELDS), region=replace(PRINTED, kind="adhesive")), config=CONFIG))


# --- identity --------------------------------------------------------------------------------------
ROW = ManifestRow(line=2, PatientID="00123456", PatientName="DOE^JANE", PatientBirthDate="19560314", StudyDate="20190402")


def test_manifest_agree():
    assert checks.check_identity(Reconciliation("agree", row=ROW, candidates=(ROW,))) == []


def test_manifest_disagree_names_fields_not_values():
    recon = Reconciliation("disagree", row=ROW, candidates=(ROW,), disagreements=(
        FieldDisagreement("PatientID", "00123465", "00123456"), FieldDisagreement("StudyDate", "20190403", "20190402")))
    (r,) = checks.check_identity(recon)
    assert (r.code, r.severity, r.measured) == ("manifest_disagree", "review", "PatientID, StudyDate")
    assert "PatientID" in r.reason and "StudyDate" in r.reason
    assert "00123456" not in r.reason and "00123465" not in r.reason


def test_manifest_ambiguous_and_no_match():
    (r,) = checks.check_identity(Reconciliation("ambiguous", candidates=(ROW, replace(ROW, line=3))))
    assert (r.code, r.severity, r.measured) == ("manifest_ambiguous", "review", 2)
    (r,) = checks.check_identity(Reconciliation("no_match"))
    assert (r.code, r.severity, r.measured) == ("manifest_no_match", "review", 0)


def test_same_scan_twice_by_sha256(tmp_path):
    src = SAMPLES / "film_03.png"
    copy_path = tmp_path / "again.png"
    copy_path.write_bytes(src.read_bytes())
    a = scan_io.load_scan(src, default_dpi=150.0, max_pixels=200_000_000)
    b = scan_io.load_scan(copy_path, default_dpi=150.0, max_pixels=200_000_000)
    assert a.sha256 == b.sha256
    (r,) = checks.check_duplicate([str(src)])
    assert (r.code, r.severity, r.measured) == ("duplicate_scan", "review", 1)
    assert checks.check_duplicate([]) == []


# --- identity: near-duplicate film ---------------------------------------------------------------
@pytest.fixture(scope="module")
def hashes(samples) -> dict[str, str]:
    return {name: phash.film_phash(s.film) for name, s in samples.items()}


def test_phash_is_16_hex_chars(hashes):
    assert all(len(h) == 16 and int(h, 16) >= 0 for h in hashes.values())


@pytest.mark.parametrize("name", ["film_01", "film_03", "film_10"])
def test_noisy_copy_is_a_near_duplicate(samples, hashes, name):
    s = samples[name]
    rng = np.random.default_rng(11)
    noisy = np.clip(s.film + rng.normal(0, 0.02 * full(s), s.film.shape), 0, full(s)).astype(s.film.dtype)
    others = {f"other/{k}": v for k, v in hashes.items() if k != name}
    known = dict(others, **{f"earlier/{name}": hashes[name]})
    (r,) = checks.check_near_duplicate(phash.film_phash(noisy), known, CONFIG.max_phash_distance)
    assert (r.code, r.severity, r.threshold) == ("near_duplicate", "review", CONFIG.max_phash_distance)
    assert r.measured <= 2
    assert f"earlier/{name}" not in r.reason  # no paths in the reason
    assert [k for k, _ in phash.near_matches(phash.film_phash(noisy), known, CONFIG.max_phash_distance)] == [f"earlier/{name}"]


def test_rescan_rotated_on_the_bed_is_a_near_duplicate(samples, hashes):
    s = samples["film_05"]
    rows, cols = s.scan.shape
    m = cv2.getRotationMatrix2D(((cols - 1) / 2, (rows - 1) / 2), 1.5, 1.0)
    rescan = cv2.warpAffine(s.scan, m, (cols, rows), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    film, _ = geometry.straighten(rescan, max_skew_deg=20.0)
    (r,) = checks.check_near_duplicate(phash.film_phash(film), {"a": hashes["film_05"]}, CONFIG.max_phash_distance)
    assert r.measured <= 3


def test_different_films_are_not_near_duplicates(hashes):
    """All 66 pairs of different films, including film_02/film_09 (the same radiograph, cropped differently)."""
    distances = {(a, b): phash.hamming(hashes[a], hashes[b]) for a, b in itertools.combinations(sorted(hashes), 2)}
    assert min(distances.values()) > CONFIG.max_phash_distance + 4  # measured minimum 18
    for name, h in hashes.items():
        known = {k: v for k, v in hashes.items() if k != name}
        assert checks.check_near_duplicate(h, known, CONFIG.max_phash_distance) == []


def test_hamming_rejects_mixed_lengths():
    with pytest.raises(ValueError):
        phash.hamming("00ff", "00ff00ff")


def test_known_phashes_from_ledger(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    try:
        for path, batch, h in [("/scans/b1/a.tif", "b1", "9260cee7ccc6a734"), ("/scans/b2/b.tif", "b2", "893db49223b71b1b"), ("/scans/b2/c.tif", "b2", None)]:
            ledger.discover(path, sha256=path, batch=batch)
            ledger.transition(path, "processed", record={"phash": h} if h else {"source_file": "c.tif"})
        assert phash.known_phashes(ledger, exclude_path="/scans/b2/b.tif") == {"/scans/b1/a.tif": "9260cee7ccc6a734"}
        assert set(phash.known_phashes(ledger, exclude_path="")) == {"/scans/b1/a.tif", "/scans/b2/b.tif"}
    finally:
        ledger.close()


# --- DICOM -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset(samples):
    s = samples["film_01"]
    uids = film_uids(root="2.25", sha256="0" * 64, patient_id="00123456", study_date="20190402",
                     accession_number="A1")
    header = {"PatientID": "00123456", "PatientName": "DOE^JANE", "PatientBirthDate": "", "PatientSex": "",
              "StudyDate": "20190402", "AccessionNumber": "A1", "InstitutionName": "X"}
    return build_film_dataset(s.film, bits_stored=s.bits, pixel_spacing_mm=25.4 / s.dpi, header=header,
                              uids=uids, config=DicomConfig(), skew_deg=s.geom.skew_deg)


def test_iod_ok(dataset):
    assert checks.check_iod(dataset) == []


@pytest.mark.parametrize(
    "keyword, value, code, measured",
    [
        ("ConversionType", "DI", "iod_conversion_type", "DI"),
        ("NominalScannedPixelSpacing", [0.2, 0], "iod_pixel_spacing", "0.2,0"),
        ("NominalScannedPixelSpacing", None, "iod_pixel_spacing", None),
        ("BurnedInAnnotation", "NO", "iod_burned_in", "NO"),
        ("BitsStored", 17, "iod_bits", "17/16"),
        ("PhotometricInterpretation", "MONOCHROME1", "iod_photometric", "MONOCHROME1"),
        ("SeriesInstanceUID", "1.2.03.4", "iod_uid", "SeriesInstanceUID"),
        # too long (66 characters), and so no longer the file meta's Media Storage SOP Instance UID
        ("SOPInstanceUID", "2.25." + "1" * 61, "iod_uid", "SOPInstanceUID,MediaStorageSOPInstanceUID"),
    ],
)
@pytest.mark.filterwarnings("ignore:.*VR UI:UserWarning")  # pydicom warns when we plant a bad UID
def test_iod_violations(dataset, keyword, value, code, measured):
    ds = copy.deepcopy(dataset)
    if value is None:
        delattr(ds, keyword)
    else:
        setattr(ds, keyword, value)
    result = checks.check_iod(ds)
    (r,) = [x for x in result if x.code == code]
    assert r.severity == "fail"
    assert r.measured == measured


def test_iod_file_meta_uid_mismatch(dataset):
    ds = copy.deepcopy(dataset)
    ds.file_meta.MediaStorageSOPInstanceUID = "2.25.12345"
    (r,) = checks.check_iod(ds)
    assert (r.code, r.severity, r.measured) == ("iod_uid", "fail", "MediaStorageSOPInstanceUID")


def test_dciodvfy_errors_are_flagged():
    @dataclass
    class F:
        level: str
        message: str

    (r,) = checks.check_dicom([F("warning", "w"), F("error", "Missing attribute Type 1 Required Element=ConversionType")])
    assert (r.code, r.severity, r.measured) == ("dicom_invalid", "review", 1)
    assert checks.check_dicom([F("warning", "w")]) == []


# --- summary ---------------------------------------------------------------------------------------
def test_summarise_counts_films_per_code():
    per_film = {
        "a": [QCResult("blurred", "review", 0.2, 1.0), QCResult("low_confidence_PatientID", "review"), QCResult("low_confidence_PatientID", "review")],
        "b": [QCResult("blurred", "review", 0.3, 1.0).to_dict()],  # as stored in record['qc']
        "c": [],
    }
    assert checks.summarise(per_film) == {"blurred": 2, "low_confidence_PatientID": 1}
    assert checks.summarise(list(per_film.values())) == {"blurred": 2, "low_confidence_PatientID": 1}
    assert checks.summarise({}) == {}


def test_low_confidence_field_corroborated_by_the_manifest_is_info_only():
    reading = LabelReading(fields={"PatientID": FieldValue("00123456", 30.0), "PatientName": FieldValue("DOE^JO", 90.0),
                                   "StudyDate": FieldValue("20190402", 20.0)},
                           region=LabelRegion((0, 0, 10, 10)))
    plain = checks.check_label(reading, config=QCConfig())
    assert {(f.code, f.severity) for f in plain} == {("low_confidence_PatientID", "review"), ("low_confidence_StudyDate", "review")}
    confirmed = checks.check_label(reading, config=QCConfig(), corroborated=["PatientID"])
    assert {(f.code, f.severity) for f in confirmed} == {("low_confidence_PatientID", "info"), ("low_confidence_StudyDate", "review")}
    assert [f.measured for f in confirmed if f.code == "low_confidence_PatientID"] == [30.0]


def test_scratches_inpainted_holds_the_film():
    """Any line inpainted as a scratch holds the film for review (a catheter passes for one);
    none inpainted, or the repair off (0), passes."""
    assert checks.check_scratches(0) == []
    (r,) = checks.check_scratches(2, 340)
    assert (r.code, r.severity, r.measured) == ("scratches_inpainted", "review", 2)
    assert "catheter" in r.reason and "(340 pixels)" in r.reason
