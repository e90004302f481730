"""``archive.dicomdir = true`` through the real CLI: the File-set lists every archived instance (issue 5).

Inputs: :func:`fixtures_orthanc.make_clean_batch` (provenance there).
"""

from __future__ import annotations

import pydicom
from pydicom.fileset import FileSet

from test_batch_orthanc import run_migrate


def test_cli_writes_readable_dicomdir(clean_batch, tmp_path):
    batch, _ = clean_batch
    archive = tmp_path / "archive"
    env = {"FILMFLOW_ARCHIVE__DICOMDIR": "true", "FILMFLOW_DICOM__KEEP_ORIGINAL": "true"}
    rows = run_migrate(batch, str(archive), tmp_path, env=env)
    archived = [r for r in rows if r["status"] == "archived"]
    assert archived, [(r["source_file"], r["status"], r["qc_flags"], r["error"]) for r in rows]

    on_disk = {p.stem for p in archive.glob("*/*/*.dcm")}
    assert {r["sop_instance_uid"] for r in archived} <= on_disk
    assert len(on_disk) == 2 * len(archived)  # film + original scan each

    dicomdir = pydicom.dcmread(archive / "fileset" / "DICOMDIR")
    fs = FileSet(dicomdir)
    listed = {str(inst.SOPInstanceUID) for inst in fs}
    assert listed == on_disk
    for inst in fs:
        ds = inst.load()  # every record resolves to a readable file
        assert ds.SOPInstanceUID == inst.SOPInstanceUID
        assert inst.path.startswith(str(archive / "fileset"))

    run_migrate(batch, str(archive), tmp_path, env=env)  # re-run: nothing new, File-set unchanged
    assert {str(inst.SOPInstanceUID) for inst in FileSet(archive / "fileset" / "DICOMDIR")} == on_disk
