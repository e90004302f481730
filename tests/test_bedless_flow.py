"""A scan showing no scanner bed, through flows.film.process_film: held for one clear reason.

Test inputs (provenance in sample_scans/SOURCES.md: synthetic film scans made from real
public radiographs, labels invented), all made in memory or under tmp_path, nothing written
back:

- sample_scans/film_08.png and film_02.tif straightened on their bed and cut 8 px inside the
  film's edges, saved as PNG/TIFF: a scan already cropped to the film (no bed). Purpose: the
  report says ``no_bed_visible`` alone instead of film_cut_off / multiple_films (film_02's
  anatomy is counted as two films) / polarity_doubtful / residual_skew_unmeasured.
- the same bed-less film_08 inverted: a negative without a bed cannot be recognised; it is
  held for the same one reason.
- sample_scans/film_08.png inverted whole (bed included): a negative on the bed is still
  inverted and passes, as before.
- the bed-less film_08 framed by a 40-px burned-out border (direct exposure: the level of the
  film's own darkest areas, or 6 % of full scale darker, with grain), positive: the polarity rule takes the border for a negative's bed and inverts it;
  it is held (``inversion_doubtful``) instead of archived as a negative, and the reviewer's
  "polarity as scanned" re-processing keeps it positive.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from filmflow.config import load_settings
from flows.film import process_film
from pipeline import geometry, polarity, scan_io
from pipeline.manifest import load_manifest

SAMPLES = Path(__file__).resolve().parent.parent / "sample_scans"
#: Findings from the label's fields (OCR confidences, Tesseract-version dependent): not what is tested here.
LABEL_CODES = ("low_confidence_", "missing_")


def _run(tmp_path: Path, name: str, pixels: np.ndarray, dpi: float, source_file: str, **qc: str):
    settings = load_settings(SAMPLES / "filmflow.toml", qc=qc or None)
    src = tmp_path / f"{name}.png"
    Image.fromarray(pixels).save(src, dpi=(dpi, dpi))
    staging = tmp_path / f"staging-{name}"
    staging.mkdir()
    rows = load_manifest(SAMPLES / "manifest.csv", settings.manifest)
    return process_film(src, source_file=source_file, settings=settings, batch_name="b", manifest_rows=rows,
                        staging_dir=staging)


def _bedless(sample: str) -> tuple[np.ndarray, float, int]:
    scan = scan_io.load_scan(SAMPLES / sample, default_dpi=150.0, max_pixels=10**9)
    film, geom = geometry.straighten(scan.pixels, max_skew_deg=20.0)
    assert geom.skew_source == "edges" and not geom.touches_bed_edge
    return np.ascontiguousarray(film[8:-8, 8:-8]), scan.dpi, scan.bits_stored


def _image_findings(record: dict) -> list[tuple[str, str]]:
    return [(f["code"], f["severity"]) for f in record["qc"] if not f["code"].startswith(LABEL_CODES)]


@pytest.mark.parametrize("sample", ["film_08.png", "film_02.tif"])
def test_bedless_film_is_held_for_one_clear_reason(tmp_path, sample):
    pixels, dpi, _ = _bedless(sample)
    out = _run(tmp_path, "bedless", pixels, dpi, sample)
    assert out.state == "flagged"
    geom = out.record["geometry"]
    assert geom["skew_source"] == "content" and geom["touches_bed_edge"]
    assert out.record["qc_flags"] == "no_bed_visible"  # the only reason it is held
    assert _image_findings(out.record) == [("no_bed_visible", "review")]
    (finding,) = [f for f in out.record["qc"] if f["code"] == "no_bed_visible"]
    assert "no scanner bed around the film" in finding["reason"]
    if sample == "film_02.tif":
        assert geom["film_count"] > 1  # anatomy counted as films: no multiple_films from it any more


def test_bedless_negative_is_held_for_the_same_reason(tmp_path):
    pixels, dpi, bits = _bedless("film_08.png")
    out = _run(tmp_path, "bedless-negative", polarity.invert(pixels, bits_stored=bits), dpi, "film_08.png")
    assert out.state == "flagged" and not out.record["inverted"]  # no bed: polarity cannot be judged
    assert out.record["qc_flags"] == "no_bed_visible"
    assert _image_findings(out.record) == [("no_bed_visible", "review")]


def test_site_may_accept_bedless_films(tmp_path):
    """``qc.no_bed_severity = "info"`` (a digitizer that delivers the film alone): recorded, not held."""
    pixels, dpi, _ = _bedless("film_08.png")
    out = _run(tmp_path, "bedless-info", pixels, dpi, "film_08.png", no_bed_severity="info")
    assert out.state == "processed", (out.record["qc_flags"], out.error)
    assert out.record["qc_flags"] == ""
    assert _image_findings(out.record) == [("no_bed_visible", "info")]
    assert "no scanner bed visible: film edges, polarity and wholeness not checked (qc.no_bed_severity = info)" \
        in out.record["notes"]  # accepted, but the report still says what was not checked


def test_negative_on_the_bed_is_still_inverted(tmp_path):
    scan = scan_io.load_scan(SAMPLES / "film_08.png", default_dpi=150.0, max_pixels=10**9)
    negative = polarity.invert(scan.pixels, bits_stored=scan.bits_stored)
    out = _run(tmp_path, "negative", negative, scan.dpi, "film_08.png")
    assert out.record["inverted"] and out.record["geometry"]["skew_source"] == "edges"
    assert out.state == "processed", (out.record["qc_flags"], out.error)
    assert not {f["code"] for f in out.record["qc"]} & {"no_bed_visible", "polarity_doubtful", "film_cut_off",
                                                       "inversion_doubtful"}
    assert out.record["bed_clearance"] >= 0.1  # a real bed: brighter than any part of the film
    # the review page's processed image is the flow's positive: the same inversion, the same film
    from qc.review.previews import processed_pixels

    settings = load_settings(SAMPLES / "filmflow.toml")
    shown, _ = processed_pixels(str(tmp_path / "negative.png"), out.record, settings)
    margin_px = int(round(settings.geometry.bed_margin_mm / 25.4 * scan.dpi))
    film, _ = geometry.straighten(scan.pixels, max_skew_deg=settings.geometry.max_skew_deg, margin_px=margin_px,
                                  content_min_confidence=settings.geometry.content_skew_min_confidence)
    np.testing.assert_array_equal(shown, film)


@pytest.mark.parametrize("darker", [0.0, 0.06])
def test_burned_out_border_without_bed_is_not_silently_inverted(tmp_path, darker):
    pixels, dpi, bits = _bedless("film_08.png")
    top = (1 << bits) - 1
    rng = np.random.default_rng(8)
    # the border as dense as the film's own burned-out areas (direct exposure: the same density),
    # or 6 % of full scale darker than anything on the film (the first threshold, 0.05, missed it)
    level = max(0, int(np.percentile(pixels, 0.5) - darker * top))
    framed = np.pad(pixels, 40, constant_values=level).astype(np.float64)
    framed[:40] += rng.normal(0, 0.004 * top, framed[:40].shape)  # film grain on the black border
    framed[-40:] += rng.normal(0, 0.004 * top, framed[-40:].shape)
    framed = np.clip(np.rint(framed), 0, top).astype(pixels.dtype)
    out = _run(tmp_path, "framed", framed, dpi, "film_08.png")
    assert out.record["inverted"]  # the ring rule alone cannot tell this border from a negative's bed
    assert out.state == "flagged" and "inversion_doubtful" in out.record["qc_flags"].split(";")
    (finding,) = [f for f in out.record["qc"] if f["code"] == "inversion_doubtful"]
    assert finding["severity"] == "review" and finding["measured"] < 0.1 and "dark border" in finding["reason"]
    assert not out.staged_path

    # the reviewer's "polarity as scanned" (qc.review.store.settings_overrides) keeps it positive
    from qc.review.store import settings_overrides
    from flows.release import settings_for

    kept, _ = settings_for(load_settings(SAMPLES / "filmflow.toml"), settings_overrides(None, False, True))
    assert kept.geometry.fix_polarity is False
    src = tmp_path / "framed.png"
    again = process_film(src, source_file="film_08.png", settings=kept, batch_name="b", manifest_rows=None,
                         staging_dir=tmp_path / "staging-framed")
    assert not again.record["inverted"] and "inversion_doubtful" not in again.record["qc_flags"]
