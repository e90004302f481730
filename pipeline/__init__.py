"""filmflow's steps as plain functions: arrays and datasets in, arrays and datasets out.

No Prefect import anywhere under this package: the flows in :mod:`flows` compose
these functions. Modules, in the order a film meets them:

- :mod:`pipeline.scan_io`     load a scan file (TIFF/PNG/JPEG), its DPI and SHA-256
- :mod:`pipeline.geometry`    find the film on the bed, estimate skew, deskew and crop
- :mod:`pipeline.polarity`    detect an inverted (negative) scan
- :mod:`pipeline.denoise`     mild edge-preserving denoise
- :mod:`pipeline.label`       locate the flashed ID label
- :mod:`pipeline.ocr`         Tesseract wrapper (subprocess via pytesseract)
- :mod:`pipeline.label_fields` parse OCR text into DICOM-typed fields (PN, DA, ...)
- :mod:`pipeline.manifest`    load the RIS manifest and reconcile a film with it
- :mod:`pipeline.uids`        deterministic UIDs
- :mod:`pipeline.dicom_film`  build and encode the digitized-film DICOM object
"""
