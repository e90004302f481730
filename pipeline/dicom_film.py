"""Build and encode the digitized-film DICOM object.

A scanned X-ray film becomes a Secondary Capture image with Conversion Type
``DF`` (digitized film). By default it is a *Multi-frame Grayscale Word SC*
image (16-bit pixels, 12..16 bits stored) or a *Multi-frame Grayscale Byte SC*
image (8-bit pixels) holding one frame; ``DicomConfig.sop_class = "sc"`` (or
:func:`as_plain_sc`) gives the plain *SC Image* for peers that refuse the
multi-frame classes.

highdicom's ``SCImage`` writes Conversion Type ``DI`` and only the plain
single-frame class, so the dataset is built attribute by attribute with pydicom.
Nothing here reads a clock or a random source: the same inputs give the same
bytes.

References
----------
.. [1] DICOM PS3.3 A.8.1 (Secondary Capture Image IOD), A.8.3 (Multi-frame
   Grayscale Byte SC Image IOD), A.8.4 (Multi-frame Grayscale Word SC Image IOD).
.. [2] DICOM PS3.3 C.8.6.1 (SC Equipment), C.8.6.2 (SC Image), C.8.6.3 (SC
   Multi-frame Image), C.8.6.4 (SC Multi-frame Vector), C.7.6.6 (Multi-frame).
.. [3] DICOM PS3.5 6.1 (character repertoires, ``ISO_IR 192`` = UTF-8), A.4
   (encapsulated transfer syntaxes); PS3.10 7.1 (file meta information).
"""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)
from pydicom.valuerep import validate_value

from filmflow import __version__
from filmflow.config import DicomConfig
from filmflow.errors import DicomBuildError
from pipeline.uids import FilmUIDs, derive_uid, is_valid_uid

#: Secondary Capture Image Storage (PS3.3 A.8.1).
SC_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7")
#: Multi-frame Grayscale Byte Secondary Capture Image Storage (PS3.3 A.8.3).
MF_GRAYSCALE_BYTE_SC_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7.2")
#: Multi-frame Grayscale Word Secondary Capture Image Storage (PS3.3 A.8.4).
MF_GRAYSCALE_WORD_SC_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7.3")

#: Transfer syntaxes :func:`write_dataset` accepts (names as in ``DicomConfig``).
TRANSFER_SYNTAXES: dict[str, UID] = {
    "explicit_vr_le": ExplicitVRLittleEndian,
    "jpeg2000_lossless": JPEG2000Lossless,
    "jpegls_lossless": JPEGLSLossless,
    "rle_lossless": RLELossless,
}

#: Implementation Class UID of filmflow (PS3.7 D.3.3.2), fixed forever.
IMPLEMENTATION_CLASS_UID = derive_uid("2.25", "filmflow", "implementation-class")
#: Implementation Version Name (SH, at most 16 characters).
IMPLEMENTATION_VERSION_NAME = f"FILMFLOW_{__version__}"[:16]

#: Header keys accepted by :func:`build_film_dataset`, with their VR.
HEADER_VRS: dict[str, str] = {
    "PatientName": "PN",
    "PatientID": "LO",
    "PatientBirthDate": "DA",
    "PatientSex": "CS",
    "StudyDate": "DA",
    "AccessionNumber": "SH",
    "InstitutionName": "LO",
}

#: Bits Stored accepted for 16-bit pixels (the Word SC IOD allows 9..16; filmflow's
#: scanners deliver 12..16).
WORD_BITS_STORED = range(12, 17)

#: Values of Image Laterality (0020,0062); Laterality (0020,0060) takes only R and L.
LATERALITIES = ("", "R", "L", "B", "U")

#: Attributes of the SC Multi-frame Image / Multi-frame modules that the plain SC
#: IOD does not define (removed by :func:`as_plain_sc`).
_MULTIFRAME_ONLY = (
    "NumberOfFrames",
    "FrameIncrementPointer",
    "PresentationLUTShape",
    "DigitizingDeviceTransportDirection",
    "RotationOfScannedFilm",
)


