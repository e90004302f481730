"""Archive-test fixtures: a real Orthanc on loopback, and small synthetic film DICOM files.

Provenance of test inputs: every DICOM file used by the archive tests is made
here by :func:`make_film_file` (synthetic pixels from a seeded generator, fake
patient "TEST^FILM"); no external data.

Fixtures
--------
orthanc (session)
    A running :class:`orthanc_server.OrthancServer` (Debian ``orthanc`` +
    ``orthanc-dicomweb``). Skipped only when ``/usr/sbin/Orthanc`` is absent.
orthanc_empty (function)
    The same server with every patient deleted first.
film_files (function)
    A factory: ``film_files(n, transfer_syntax=...)`` -> list of Paths.
clean_batch (session)
    :func:`make_clean_batch`: a folder of labelled film scans + manifest.csv
    for CLI runs (batch tests, keep_original, DICOMDIR).

Provenance of :func:`make_clean_batch`: radiographs from
``/work/shared/data/radiographs`` (Hannover Medical School COVID-19 image
repository, CC BY 3.0, see that folder's SOURCES.md), rendered as film scans by
``filmflow.synth.make_film_scan`` with a fixed seed, no skew, no dust, at
200 DPI so the label's cap height is ~20 px; the patient data is invented.
Label OCR is still being tuned, so tests assert on the films that are archived
(and require at least one).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from orthanc_server import OrthancServer, orthanc_available

RADIOGRAPHS = Path(__file__).resolve().parents[2] / "shared" / "data" / "radiographs"
#: Invented patients of :func:`make_clean_batch`.
CLEAN_PATIENTS = (
    {"PatientName": "HOLLOWAY^PRUDENCE", "PatientID": "40817263", "PatientBirthDate": "19580412",
     "StudyDate": "20020918", "AccessionNumber": "RB4471902", "PatientSex": "F"},
    {"PatientName": "MCALLISTER^DESMOND", "PatientID": "39271548", "PatientBirthDate": "19630705",
     "StudyDate": "19981103", "AccessionNumber": "RB3306518", "PatientSex": "M"},
    {"PatientName": "VANTERPOOL^AUGUSTA", "PatientID": "51164837", "PatientBirthDate": "19490129",
     "StudyDate": "20040226", "AccessionNumber": "RB9925074", "PatientSex": "F"},
)

MF_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
MF_BYTE_SC = "1.2.840.10008.5.1.4.1.1.7.2"
PLAIN_SC = "1.2.840.10008.5.1.4.1.1.7"


def make_film_dataset(
    *,
    seed: int = 0,
    shape: tuple[int, int] = (64, 48),
    study_uid: str | None = None,
    series_uid: str | None = None,
    patient_id: str = "FF-TEST-1",
) -> FileDataset:
    """A small Multi-frame Grayscale Word SC (DF) dataset, 16-bit, one frame, Explicit VR LE.

    Pixels: ``np.random.default_rng(seed).integers(0, 4096, shape, uint16)``.
    """
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 4096, size=shape, dtype=np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MF_WORD_SC
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("film.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = MF_WORD_SC
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientName = "TEST^FILM"
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyDate = "19990101"
    ds.StudyTime = "000000"
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.Modality = "OT"
    ds.ConversionType = "DF"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.NominalScannedPixelSpacing = [0.169, 0.169]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = 1
    ds.FrameIncrementPointer = (0x0018, 0x2002)  # Frame Label Vector, as allowed by PS3.3 C.8.6.3
    ds.FrameLabelVector = ["FILM"]
    ds.Rows, ds.Columns = shape
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    return ds


def make_film_file(
    folder: Path,
    *,
    seed: int = 0,
    transfer_syntax: str = ExplicitVRLittleEndian,
    sop_class: str = MF_WORD_SC,
    **kwargs: object,
) -> Path:
    """Write :func:`make_film_dataset` (optionally compressed, losslessly) to ``folder``."""
    ds = make_film_dataset(seed=seed, **kwargs)  # type: ignore[arg-type]
    if sop_class != MF_WORD_SC:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
        if sop_class == PLAIN_SC:
            for kw in ("NumberOfFrames", "FrameIncrementPointer", "FrameLabelVector", "NominalScannedPixelSpacing"):
                if kw in ds:
                    del ds[kw]
    if transfer_syntax != ExplicitVRLittleEndian:
        ds.compress(transfer_syntax)
    path = Path(folder) / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def make_clean_batch(folder: Path, n: int = 3, seed: int = 11, dpi: float = 200.0) -> list[dict[str, str]]:
    """Write ``n`` labelled 16-bit TIFF scans (no skew, little noise), JSON sidecars and ``manifest.csv``."""
    from filmflow.synth import write_labelled_batch

    sources = [RADIOGRAPHS / n_ for n_ in ("00870a9c.jpg", "19073f37.jpg", "21982772.jpg")]
    patients = [CLEAN_PATIENTS[i % len(CLEAN_PATIENTS)] for i in range(n)]
    truth = write_labelled_batch(folder, patients, radiographs=sources, rng=np.random.default_rng(seed), dpi=dpi,
                                 noise=0.005, stem="clean")
    return [dict(t, dpi=str(dpi)) for t in truth]


@pytest.fixture(scope="session")
def clean_batch(tmp_path_factory):
    """(folder with 2 clean labelled scans + manifest.csv, their truth rows)."""
    folder = tmp_path_factory.mktemp("clean") / "clean-batch"
    return folder, make_clean_batch(folder, n=2)


@pytest.fixture(scope="session")
def orthanc():
    if not orthanc_available():
        pytest.skip("Debian's orthanc is not installed (/usr/sbin/Orthanc missing)")
    with OrthancServer() as server:
        yield server


@pytest.fixture
def orthanc_empty(orthanc):
    if not orthanc.running:
        orthanc.start()
    orthanc.clear()
    return orthanc


@pytest.fixture
def film_files(tmp_path):
    counter = iter(range(10**6))

    def make(n: int = 1, **kwargs: object) -> list[Path]:
        folder = tmp_path / "films"
        folder.mkdir(exist_ok=True)
        return [make_film_file(folder, seed=next(counter), **kwargs) for _ in range(n)]

    return make
