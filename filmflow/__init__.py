"""filmflow: migrate X-ray film scans into a DICOM archive.

The application shell (configuration, ledger, report, archives, CLI) lives here;
the image, label and DICOM steps live in :mod:`pipeline`, the QC checks and
review workflow in :mod:`qc`, and the Prefect orchestration in :mod:`flows`.
"""

__version__ = "0.1.0"