def _fail(message: str) -> DicomBuildError:
    return DicomBuildError(message)


def _validate_pixels(pixels: np.ndarray, bits_stored: int) -> None:
    if not isinstance(pixels, np.ndarray):
        raise _fail("pixels must be a numpy ndarray")
    if pixels.ndim != 2:
        raise _fail(f"pixels must be a 2-D (rows, cols) array, got {pixels.ndim} dimensions")
    if pixels.dtype not in (np.uint8, np.uint16):
        raise _fail(f"pixels must be uint8 or uint16, got {pixels.dtype}")
    rows, cols = pixels.shape
    if not (0 < rows <= 0xFFFF and 0 < cols <= 0xFFFF):
        raise _fail(f"image of {rows}x{cols} pixels cannot be stored (Rows/Columns are 1..65535)")
    if pixels.dtype == np.uint8:
        if bits_stored != 8:
            raise _fail(f"uint8 pixels need bits_stored 8, got {bits_stored}")
        return
    if bits_stored not in WORD_BITS_STORED:
        raise _fail(f"bits_stored must be 12..16 for uint16 pixels, got {bits_stored}")
    limit = (1 << bits_stored) - 1
    top = int(pixels.max())
    if top > limit:
        raise _fail(
            f"pixel value {top} exceeds {limit}, the maximum for {bits_stored} bits stored; "
            "pass the bits the data really uses (refusing rather than masking the high bits)"
        )


def _validate_header(header: Mapping[str, str]) -> dict[str, str]:
    unknown = sorted(set(header) - set(HEADER_VRS))
    if unknown:
        raise _fail(f"unknown header keys: {', '.join(unknown)}")
    values = {k: str(header.get(k, "") or "") for k in HEADER_VRS}
    if not values["PatientID"].strip():
        raise _fail("PatientID is empty: a film cannot be archived without a patient ID")
    if values["PatientSex"] not in ("", "M", "F", "O"):
        raise _fail("PatientSex must be M, F, O or empty")
    for keyword, vr in HEADER_VRS.items():
        try:
            validate_value(vr, values[keyword], pydicom.config.RAISE)
        except ValueError:
            # The pydicom message quotes the value: keep patient data out of ours.
            raise _fail(f"header value of {keyword} is not a valid {vr} value") from None
    return values


def _is_ascii(*texts: str) -> bool:
    return all(t.isascii() for t in texts)


