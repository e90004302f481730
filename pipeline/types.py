"""Value types passed between the steps of :mod:`pipeline`.

Plain frozen dataclasses (picklable, no behaviour beyond small helpers) so that
steps stay pure functions and results can cross process boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: The label fields filmflow reads, by DICOM keyword.
LABEL_FIELDS: tuple[str, ...] = (
    "InstitutionName",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "StudyDate",
    "AccessionNumber",
    "PatientSex",
)


@dataclass(frozen=True)
class Scan:
    """A decoded scan file.

    Attributes
    ----------
    pixels : ndarray of shape (M, N), uint8 or uint16
        Grayscale pixels as the scanner delivered them (RGB converted to gray);
        row 0 is the top of the scan.
    dpi : float
        Scan resolution in dots per inch (from the file, or the configured default).
    dpi_from_file : bool
        True when ``dpi`` came from the file's resolution tags.
    bits_stored : int
        Significant bits of ``pixels`` (8 for uint8; 12..16 for uint16, estimated
        from the maximum value and the file's BitsPerSample).
    sha256 : str
        Hex SHA-256 of the original file's bytes.
    source_format : str
        Pillow format name (``TIFF``, ``PNG``, ``JPEG``).
    """

    pixels: np.ndarray
    dpi: float
    dpi_from_file: bool
    bits_stored: int
    sha256: str
    source_format: str

    @property
    def pixel_spacing_mm(self) -> float:
        """Nominal scanned pixel spacing in millimetres (25.4 / dpi)."""
        return 25.4 / self.dpi


@dataclass(frozen=True)
class Geometry:
    """Where the film lay on the scanner bed and how it was straightened.

    Attributes
    ----------
    skew_deg : float
        Angle in degrees by which the film lay rotated in the scan,
        counter-clockwise positive as seen on screen (image y axis down).
        Correcting it rotates the image by ``-skew_deg``.
    film_quad : tuple of 4 (x, y) pairs
        Film corners in scan pixel coordinates (x = column, y = row), clockwise
        from top-left.
    film_box : tuple (row0, col0, row1, col1)
        Bounding box of the film in the scan, pixels, half-open.
    crop_shape : tuple (rows, cols)
        Shape of the straightened, cropped film.
    touches_bed_edge : bool
        True when the film runs off the scan (a partial film).
    film_count : int
        Number of film-like regions found on the bed (>1 is flagged).
    rotation_k : int
        Quarter turns (counter-clockwise) applied to fix orientation, 0..3.
    orientation_decided : bool
        False when orientation could not be decided from label/markers.
    inverted : bool
        True when the scan came out as a negative and was inverted.
    skew_source : str
        Where ``skew_deg`` came from: ``edges`` (film edges on the bed),
        ``content`` (no film edge seen: text lines / straight structures of the
        image, :mod:`pipeline.content_skew`) or ``none`` (neither: skew 0).
    bed_level : float
        Level of the bare scanner bed around the film, image units, as film
        detection measured it (the scan's border level when no bed was seen).
    """

    skew_deg: float
    film_quad: tuple[tuple[float, float], ...]
    film_box: tuple[int, int, int, int]
    crop_shape: tuple[int, int]
    touches_bed_edge: bool = False
    film_count: int = 1
    rotation_k: int = 0
    orientation_decided: bool = True
    inverted: bool = False
    skew_source: str = "edges"
    bed_level: float = 0.0


@dataclass(frozen=True)
class LabelRegion:
    """The flashed ID label found on a film.

    Attributes
    ----------
    box : tuple (row0, col0, row1, col1)
        Label bounding box in the straightened film, pixels, half-open.
    rotation_k : int
        Quarter turns (counter-clockwise, as ``numpy.rot90``) that make the label text upright.
    dark_text : bool
        True for dark text on a light patch (the common flashed label).
    kind : str
        ``printed``, ``adhesive`` or ``handwritten``.
    """

    box: tuple[int, int, int, int]
    rotation_k: int = 0
    dark_text: bool = True
    kind: str = "printed"


@dataclass(frozen=True)
class OcrWord:
    """One word from Tesseract with its confidence (0..100)."""

    text: str
    confidence: float


@dataclass(frozen=True)
class OcrLine:
    """One text line from Tesseract: its words in reading order."""

    words: tuple[OcrWord, ...]

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    @property
    def confidence(self) -> float:
        return min((w.confidence for w in self.words), default=0.0)


@dataclass(frozen=True)
class FieldValue:
    """A parsed label field.

    Attributes
    ----------
    value : str
        DICOM-formatted value (PN ``FAMILY^GIVEN``, DA ``YYYYMMDD``, ...).
    confidence : float
        0..100, the minimum Tesseract word confidence of the words it came from.
    raw : str
        The OCR text it was parsed from (for the review page).
    """

    value: str
    confidence: float
    raw: str = ""


@dataclass(frozen=True)
class LabelReading:
    """Everything read from one label."""

    fields: dict[str, FieldValue]
    lines: tuple[str, ...] = ()
    region: LabelRegion | None = None

    def value(self, keyword: str) -> str:
        fv = self.fields.get(keyword)
        return fv.value if fv else ""

    @property
    def confidence(self) -> float:
        """Minimum confidence over the fields read (0 when none)."""
        return min((f.confidence for f in self.fields.values()), default=0.0)


@dataclass(frozen=True)
class ManifestRow:
    """One manifest (RIS export) row, values already DICOM-formatted.

    ``line`` is the 1-based line number in the CSV file (header is line 1).
    """

    line: int
    PatientID: str
    PatientName: str
    PatientBirthDate: str
    StudyDate: str
    AccessionNumber: str = ""
    scan_file: str = ""


@dataclass(frozen=True)
class FieldDisagreement:
    """One field on which the label and the manifest row disagree."""

    keyword: str
    label_value: str
    manifest_value: str


@dataclass(frozen=True)
class Reconciliation:
    """Outcome of matching a film's label with the manifest.

    Attributes
    ----------
    status : str
        ``agree`` (unambiguous match, no contradiction), ``disagree`` (matched
        row contradicts the label), ``ambiguous`` (two or more rows),
        ``no_match`` (no row), or ``no_manifest``.
    row : ManifestRow or None
        The matched row when ``status`` is ``agree`` or ``disagree``.
    candidates : tuple of ManifestRow
        All rows considered matches (for the review page).
    disagreements : tuple of FieldDisagreement
        Field-by-field contradictions.
    header : dict
        The identity values to write in the DICOM header (manifest spelling
        wins only for ``agree``; otherwise the label's).
    """

    status: str
    row: ManifestRow | None = None
    candidates: tuple[ManifestRow, ...] = ()
    disagreements: tuple[FieldDisagreement, ...] = ()
    header: dict[str, str] = field(default_factory=dict)
