"""The one typed configuration model, loaded from a TOML file and the environment.

Precedence (highest first): explicit overrides (CLI options) > environment
variables ``FILMFLOW_<SECTION>__<FIELD>`` (e.g. ``FILMFLOW_DICOM__TRANSFER_SYNTAX``)
> the TOML file (``--config`` or ``FILMFLOW_CONFIG``) > defaults.

Credentials are never fields of this model: archives read them from the
environment or a Prefect Secret block at connection time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from filmflow.errors import ConfigError


class _Section(BaseModel):
    """A configuration section: unknown keys are refused (a misspelled setting must not pass silently)."""

    model_config = ConfigDict(extra="forbid")


class ScanConfig(_Section):
    """Reading scan files."""

    default_dpi: float = Field(150.0, gt=10, le=5000, description="DPI when the file carries none")
    max_pixels: int = Field(200_000_000, gt=0, description="decompression-bomb guard, pixels per scan")
    extensions: tuple[str, ...] = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


class GeometryConfig(_Section):
    """Film detection and deskew (pipeline.geometry)."""

    max_skew_deg: float = Field(20.0, gt=0, le=45)
    bed_margin_mm: float = Field(0.0, ge=0, description="extra margin kept around the film, mm")
    fix_orientation: bool = True
    rotation_k: int | None = Field(None, ge=0, le=3, description="force quarter turns (counter-clockwise) after deskew; None = automatic")
    fix_polarity: bool = True
    orientation_label_alone: bool = Field(
        False,
        description="let a flashed label reading at 0 or 180 degrees turn the film without a lead marker that agrees; "
        "true only for sites whose ID cards are flashed upright relative to the anatomy (a card flashed sideways on a "
        "film fed sideways reads at 0/180 and would turn the film wrongly; pipeline.orientation.decide_turns)",
    )
    orientation_marker_alone: bool = Field(
        False, description="let a lead marker at 0 or 180 degrees turn the film when the label gives no cue"
    )
    content_skew_min_confidence: float | None = Field(
        0.12,
        ge=0,
        description="when no film edge is found (film fills the scan, document page), take the skew from the "
        "image content (text lines, straight structures; pipeline.content_skew) if its confidence is at least "
        "this; None = never (skew 0)",
    )


class DenoiseConfig(_Section):
    """Mild edge-preserving denoise (pipeline.denoise)."""

    method: Literal["bilateral", "nlmeans", "off"] = "bilateral"
    strength: float = Field(1.0, ge=0, le=5, description="multiplier of the estimated noise sigma")
    despeckle: bool = Field(
        True,
        description="repair isolated one-pixel dust specks before filtering; false keeps every spot "
        "(a one-pixel calcification cannot be told from dust)",
    )
    scratches: bool = Field(
        False,
        description="inpaint thin film scratches (straight or gently curved lines 1-3 px wide, >= 25 mm, brighter "
        "or darker than both sides) before denoising; off by default: a straight catheter or tube passes the same "
        "tests and is erased (generated films: planted catheters lost 15 % of their pixels on average; a real "
        "tube was partly inpainted; bench/README.md, 'Scratch repair'); a film with any line inpainted is held "
        "for review (scratches_inpainted); skipped when method is off",
    )


class OCRConfig(_Section):
    """Label reading (pipeline.label, pipeline.ocr, pipeline.label_fields)."""

    engine: Literal["auto", "tesserocr", "pytesseract"] = Field(
        "auto",
        description="how Tesseract is run: tesserocr keeps the engine loaded in each thread (no per-call "
        "start-up), pytesseract runs the tesseract program once per call; auto = tesserocr when importable",
    )
    tesseract_cmd: str = "tesseract"
    tessdata_dir: str = Field(
        "",
        description="Tesseract's tessdata folder for the tesserocr engine; empty = $TESSDATA_PREFIX, else the "
        "folder the tesseract program reports, else /usr/share/tesseract-ocr/*/tessdata",
    )
    lang: str = "eng"
    timeout_s: float = Field(30.0, gt=0)
    name_order: Literal["family_first", "given_first"] = "family_first"
    two_digit_year_pivot: int = Field(30, ge=0, le=99, description="YY < pivot -> 20YY, else 19YY")
    date_order: Literal["MDY", "DMY"] = Field("MDY", description="how to read ambiguous NN/NN/YYYY dates")
    field_formats: dict[str, list[str]] = Field(
        default_factory=dict,
        description="site formats of identifiers, one mask character per position: A letter, 9 digit, "
        "X letter or digit; e.g. {AccessionNumber = ['A9999999']}; a read value that fits no mask gets confidence 0",
    )
    field_patterns: dict[str, list[str]] = Field(
        default_factory=dict,
        description="extra label keys per DICOM keyword, e.g. {PatientID = ['HOSP NO']}",
    )


class ManifestConfig(_Section):
    """Manifest CSV columns (RIS exports differ): DICOM keyword -> column name."""

    columns: dict[str, str] = Field(
        default_factory=lambda: {
            "PatientID": "patient_id",
            "PatientName": "patient_name",
            "PatientBirthDate": "birth_date",
            "StudyDate": "study_date",
            "AccessionNumber": "accession_number",
            "scan_file": "scan_file",
        }
    )
    encoding: str = "utf-8"
    name_match_threshold: float = Field(90.0, ge=0, le=100, description="rapidfuzz ratio for names")


class DicomConfig(_Section):
    """The digitized-film DICOM object (pipeline.dicom_film)."""

    sop_class: Literal["multiframe", "sc"] = "multiframe"
    transfer_syntax: Literal["explicit_vr_le", "jpeg2000_lossless", "jpegls_lossless", "rle_lossless"] = "explicit_vr_le"
    uid_root: str = Field("2.25", description="root for derived UIDs; 2.25 = UUID-derived (PS3.5 B.2)")
    manufacturer: str = "filmflow"
    digitizer_manufacturer: str = ""
    digitizer_model: str = ""
    digitizer_software: str = ""
    digitizer_device_id: str = ""
    institution_name: str = ""
    study_description: str = "Digitized film"
    series_description: str = "Digitized film"
    keep_original: bool = False


class QCConfig(_Section):
    """QC thresholds (qc.checks)."""

    min_dynamic_range: float = Field(0.15, ge=0, le=1, description="p99-p1 as a fraction of full scale")
    max_saturated_fraction: float = Field(0.25, ge=0, le=1)
    blank_std_fraction: float = Field(0.01, ge=0, le=1)
    min_field_confidence: float = Field(50.0, ge=0, le=100)
    required_fields: tuple[str, ...] = ("PatientName", "PatientID", "StudyDate")
    max_residual_skew_deg: float = Field(0.5, ge=0)
    min_sharpness: float = Field(
        1.0, ge=0,
        description="blur check: 1000 x variance of the Laplacian of the film resampled to "
        "sharpness_reference_dpi, intensities in units of its p1..p99 spread (samples 3..13, blurred <0.7)",
    )
    sharpness_reference_dpi: float = Field(75.0, gt=0, description="pixel pitch the blur check resamples the film to")
    min_polarity_margin: float = Field(
        0.1, ge=0, le=1,
        description="polarity doubtful when the bed's offset from the interior median is within this "
        "(fraction of the 5..95 % range) of pipeline.polarity's decision offset",
    )
    min_bed_clearance: float = Field(
        0.1, ge=0, le=1,
        description="an inverted scan is held for review when its bed lies above the film's brightest part by "
        "less than this (fraction of the bed-to-darkest range; pipeline.polarity.bed_clearance): the 'bed' may be "
        "the film's own dark border",
    )
    max_phash_distance: int = Field(8, ge=0, le=64, description="near-duplicate: Hamming distance of 64-bit perceptual hashes")
    handwritten_label_severity: Literal["review", "fail"] = Field(
        "review", description="a label pipeline.label_kind classifies as handwritten (not read): held for a human"
    )
    adhesive_label_severity: Literal["info", "review"] = Field(
        "info", description="an adhesive paper label (read as printed): recorded"
    )
    no_bed_severity: Literal["review", "info"] = Field(
        "review",
        description="a scan showing no scanner bed around the film (already cropped to it; qc code no_bed_visible): "
        "its edges, polarity and whether it is whole cannot be checked, so it is held for review; 'info' only for "
        "sites whose digitizer always delivers one whole, positive, straight film without its surround",
    )
    run_dciodvfy: bool = True


class ArchiveConfig(_Section):
    """Archive target (filmflow.archive)."""

    url: str = "archive"
    calling_ae_title: str = "FILMFLOW"
    verify_fraction: float = Field(1.0, ge=0, le=1, description="share of films retrieved and pixel-hash checked")
    retries: int = Field(3, ge=0)
    retry_delay_s: float = Field(1.0, ge=0)
    timeout_s: float = Field(30.0, gt=0)
    dicomdir: bool = Field(False, description="folder archives: also keep a PS3.10 File-set (DICOMDIR) under <archive>/fileset")
    storage_commitment: Literal["auto", "off", "require"] = Field(
        "auto",
        description="dicom:// archives, DICOM Storage Commitment (PS3.4 Annex J) after the C-FIND: 'auto' uses it when"
        " commitment_port is set and the archive offers it, else verifies by C-FIND/C-GET as before; 'require' archives"
        " a film only when the archive commits it; 'off' never asks",
    )
    commitment_port: int = Field(
        0, ge=0, le=65535,
        description="TCP port of filmflow's listener for the archive's commitment reports (N-EVENT-REPORT);"
        " 0 = no listener, commitment not requested. The archive must know calling_ae_title at this host and port",
    )
    commitment_host: str = Field("0.0.0.0", description="address the commitment listener binds (0.0.0.0: all interfaces)")
    commitment_timeout_s: float = Field(
        30.0, gt=0,
        description="seconds to wait for the commitment report; then 'require' leaves the film pending (transient, the"
        " next run retries) and 'auto' verifies by C-FIND/C-GET for the rest of the run",
    )

    @model_validator(mode="after")
    def _commitment_needs_port(self) -> "ArchiveConfig":
        if self.storage_commitment == "require" and not self.commitment_port:
            raise ValueError("archive.storage_commitment = 'require' needs archive.commitment_port (the listener the archive reports to)")
        return self


class RunConfig(_Section):
    """Batch execution."""

    work_dir: Path = Path(".filmflow")
    ledger_url: str = Field("", description="SQLAlchemy URL; empty = SQLite under work_dir")
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    batch_name: str = ""
    site: str = "site"
    digitizer: str = "digitizer"
    dask_address: str = Field("", description="tcp://host:port of a Dask scheduler; empty = threads in this process")


class Settings(BaseSettings):
    """filmflow's configuration: one section per concern."""

    model_config = SettingsConfigDict(env_prefix="FILMFLOW_", env_nested_delimiter="__", extra="forbid")

    scan: ScanConfig = ScanConfig()
    geometry: GeometryConfig = GeometryConfig()
    denoise: DenoiseConfig = DenoiseConfig()
    ocr: OCRConfig = OCRConfig()
    manifest: ManifestConfig = ManifestConfig()
    dicom: DicomConfig = DicomConfig()
    qc: QCConfig = QCConfig()
    archive: ArchiveConfig = ArchiveConfig()
    run: RunConfig = RunConfig()

    @field_validator("dicom")
    @classmethod
    def _uid_root_is_valid(cls, v: DicomConfig) -> DicomConfig:
        parts = v.uid_root.split(".")
        if not all(p.isdigit() and (p == "0" or not p.startswith("0")) for p in parts) or len(v.uid_root) > 40:
            raise ValueError("dicom.uid_root must be a dotted numeric UID root of at most 40 characters")
        return v