def build_film_dataset(
    pixels: np.ndarray,
    *,
    bits_stored: int,
    pixel_spacing_mm: float,
    header: Mapping[str, str],
    uids: FilmUIDs,
    config: DicomConfig,
    skew_deg: float | None = None,
    derivation_description: str = "",
    laterality: str = "",
    series_number: int = 1,
    instance_number: int = 1,
    content_date: str = "",
    content_time: str = "",
    photometric_inverted_fixed: bool = False,
) -> Dataset:
    """Build the digitized-film Secondary Capture dataset.

    Parameters
    ----------
    pixels : ndarray of shape (M, N), uint16 or uint8
        The straightened film, row 0 at the top, MONOCHROME2 (higher values
        brighter). uint16 gives a Multi-frame Grayscale Word SC image, uint8 a
        Multi-frame Grayscale Byte SC image (or a plain SC image when
        ``config.sop_class == "sc"``). Never rescaled or cast.
    bits_stored : int
        Significant bits: 12..16 for uint16, 8 for uint8. Every pixel value
        must be below ``2**bits_stored``.
    pixel_spacing_mm : float
        Scanner pixel spacing in millimetres (25.4 / dpi), written as Nominal
        Scanned Pixel Spacing (0018,2010) [row spacing, column spacing].
    header : mapping of str to str
        DICOM-formatted identity values by keyword: PatientName (PN),
        PatientID (required), PatientBirthDate (DA), PatientSex (M/F/O),
        StudyDate (DA), AccessionNumber, InstitutionName (falls back to
        ``config.institution_name``). Missing or empty values are written as
        empty Type 2 attributes.
    uids : FilmUIDs
        From :func:`pipeline.uids.film_uids`.
    config : DicomConfig
        SOP class choice, manufacturer, digitizer identity, descriptions.
    skew_deg : float, optional
        Angle in degrees, counter-clockwise positive, at which the film lay on
        the scanner bed (already corrected in ``pixels``); written as Rotation
        of Scanned Film (0018,2030) in the multi-frame classes.
    derivation_description : str
        Free text of the processing applied (deskew, crop, denoise), Derivation
        Description (0008,2111).
    laterality : str
        ``R``, ``L``, ``B`` (both), ``U`` (unpaired) or empty when unknown.
        Written as Image Laterality (0020,0062); when unknown, Laterality
        (0020,0060) is written empty instead (Type 2C: it must be absent when
        Image Laterality is present, and empty means "unknown").
    series_number, instance_number : int
        Series Number (0020,0011) and Instance Number (0020,0013), >= 1.
    content_date, content_time : str
        Content Date/Time (0008,0023/0033); default to the Study Date and
        ``000000`` (or empty when the study date is unknown).
    photometric_inverted_fixed : bool
        True when the scan was a negative and filmflow inverted it; noted in
        the Derivation Description.

    Returns
    -------
    pydicom.Dataset
        With ``file_meta`` set for Explicit VR Little Endian; conformant to its
        IOD (checked with dciodvfy in the tests).

    Raises
    ------
    DicomBuildError
        On invalid input: wrong dtype or shape, ``bits_stored`` out of range,
        pixel values above ``2**bits_stored - 1``, empty PatientID, a header
        value that is not valid for its VR, invalid UIDs, laterality or numbers.
        Messages never contain patient data.

    Notes
    -----
    Pixel values above ``2**bits_stored - 1`` are refused, not masked: masking
    would silently change the image, and the lossless codecs encode only
    ``bits_stored`` bits, so such data would not survive compression.

    Burned In Annotation is ``YES``: a film carries its flashed ID label.
    Specific Character Set is ``ISO_IR 192`` (UTF-8) when any text value is
    non-ASCII, otherwise absent (default repertoire).

    References
    ----------
    DICOM PS3.3 A.8.3, A.8.4 (IODs); C.8.6.1 SC Equipment; C.8.6.3 SC
    Multi-frame Image (Burned In Annotation, Presentation LUT Shape, Rescale,
    Nominal Scanned Pixel Spacing required when Conversion Type is DF,
    Rotation of Scanned Film); C.8.6.4 SC Multi-frame Vector; C.7.6.6
    Multi-frame; C.7.3.1 General Series (Laterality); C.7.6.1 General Image
    (Patient Orientation, Image Laterality, Derivation Description).
    """
    _validate_pixels(pixels, bits_stored)
    values = _validate_header(header)
    for name, uid in (
        ("sop_instance_uid", uids.sop_instance_uid),
        ("study_instance_uid", uids.study_instance_uid),
        ("series_instance_uid", uids.series_instance_uid),
    ):
        if not is_valid_uid(uid):
            raise _fail(f"{name} is not a valid UID")
    if not (np.isfinite(pixel_spacing_mm) and 0 < pixel_spacing_mm < 100):
        raise _fail(f"pixel_spacing_mm must be a positive number of millimetres, got {pixel_spacing_mm}")
    if laterality not in LATERALITIES:
        raise _fail(f"laterality must be one of R, L, B, U or empty, got {laterality!r}")
    if skew_deg is not None and not (np.isfinite(skew_deg) and -180 <= skew_deg <= 180):
        raise _fail(f"skew_deg must be a finite angle in degrees, got {skew_deg}")
    for name, number in (("series_number", series_number), ("instance_number", instance_number)):
        if not (1 <= int(number) <= 2**31 - 1):
            raise _fail(f"{name} must be a positive integer, got {number}")

    study_date = values["StudyDate"]
    content_date = content_date or study_date
    content_time = content_time or ("000000" if content_date else "")
    for keyword, vr, value in (("ContentDate", "DA", content_date), ("ContentTime", "TM", content_time)):
        try:
            validate_value(vr, value, pydicom.config.RAISE)
        except ValueError:
            raise _fail(f"{keyword} is not a valid {vr} value") from None

    for keyword, value in (
        ("Manufacturer", config.manufacturer),
        ("InstitutionName", config.institution_name),
        ("StudyDescription", config.study_description),
        ("SeriesDescription", config.series_description),
        ("SecondaryCaptureDeviceManufacturer", config.digitizer_manufacturer),
        ("SecondaryCaptureDeviceManufacturerModelName", config.digitizer_model),
        ("SecondaryCaptureDeviceSoftwareVersions", config.digitizer_software),
        ("SecondaryCaptureDeviceID", config.digitizer_device_id),
    ):
        try:
            validate_value("LO", value, pydicom.config.RAISE)
        except ValueError:
            raise _fail(f"configured {keyword} is not a valid LO value (at most 64 characters, no backslash)") from None

    derivation = derivation_description.strip()
    if photometric_inverted_fixed:
        derivation = "; ".join(p for p in (derivation, "scan was a negative, inverted to MONOCHROME2") if p)
    if len(derivation) > 1024:
        raise _fail("derivation_description is longer than 1024 characters (ST)")

    word = pixels.dtype == np.uint16
    if config.sop_class == "sc":
        sop_class = SC_IMAGE_STORAGE
    else:
        sop_class = MF_GRAYSCALE_WORD_SC_STORAGE if word else MF_GRAYSCALE_BYTE_SC_STORAGE

    institution = values["InstitutionName"] or config.institution_name
    texts = [*values.values(), institution, config.manufacturer, config.study_description,
             config.series_description, config.digitizer_manufacturer, config.digitizer_model,
             config.digitizer_software, config.digitizer_device_id, derivation]

    ds = Dataset()
    if not _is_ascii(*texts):
        ds.SpecificCharacterSet = "ISO_IR 192"
    # SOP Common (C.12.1) and General Image (C.7.6.1)
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uids.sop_instance_uid
    # General Study (C.7.2.1)
    ds.StudyDate = study_date
    ds.ContentDate = content_date
    ds.StudyTime = ""
    ds.ContentTime = content_time
    ds.AccessionNumber = values["AccessionNumber"]
    ds.Modality = "OT"
    ds.ConversionType = "DF"
    ds.Manufacturer = config.manufacturer
    if institution:
        ds.InstitutionName = institution
    ds.ReferringPhysicianName = ""
    if config.study_description:
        ds.StudyDescription = config.study_description
    if config.series_description:
        ds.SeriesDescription = config.series_description
    if derivation:
        ds.DerivationDescription = derivation
    # Patient (C.7.1.1)
    ds.PatientName = values["PatientName"]
    ds.PatientID = values["PatientID"]
    ds.PatientBirthDate = values["PatientBirthDate"]
    ds.PatientSex = values["PatientSex"]
    # SC Equipment (C.8.6.1), General Equipment (C.7.5.1)
    if config.digitizer_device_id:
        ds.SecondaryCaptureDeviceID = config.digitizer_device_id
    if config.digitizer_manufacturer:
        ds.SecondaryCaptureDeviceManufacturer = config.digitizer_manufacturer
    if config.digitizer_model:
        ds.SecondaryCaptureDeviceManufacturerModelName = config.digitizer_model
    if config.digitizer_software:
        ds.SecondaryCaptureDeviceSoftwareVersions = config.digitizer_software
    ds.SoftwareVersions = f"filmflow {__version__}"
    # SC Multi-frame Image (C.8.6.3): film-specific attributes
    ds.NominalScannedPixelSpacing = [_ds(pixel_spacing_mm), _ds(pixel_spacing_mm)]
    if skew_deg is not None:
        ds.RotationOfScannedFilm = _ds(skew_deg)
    # General Series (C.7.3.1), General Image (C.7.6.1)
    ds.StudyInstanceUID = uids.study_instance_uid
    ds.SeriesInstanceUID = uids.series_instance_uid
    ds.StudyID = _study_id(values["AccessionNumber"], uids.study_instance_uid)
    ds.SeriesNumber = int(series_number)
    ds.InstanceNumber = int(instance_number)
    ds.PatientOrientation = ""
    if laterality:
        # Image Laterality present => Laterality must be absent (Type 2C condition).
        ds.ImageLaterality = laterality
    else:
        # Unknown: Laterality empty (Type 2C; absent would be an error for a
        # possibly paired body part, as in the CEMAX film).
        ds.Laterality = ""
    # Image Pixel (C.7.6.3), Multi-frame (C.7.6.6)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = 1
    ds.Rows, ds.Columns = (int(n) for n in pixels.shape)
    ds.BitsAllocated = 16 if word else 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = "YES"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    data = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("<")).tobytes()
    if len(data) % 2:
        data += b"\x00"
    ds.PixelData = data
    ds["PixelData"].VR = "OW" if word else "OB"

    ds.file_meta = _file_meta(ds, ExplicitVRLittleEndian)
    if config.sop_class == "sc":
        ds = as_plain_sc(ds)
    return ds


