"""QC checks (qc.checks), the DICOM validator wrapper (qc.dciodvfy) and the review workflow (qc.review)."""