def _settings_class(toml_path: Path | None) -> type[Settings]:
    if toml_path is None:
        return Settings

    class _FromToml(Settings):
        model_config = SettingsConfigDict(toml_file=str(toml_path))

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    return _FromToml


def load_settings(config_path: str | Path | None = None, **overrides: Any) -> Settings:
    """Load the configuration.

    Parameters
    ----------
    config_path : path, optional
        TOML file; defaults to ``$FILMFLOW_CONFIG`` when set.
    **overrides
        Section dictionaries that win over file and environment, e.g.
        ``archive={"url": "dicom://ORTHANC@127.0.0.1:4242"}``.

    Returns
    -------
    Settings

    Raises
    ------
    ConfigError
        When the file is missing or unparsable, or a value is invalid; the
        message names the offending field.
    """
    path = Path(config_path) if config_path else (Path(os.environ["FILMFLOW_CONFIG"]) if os.environ.get("FILMFLOW_CONFIG") else None)
    if path is not None and not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    try:
        base = _settings_class(path)()
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {_describe(exc)}") from None
    except Exception as exc:  # tomllib.TOMLDecodeError and friends
        raise ConfigError(f"cannot read configuration {path}: {exc}") from None
    if not overrides:
        return base
    merged = base.model_dump()
    for section, values in overrides.items():
        if values is None:
            continue
        merged.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    return "; ".join(".".join(str(p) for p in e["loc"]) + ": " + e["msg"] for e in exc.errors())