def _ds(value: float) -> str:
    """Format a number as a DS string of at most 16 characters."""
    text = f"{value:.10g}"
    if len(text) > 16:
        text = f"{value:.6e}"
    return text


def _study_id(accession: str, study_uid: str) -> str:
    # Study ID (SH, 16 chars): the accession number when known, else a stable
    # short form of the study UID (its last 16 digits).
    if accession:
        return accession[:16]
    return study_uid.replace(".", "")[-16:]


def _file_meta(ds: Dataset, transfer_syntax: UID) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


#: Series Number and Description of the original-scan instance (``DicomConfig.keep_original``).
ORIGINAL_SERIES_NUMBER = 2
ORIGINAL_SERIES_DESCRIPTION = "Original scan"


def build_original_dataset(
    scan_pixels: np.ndarray,
    *,
    bits_stored: int,
    pixel_spacing_mm: float,
    header: Mapping[str, str],
    uids: FilmUIDs,
    config: DicomConfig,
    skew_deg: float | None = None,
    laterality: str = "",
) -> Dataset:
    """Build the instance keeping the untouched scan, beside the film in the same study.

    Parameters
    ----------
    scan_pixels : ndarray of shape (M, N), uint16 or uint8
        The scan exactly as loaded (:attr:`pipeline.types.Scan.pixels`): no
        deskew, crop, polarity change or denoise. Never rescaled or cast.
    bits_stored, pixel_spacing_mm, header, config, laterality
        As for :func:`build_film_dataset` (the film-specific attributes that
        apply to the whole scan: Conversion Type DF, Nominal Scanned Pixel
        Spacing, digitizer identity).
    uids : FilmUIDs
        The film's UIDs: the instance gets ``original_sop_instance_uid``, the
        film's study, and its own series, derived from the study UID and the
        film's series UID (``uid_root`` of ``config``).
    skew_deg : float, optional
        Angle in degrees, counter-clockwise positive, at which the film lies
        in this (uncorrected) scan: Rotation of Scanned Film (0018,2030).

    Returns
    -------
    pydicom.Dataset
        Series "Original scan" (Series Number 2), Image Type
        ``ORIGINAL\\SECONDARY``, no Derivation Description.

    Raises
    ------
    DicomBuildError
        As :func:`build_film_dataset`.

    Notes
    -----
    A scan that was a negative stays a negative here, MONOCHROME2 as
    scanned: the pixels are the evidence, shown as the scanner saw them.

    References
    ----------
    DICOM PS3.3 C.7.6.1 (Image Type: ORIGINAL), C.7.3.1 (General Series).
    """
    series = derive_uid(config.uid_root, "original-series", uids.study_instance_uid, uids.series_instance_uid)
    own = FilmUIDs(sop_instance_uid=uids.original_sop_instance_uid, study_instance_uid=uids.study_instance_uid,
                   series_instance_uid=series, original_sop_instance_uid=uids.original_sop_instance_uid)
    cfg = config.model_copy(update={"series_description": ORIGINAL_SERIES_DESCRIPTION})
    ds = build_film_dataset(scan_pixels, bits_stored=bits_stored, pixel_spacing_mm=pixel_spacing_mm, header=header,
                            uids=own, config=cfg, skew_deg=skew_deg, laterality=laterality,
                            series_number=ORIGINAL_SERIES_NUMBER)
    ds.ImageType = ["ORIGINAL", "SECONDARY"]
    return ds


