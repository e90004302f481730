"""Tests of pipeline.dicom_film: build, write, read back, decode, validate with dciodvfy.

Inputs (provenance):
- /work/shared/data/radiographs/RG2_UNC.dcm: CR hip, Fuji, 1760x2140, 10 bits; NEMA WG04
  compression test set; NEMA public test images. Purpose: real 16-bit radiograph pixels.
- /work/shared/data/radiographs/00870a9c.jpg: bedside chest radiograph, 8-bit; Hannover
  Medical School COVID-19 repository via covid-chestxray-dataset; CC BY 3.0. Purpose: real
  8-bit pixels (Byte SC).
- /work/shared/data/digitized_films/SC1_UNC.dcm: CT film digitized by a CEMAX digitizer;
  NEMA WG04; NEMA public test images. Purpose: what a real digitizer writes (dciodvfy Error).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from conftest import SHARED_DATA
from filmflow.config import DicomConfig
from filmflow.errors import DicomBuildError
from pipeline.dicom_film import (
    MF_GRAYSCALE_BYTE_SC_STORAGE,
    MF_GRAYSCALE_WORD_SC_STORAGE,
    SC_IMAGE_STORAGE,
    TRANSFER_SYNTAXES,
    as_plain_sc,
    build_film_dataset,
    build_original_dataset,
    pixel_sha256,
    write_dataset,
)
from pipeline.uids import film_uids
from qc.dciodvfy import run_dciodvfy

RG2 = SHARED_DATA / "radiographs" / "RG2_UNC.dcm"
JPG = SHARED_DATA / "radiographs" / "00870a9c.jpg"
CEMAX = SHARED_DATA / "digitized_films" / "SC1_UNC.dcm"

HEADER = {
    "PatientName": "DOE^JANE",
    "PatientID": "PID001",
    "PatientBirthDate": "19450312",
    "PatientSex": "F",
    "StudyDate": "19970706",
    "AccessionNumber": "ACC42",
    "InstitutionName": "",
}
CONFIG = DicomConfig(
    digitizer_manufacturer="Epson",
    digitizer_model="Perfection V850",
    digitizer_software="EPSON Scan 3.9",
    digitizer_device_id="SCANNER-01",
    institution_name="General Hospital",
)
UIDS = film_uids(root="2.25", sha256=hashlib.sha256(b"RG2 scan").hexdigest(), patient_id="PID001",
                 study_date="19970706", accession_number="ACC42")

# dciodvfy warnings that remain, with reasons (everything else is a test failure):
# - Study Time is empty: a film carries its exam date, never its time; filmflow does not
#   invent one (Type 2, so empty is conformant; dciodvfy only notes a DICOMDIR would want it).
STUDY_TIME = "Missing attribute or value that would be needed to build DICOMDIR - Study Time"
# - Laterality is empty when the laterality of the film is unknown: the standard asks for
#   empty "when actually unknown", which it is (Type 2C; absent is the CEMAX film's Error).
#   With a known laterality (Image Laterality set, Laterality absent) this warning goes away.
LATERALITY_UNKNOWN = ("is only permitted to be empty when actually unknown; should be absent (not empty) "
                      "if an unpaired body part, and have a value if a paired body part - attribute <Laterality>")


@pytest.fixture(scope="module")
def rg2() -> np.ndarray:
    px = pydicom.dcmread(RG2).pixel_array
    assert px.dtype == np.uint16
    return px


@pytest.fixture(scope="module")
def rg2_crop(rg2) -> np.ndarray:
    return np.ascontiguousarray(rg2[800:1312, 600:1112])


@pytest.fixture(scope="module")
def jpg8() -> np.ndarray:
    with Image.open(JPG) as im:
        px = np.asarray(im.convert("L"))
    assert px.dtype == np.uint8
    return np.ascontiguousarray(px[500:1012, 500:1012])


def build(pixels, **kw):
    args = dict(bits_stored=8 if pixels.dtype == np.uint8 else 12, pixel_spacing_mm=0.0847,
                header=HEADER, uids=UIDS, config=CONFIG)
    args.update(kw)
    return build_film_dataset(pixels, **args)


def check_dciodvfy(path: Path, allowed: set[str]) -> list[str]:
    findings = run_dciodvfy(path)
    errors = [f.message for f in findings if f.level == "error"]
    warnings = [f.message for f in findings if f.level == "warning"]
    assert errors == []
    assert set(warnings) <= allowed, warnings
    return warnings


# --- the object ---------------------------------------------------------------------------------
def test_word_mf_sc_full_radiograph_round_trip(rg2, tmp_path):
    ds = build(rg2, skew_deg=-1.25, laterality="L", derivation_description="deskewed, cropped to film")
    path = write_dataset(ds, tmp_path / "film.dcm")
    back = pydicom.dcmread(path)
    assert back.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert back.SOPClassUID == MF_GRAYSCALE_WORD_SC_STORAGE
    assert back.file_meta.MediaStorageSOPClassUID == MF_GRAYSCALE_WORD_SC_STORAGE
    assert back.SOPInstanceUID == UIDS.sop_instance_uid == back.file_meta.MediaStorageSOPInstanceUID
    assert (back.BitsAllocated, back.BitsStored, back.HighBit, back.PixelRepresentation) == (16, 12, 11, 0)
    assert back.NumberOfFrames == 1 and "FrameIncrementPointer" not in back
    assert back.ConversionType == "DF" and back.Modality == "OT"
    assert [float(v) for v in back.NominalScannedPixelSpacing] == [0.0847, 0.0847]
    assert back.BurnedInAnnotation == "YES" and back.PresentationLUTShape == "IDENTITY"
    assert (back.RescaleIntercept, back.RescaleSlope, back.RescaleType) == (0, 1, "US")
    assert back.PhotometricInterpretation == "MONOCHROME2" and back.SamplesPerPixel == 1
    assert float(back.RotationOfScannedFilm) == -1.25
    assert back.ImageLaterality == "L" and "Laterality" not in back
    assert back.PatientOrientation == ""
    assert back.SecondaryCaptureDeviceManufacturer == "Epson"
    assert back.SecondaryCaptureDeviceID == "SCANNER-01"
    assert back.InstitutionName == "General Hospital"
    assert back.StudyID == "ACC42"
    assert (back.ContentDate, back.ContentTime) == ("19970706", "000000")
    assert "SpecificCharacterSet" not in back
    out = back.pixel_array
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, rg2)
    assert pixel_sha256(back) == hashlib.sha256(rg2.tobytes()).hexdigest() == pixel_sha256(ds)
    # Laterality known: no warning about it.
    assert check_dciodvfy(path, {STUDY_TIME}) == [STUDY_TIME]


@pytest.mark.parametrize(
    "kind, sop_class",
    [
        ("word_mf", MF_GRAYSCALE_WORD_SC_STORAGE),
        ("byte_mf", MF_GRAYSCALE_BYTE_SC_STORAGE),
        ("plain_sc_config_word", SC_IMAGE_STORAGE),
        ("plain_sc_config_byte", SC_IMAGE_STORAGE),
        ("as_plain_sc", SC_IMAGE_STORAGE),
        ("non_ascii_name", MF_GRAYSCALE_WORD_SC_STORAGE),
    ],
)
def test_each_object_kind_passes_dciodvfy(kind, sop_class, rg2_crop, jpg8, tmp_path):
    if kind == "word_mf":
        ds = build(rg2_crop)
    elif kind == "byte_mf":
        ds = build(jpg8)
    elif kind == "plain_sc_config_word":
        ds = build(rg2_crop, config=CONFIG.model_copy(update={"sop_class": "sc"}), skew_deg=2.0)
    elif kind == "plain_sc_config_byte":
        ds = build(jpg8, config=CONFIG.model_copy(update={"sop_class": "sc"}))
    elif kind == "as_plain_sc":
        ds = as_plain_sc(build(rg2_crop, skew_deg=2.0, laterality="R"))
    else:
        ds = build(rg2_crop, header={**HEADER, "PatientName": "MÜLLER^JÖRG", "InstitutionName": "Klinikum Süd"})
    path = write_dataset(ds, tmp_path / f"{kind}.dcm")
    back = pydicom.dcmread(path)
    assert back.SOPClassUID == sop_class == back.file_meta.MediaStorageSOPClassUID
    expected = rg2_crop if back.BitsAllocated == 16 else jpg8
    assert back.pixel_array.dtype == expected.dtype
    np.testing.assert_array_equal(back.pixel_array, expected)
    if kind == "non_ascii_name":
        assert back.SpecificCharacterSet == "ISO_IR 192"
        assert str(back.PatientName) == "MÜLLER^JÖRG"
        assert back.InstitutionName == "Klinikum Süd"
    warnings = check_dciodvfy(path, {STUDY_TIME, LATERALITY_UNKNOWN})
    assert STUDY_TIME in warnings


def test_as_plain_sc_keeps_uids_and_leaves_input_alone(rg2_crop):
    ds = build(rg2_crop, skew_deg=1.0)
    plain = as_plain_sc(ds)
    assert plain.SOPClassUID == SC_IMAGE_STORAGE
    assert ds.SOPClassUID == MF_GRAYSCALE_WORD_SC_STORAGE and "NumberOfFrames" in ds
    for kw in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        assert plain[kw].value == ds[kw].value
    for kw in ("NumberOfFrames", "PresentationLUTShape", "RotationOfScannedFilm"):
        assert kw not in plain
    assert plain.ConversionType == "DF" and "NominalScannedPixelSpacing" in plain


def test_cemax_film_has_the_laterality_error_ours_does_not(rg2_crop, tmp_path):
    cemax = run_dciodvfy(CEMAX)
    assert any(f.level == "error" and "Laterality" in f.message for f in cemax)
    ours = run_dciodvfy(write_dataset(build(rg2_crop), tmp_path / "ours.dcm"))
    assert not [f for f in ours if f.level == "error"]


def test_content_date_and_time_are_passed_through(rg2_crop):
    ds = build(rg2_crop, content_date="20240102", content_time="101500", series_number=3, instance_number=7)
    assert (ds.ContentDate, ds.ContentTime, ds.SeriesNumber, ds.InstanceNumber) == ("20240102", "101500", 3, 7)


def test_inverted_scan_is_recorded(rg2_crop):
    ds = build(rg2_crop, derivation_description="deskew", photometric_inverted_fixed=True)
    assert ds.DerivationDescription.startswith("deskew; ") and "inverted" in ds.DerivationDescription


# --- determinism --------------------------------------------------------------------------------
@pytest.mark.parametrize("ts", ["explicit_vr_le", "jpeg2000_lossless"])
def test_building_twice_gives_identical_bytes(ts, rg2_crop, tmp_path):
    a = write_dataset(build(rg2_crop, skew_deg=0.5), tmp_path / "a.dcm", transfer_syntax=ts)
    b = write_dataset(build(rg2_crop, skew_deg=0.5), tmp_path / "b.dcm", transfer_syntax=ts)
    assert a.read_bytes() == b.read_bytes()


def test_same_scan_gives_identical_objects(rg2_crop, tmp_path):
    # Re-migrating a scan (in any batch: no UID depends on it) must send the archive the same
    # instance in the same series (one SOP Instance UID in two series broke archive integrity),
    # for the film and for the keep_original raw-scan instance alike.
    other = film_uids(root="2.25", sha256=hashlib.sha256(b"RG2 scan").hexdigest(), patient_id="PID001",
                      study_date="19970706", accession_number="ACC42")
    for name, make in (("film", lambda uids: build(rg2_crop, skew_deg=0.5, uids=uids)),
                       ("original", lambda uids: build_original_dataset(
                           rg2_crop, bits_stored=12, pixel_spacing_mm=0.0847, header=HEADER, uids=uids,
                           config=CONFIG, skew_deg=0.5))):
        a = write_dataset(make(UIDS), tmp_path / f"{name}-a.dcm", transfer_syntax="explicit_vr_le")
        b = write_dataset(make(other), tmp_path / f"{name}-b.dcm", transfer_syntax="explicit_vr_le")
        assert a.read_bytes() == b.read_bytes(), name
    film, original = build(rg2_crop, uids=other), build_original_dataset(
        rg2_crop, bits_stored=12, pixel_spacing_mm=0.0847, header=HEADER, uids=other, config=CONFIG)
    assert film.StudyInstanceUID == original.StudyInstanceUID
    assert film.SeriesInstanceUID != original.SeriesInstanceUID


# --- compression --------------------------------------------------------------------------------
def _data(kind: str, rg2_crop, jpg8) -> tuple[np.ndarray, int]:
    if kind == "12bit":
        return rg2_crop << 2, 12  # real 10-bit data spread over 12 bits stored
    if kind == "16bit":
        return (rg2_crop << 6) | 0x3F, 16  # uses the top bit: values up to 65535 range
    return jpg8, 8


@pytest.mark.parametrize("kind", ["12bit", "16bit", "8bit"])
@pytest.mark.parametrize("ts", ["jpeg2000_lossless", "jpegls_lossless", "rle_lossless"])
def test_compressed_round_trip_is_exact(ts, kind, rg2_crop, jpg8, tmp_path):
    pixels, bits = _data(kind, rg2_crop, jpg8)
    ds = build(pixels, bits_stored=bits)
    before = ds.PixelData
    path = write_dataset(ds, tmp_path / "film.dcm", transfer_syntax=ts)
    assert ds.PixelData == before  # input dataset not modified
    back = pydicom.dcmread(path)
    assert back.file_meta.TransferSyntaxUID == TRANSFER_SYNTAXES[ts]
    assert back.SOPInstanceUID == UIDS.sop_instance_uid  # compress() must not mint a new UID
    assert back.BitsStored == bits
    out = back.pixel_array
    assert out.dtype == pixels.dtype
    np.testing.assert_array_equal(out, pixels)
    assert pixel_sha256(back) == pixel_sha256(ds)
    check_dciodvfy(path, {STUDY_TIME, LATERALITY_UNKNOWN})


@pytest.mark.parametrize("ts", list(TRANSFER_SYNTAXES))
def test_high_bits_set_are_refused_when_writing(ts, rg2_crop, tmp_path):
    ds = build(rg2_crop << 2, bits_stored=12)
    ds.BitsStored, ds.HighBit = 10, 9  # data now has bits set above High Bit
    with pytest.raises(DicomBuildError, match="high bits"):
        write_dataset(ds, tmp_path / "film.dcm", transfer_syntax=ts)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary left behind


def test_high_bits_set_are_refused_when_building(rg2_crop):
    with pytest.raises(DicomBuildError, match="exceeds 4095"):
        build((rg2_crop << 2) | 0x8000, bits_stored=12)


# --- writing ------------------------------------------------------------------------------------
def test_write_replaces_atomically_and_leaves_no_temporary(rg2_crop, tmp_path):
    target = tmp_path / "film.dcm"
    target.write_bytes(b"old")
    write_dataset(build(rg2_crop), target)
    assert pydicom.dcmread(target).SOPInstanceUID == UIDS.sop_instance_uid
    assert [p.name for p in tmp_path.iterdir()] == ["film.dcm"]
    assert target.read_bytes()[128:132] == b"DICM"


def test_unknown_transfer_syntax_is_refused(rg2_crop, tmp_path):
    with pytest.raises(DicomBuildError, match="unknown transfer syntax"):
        write_dataset(build(rg2_crop), tmp_path / "x.dcm", transfer_syntax="jpeg_baseline")


# --- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pixels, kw, match",
    [
        (np.zeros((8, 8), np.float32), {}, "uint8 or uint16"),
        (np.zeros((8, 8), np.int16), {}, "uint8 or uint16"),
        (np.zeros((2, 8, 8), np.uint16), {}, "2-D"),
        (np.zeros((8, 8), np.uint16), {"bits_stored": 11}, "12..16"),
        (np.zeros((8, 8), np.uint16), {"bits_stored": 17}, "12..16"),
        (np.zeros((8, 8), np.uint8), {"bits_stored": 12}, "bits_stored 8"),
        (np.full((8, 8), 4096, np.uint16), {"bits_stored": 12}, "exceeds 4095"),
        (np.zeros((8, 8), np.uint16), {"pixel_spacing_mm": 0.0}, "pixel_spacing_mm"),
        (np.zeros((8, 8), np.uint16), {"pixel_spacing_mm": float("nan")}, "pixel_spacing_mm"),
        (np.zeros((8, 8), np.uint16), {"laterality": "X"}, "laterality"),
        (np.zeros((8, 8), np.uint16), {"instance_number": 0}, "instance_number"),
        (np.zeros((8, 8), np.uint16), {"content_date": "2024-01-02"}, "ContentDate"),
    ],
)
def test_invalid_input_is_refused(pixels, kw, match):
    with pytest.raises(DicomBuildError, match=match):
        build(pixels, **kw)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("PatientID", "", "PatientID is empty"),
        ("PatientID", "   ", "PatientID is empty"),
        ("PatientBirthDate", "12/03/1945", "PatientBirthDate"),
        ("StudyDate", "1997070", "StudyDate"),
        ("PatientSex", "X", "PatientSex"),
        ("AccessionNumber", "ACCESSION-NUMBER-TOO-LONG", "AccessionNumber"),
        ("Nickname", "JJ", "unknown header keys"),
    ],
)
def test_invalid_header_is_refused_without_leaking_the_value(field, value, match, rg2_crop):
    with pytest.raises(DicomBuildError, match=match) as info:
        build(rg2_crop, header={**HEADER, field: value})
    if value.strip():
        assert value not in str(info.value)


def test_invalid_uid_is_refused(rg2_crop):
    bad = type(UIDS)(sop_instance_uid="1.02.3", study_instance_uid=UIDS.study_instance_uid,
                     series_instance_uid=UIDS.series_instance_uid, original_sop_instance_uid="")
    with pytest.raises(DicomBuildError, match="sop_instance_uid"):
        build(rg2_crop, uids=bad)


def test_overlong_configured_text_is_refused(rg2_crop):
    with pytest.raises(DicomBuildError, match="SecondaryCaptureDeviceManufacturerModelName"):
        build(rg2_crop, config=CONFIG.model_copy(update={"digitizer_model": "M" * 65}))