def as_plain_sc(ds: Dataset) -> Dataset:
    """Return a copy converted to the plain Secondary Capture Image IOD.

    Parameters
    ----------
    ds : pydicom.Dataset
        A dataset from :func:`build_film_dataset` (any of its SOP classes).

    Returns
    -------
    pydicom.Dataset
        A deep copy with SOP Class ``1.2.840.10008.5.1.4.1.1.7``, the same
        UIDs and pixels, and without the attributes of the multi-frame modules
        that the SC Image IOD does not define (Number of Frames, Frame
        Increment Pointer, Presentation LUT Shape, Rotation of Scanned Film,
        Digitizing Device Transport Direction). Nominal Scanned Pixel Spacing
        stays (SC Image module, Type 3); Rescale Slope/Intercept/Type stay
        (Modality LUT module).

    Notes
    -----
    The SOP Instance UID is kept so that the film has one identity whichever
    class a peer accepts. Send only one of the two forms to a given archive:
    the same SOP Instance UID under two SOP classes is a conflict there.

    References
    ----------
    DICOM PS3.3 A.8.1 (SC Image IOD), C.8.6.2 (SC Image module), C.11.1
    (Modality LUT module).
    """
    out = copy.deepcopy(ds)
    for keyword in _MULTIFRAME_ONLY:
        if keyword in out:
            delattr(out, keyword)
    out.SOPClassUID = SC_IMAGE_STORAGE
    if getattr(out, "file_meta", None) is not None and "TransferSyntaxUID" in out.file_meta:
        out.file_meta.MediaStorageSOPClassUID = SC_IMAGE_STORAGE
    else:
        out.file_meta = _file_meta(out, ExplicitVRLittleEndian)
    return out


def _native_pixels(ds: Dataset) -> np.ndarray:
    """The native Pixel Data exactly as stored, unused high bits included.

    ``Dataset.pixel_array`` masks the bits above High Bit, which would hide the
    very values a codec would drop, so native data is read from the raw bytes.
    """
    dtype = np.dtype("<u2") if int(ds.BitsAllocated) == 16 else np.dtype("u1")
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    shape = (frames, int(ds.Rows), int(ds.Columns)) if frames > 1 else (int(ds.Rows), int(ds.Columns))
    count = int(np.prod(shape)) * int(ds.SamplesPerPixel)
    if int(ds.SamplesPerPixel) != 1 or len(ds.PixelData) < count * dtype.itemsize:
        raise _fail("Pixel Data does not match Rows, Columns and Bits Allocated")
    return np.frombuffer(ds.PixelData, dtype=dtype, count=count).reshape(shape).astype(dtype.newbyteorder("="))


def write_dataset(ds: Dataset, path: str | os.PathLike[str], *, transfer_syntax: str = "explicit_vr_le") -> Path:
    """Write a dataset as a DICOM PS3.10 file, atomically.

    Parameters
    ----------
    ds : pydicom.Dataset
        The film dataset (native, uncompressed pixel data); not modified.
    path : path-like
        Destination file; its folder must exist. Replaced atomically if present.
    transfer_syntax : str
        ``explicit_vr_le`` (default), ``jpeg2000_lossless``,
        ``jpegls_lossless`` or ``rle_lossless``.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    DicomBuildError
        When the transfer syntax is unknown, no encoder plugin is installed,
        a pixel value exceeds ``2**BitsStored - 1`` (unused high bits set:
        refused, the lossless codecs would drop them), encoding fails, or the
        compressed pixels do not decode to exactly the input.

    Notes
    -----
    Compression uses pydicom's own encoders (``Dataset.compress``) with the
    pylibjpeg-openjpeg (JPEG 2000), pyjpegls (JPEG-LS) and pydicom (RLE)
    plugins, with ``generate_instance_uid=False`` so the SOP Instance UID
    never changes. Every compressed encoding is decoded again and compared
    with the input before the file is written.

    The file is written to a temporary name in the destination folder,
    fsynced, then renamed over ``path`` (``os.replace``), so a reader never
    sees a partial file.

    References
    ----------
    DICOM PS3.10 7.1 (DICOM File Meta Information); PS3.5 A.4.2 (RLE),
    A.4.3 (JPEG-LS), A.4.4 (JPEG 2000); PS3.5 8.1.1 (Bits Stored / High Bit).
    """
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise _fail(f"unknown transfer syntax {transfer_syntax!r}; use one of {', '.join(TRANSFER_SYNTAXES)}")
    ts = TRANSFER_SYNTAXES[transfer_syntax]
    current = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", ExplicitVRLittleEndian)
    if current.is_compressed:
        raise _fail("write_dataset expects a dataset with native (uncompressed) pixel data")
    out = copy.deepcopy(ds)
    out.file_meta = _file_meta(out, ExplicitVRLittleEndian)
    if "PixelData" in out:
        original = _native_pixels(out)
        limit = (1 << int(out.BitsStored)) - 1
        if int(original.max()) > limit:
            raise _fail(
                f"pixel values exceed {limit}, the maximum for BitsStored {out.BitsStored} "
                "(unused high bits set); refusing to write data a codec would truncate"
            )
        if ts != ExplicitVRLittleEndian:
            plugin = {JPEG2000Lossless: "pylibjpeg", JPEGLSLossless: "pyjpegls", RLELossless: "pydicom"}[ts]
            try:
                out.compress(ts, encoding_plugin=plugin, generate_instance_uid=False)
            except (RuntimeError, ValueError, ImportError) as exc:
                raise _fail(f"cannot encode pixel data as {transfer_syntax}: {exc}") from None
            decoded = out.pixel_array
            if decoded.dtype != original.dtype or not np.array_equal(decoded, original):
                raise _fail(f"{transfer_syntax} round trip changed the pixel data; file not written")
    out.file_meta.TransferSyntaxUID = ts
    return _atomic_write(out, Path(path))


def _atomic_write(ds: Dataset, path: Path) -> Path:
    folder = path.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            ds.save_as(fh, enforce_file_format=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def pixel_sha256(ds: Dataset) -> str:
    """SHA-256 of the decoded pixel array.

    Parameters
    ----------
    ds : pydicom.Dataset
        Any image dataset, native or compressed (a decoder plugin must be
        installed for compressed data).

    Returns
    -------
    str
        Hex SHA-256 of the decoded pixel array's bytes in C order and native
        dtype (``uint16`` or ``uint8``), independent of the transfer syntax:
        an instance retrieved from an archive that re-encoded it hashes the
        same as long as the pixels are the same.

    Raises
    ------
    DicomBuildError
        When the dataset has no pixel data or it cannot be decoded.

    References
    ----------
    DICOM PS3.5 8 (encoding of pixel data).
    """
    if "PixelData" not in ds:
        raise _fail("dataset has no Pixel Data")
    try:
        arr = ds.pixel_array
    except (RuntimeError, ValueError, NotImplementedError, AttributeError) as exc:
        raise _fail(f"cannot decode pixel data: {exc}") from None
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
