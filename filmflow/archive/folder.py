"""A folder as archive target: one Part 10 file per instance.

Layout::

    <root>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm
    <root>/fileset/DICOMDIR + PTxxxxxx/STxxxxxx/SExxxxxx/IMxxxxxx   (optional media export)
    <root>/.patients/<sha256 of PatientID>/<sha256 of the record>.json  (patient index)

The patient index backs :meth:`FolderArchive.find_patient` without reading every
archived file: each stored instance files its PatientID, PatientName and
PatientBirthDate there, one file per distinct record (so concurrent writers
never lose an entry). Files are named by hashes, never by patient data.

Why a separate media-export folder for the DICOMDIR: PS3.10 File IDs are at most
8 components of at most 8 characters from ``A-Z 0-9 _`` (PS3.10 8.2), so a
DICOMDIR cannot conformantly reference the UID-named files above. pydicom's
:class:`~pydicom.fileset.FileSet` manages its own naming, so
:meth:`FolderArchive.write_dicomdir` keeps a File-set under ``<root>/fileset``
that it updates incrementally (only instances not yet in the File-set are
copied). It costs a second copy of every instance, which is why it is opt-in
(``dicomdir=True`` writes it on :meth:`close`) or called explicitly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from pydicom import dcmread

from filmflow.archive.base import Archive, StoreReceipt, archive_error, pixel_sha256, read_for_store
from filmflow.config import ArchiveConfig
from filmflow.errors import ArchiveUnreachableError, StoreFailedError, VerificationError

log = logging.getLogger(__name__)

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
FILESET_DIR = "fileset"
PATIENT_INDEX_DIR = ".patients"
_PATIENT_KEYS = ("PatientID", "PatientName", "PatientBirthDate")


def _uid_component(value: object, keyword: str) -> str:
    uid = str(value or "")
    if not _UID.match(uid) or len(uid) > 64:
        raise archive_error(StoreFailedError, f"{keyword} is not a valid UID; cannot file the instance", transient=False)
    return uid


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: Placeholders for the STUDY *directory record* only (PS3.3 F.5: Study Date and Time are Type 1
#: there, Type 2 in the film): the instance files keep their empty, i.e. unknown, values.
UNKNOWN_STUDY_DATE, UNKNOWN_STUDY_TIME = "19000101", "000000"


def _fileset_leaf(header: object) -> object:
    """PATIENT -> STUDY -> SERIES -> IMAGE directory records for one instance (pydicom's own
    record definitions), with :data:`UNKNOWN_STUDY_DATE`/``TIME`` in the STUDY record when the
    instance leaves them empty (a film whose exam date or time is unknown)."""
    import copy

    from pydicom.fileset import DIRECTORY_RECORDERS, RecordNode

    for_study = copy.copy(header)
    if not str(getattr(for_study, "StudyDate", "") or ""):
        for_study.StudyDate = UNKNOWN_STUDY_DATE
    if not str(getattr(for_study, "StudyTime", "") or ""):
        for_study.StudyTime = UNKNOWN_STUDY_TIME
    node = None
    for record_type, source in (("PATIENT", header), ("STUDY", for_study), ("SERIES", header), ("IMAGE", header)):
        record = DIRECTORY_RECORDERS[record_type](source)
        record.DirectoryRecordType = record_type
        if record_type == "IMAGE":
            record.ReferencedSOPInstanceUIDInFile = header.SOPInstanceUID  # the leaf's key
        child = RecordNode(record)
        if node is not None:
            child.parent = node
        node = child
    return node


class FolderArchive(Archive):
    """Archive to a local or mounted folder.

    Parameters
    ----------
    path : Path
        Root folder (created by :meth:`check` if missing).
    config : ArchiveConfig, optional
    dicomdir : bool
        Write/update the PS3.10 File-set under ``<path>/fileset`` on :meth:`close`.
    """

    def __init__(self, path: Path, config: ArchiveConfig | None = None, *, dicomdir: bool = False) -> None:
        self.root = Path(path)
        self.config = config or ArchiveConfig()
        self.url = self.root.resolve().as_uri() if self.root.is_absolute() else str(self.root)
        self.dicomdir = dicomdir
        self._closed = False

    # --- Archive interface -----------------------------------------------------------------
    def check(self) -> None:
        """Create the root folder if needed and prove it is writable.

        Raises
        ------
        ArchiveUnreachableError
            ``transient`` is False for permission problems, True otherwise
            (e.g. an unmounted share).
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".filmflow-check-", delete=True) as f:
                f.write(b"ok")
                f.flush()
                os.fsync(f.fileno())
        except PermissionError as exc:
            raise archive_error(
                ArchiveUnreachableError,
                f"archive folder {self.root} is not writable ({exc.strerror}); fix its permissions",
                transient=False,
            ) from None
        except OSError as exc:
            raise archive_error(
                ArchiveUnreachableError,
                f"archive folder {self.root} cannot be used ({exc.strerror}); is the share mounted?",
                transient=True,
            ) from None

    def path_for(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        """Where an instance is (or would be) filed."""
        return self.root / study_uid / series_uid / f"{sop_uid}.dcm"

    def store(self, dicom_file: Path, *, pixel_sha256: str = "") -> StoreReceipt:
        """Copy ``dicom_file`` into the folder atomically; idempotent per SOP Instance UID.

        ``pixel_sha256``: the builder's hash (the pixels are then not decoded here).

        A second store of identical bytes is a no-op; different bytes under the
        same SOP Instance UID replace the file atomically (noted in the receipt).
        An instance already archived under another study/series folder (the same
        scan migrated by another batch) is not stored again: the receipt names
        the existing file.

        Raises
        ------
        StoreFailedError
            The file is not DICOM or lacks valid UIDs (permanent).
        ArchiveUnreachableError
            The folder cannot be written (transient).
        """
        dicom_file = Path(dicom_file)
        ds, digest = read_for_store(dicom_file, pixel_sha256)
        study = _uid_component(ds.get("StudyInstanceUID"), "StudyInstanceUID")
        series = _uid_component(ds.get("SeriesInstanceUID"), "SeriesInstanceUID")
        sop = _uid_component(ds.get("SOPInstanceUID"), "SOPInstanceUID")
        target = self.path_for(study, series, sop)
        notes: list[str] = []
        elsewhere = None if target.exists() else self._find(sop)
        if elsewhere is not None:
            # the same scan archived by another batch (another series): one instance per SOP
            # Instance UID, so the archived file stands; verify() compares its pixels with ours
            target, study, series = elsewhere, elsewhere.parent.parent.name, elsewhere.parent.name
            notes.append("already archived in another series (an earlier batch); not stored again")
        elif target.exists():
            if _file_sha256(target) == _file_sha256(dicom_file):
                notes.append("already stored")
            else:
                notes.append("replaced an existing file with the same SOP Instance UID")
                self._atomic_copy(dicom_file, target)
        else:
            self._atomic_copy(dicom_file, target)
        self._index_patient(ds)
        return StoreReceipt(
            sop_instance_uid=sop,
            study_instance_uid=study,
            series_instance_uid=series,
            location=str(target),
            sop_class_uid=str(ds.SOPClassUID),
            pixel_sha256=digest,
            notes=tuple(notes),
            transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
        )

    def _atomic_copy(self, src: Path, target: Path) -> None:
        tmp_name = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
                shutil.copyfileobj(inp, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp_name, target)
            tmp_name = None
            dir_fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise archive_error(
                ArchiveUnreachableError,
                f"cannot write into archive folder {self.root} ({exc.strerror})",
                transient=not isinstance(exc, PermissionError),
            ) from None
        finally:
            if tmp_name is not None:
                try:
                    os.unlink(tmp_name)
                except FileNotFoundError:
                    pass

    @staticmethod
    def _hash(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()

    def _index_patient(self, ds: object) -> None:
        entry = {k: str(getattr(ds, k, "") or "") for k in _PATIENT_KEYS}
        if not entry["PatientID"]:
            return
        folder = self.root / PATIENT_INDEX_DIR / self._hash(entry["PatientID"])
        target = folder / f"{self._hash(json.dumps(entry, sort_keys=True))}.json"
        if target.is_file():
            return
        tmp = folder / f".{target.stem}.tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(entry, sort_keys=True), encoding="utf-8")
            os.replace(tmp, target)
        except OSError as exc:
            raise archive_error(
                ArchiveUnreachableError, f"cannot write the patient index in {self.root} ({exc.strerror})",
                transient=not isinstance(exc, PermissionError),
            ) from None

    def find_patient(self, patient_id: str) -> list[dict[str, str]]:
        """The distinct records filed for ``patient_id`` in the patient index (see the module notes).

        Instances archived before the index existed are not listed;
        :meth:`reindex_patients` files them.
        """
        if not patient_id:
            return []
        out: list[dict[str, str]] = []
        for path in sorted((self.root / PATIENT_INDEX_DIR / self._hash(patient_id)).glob("*.json")):
            try:
                entry = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                log.warning("patient index entry %s unreadable (%s); ignored", path.name, type(exc).__name__)
                continue
            if entry.get("PatientID") == patient_id:
                out.append({k: str(entry.get(k, "")) for k in _PATIENT_KEYS})
        return out

    def reindex_patients(self) -> int:
        """File every archived instance in the patient index; the number of instances read."""
        paths = self.instance_files()
        for path in paths:
            self._index_patient(dcmread(path, stop_before_pixels=True, specific_tags=list(_PATIENT_KEYS)))
        return len(paths)

    def _find(self, sop_instance_uid: str) -> Path | None:
        if not _UID.match(sop_instance_uid):
            return None
        for hit in self.root.glob(f"*/*/{sop_instance_uid}.dcm"):
            return hit
        return None

    def contains(self, sop_instance_uid: str) -> bool:
        """True when a file for this SOP Instance UID exists (glob over the two UID levels)."""
        return self._find(sop_instance_uid) is not None

    def verify(self, receipt: StoreReceipt, *, retrieve: bool = True) -> None:
        """Check the file exists and, when ``retrieve``, that its decoded pixels hash as sent.

        Raises
        ------
        VerificationError
        """
        path = Path(receipt.location)
        if not path.is_file():
            found = self._find(receipt.sop_instance_uid)
            if found is None:
                raise archive_error(VerificationError, f"instance {receipt.sop_instance_uid} is not in {self.root}", transient=False)
            path = found
        if not retrieve:
            return
        try:
            ds = dcmread(path)
            stored_uid = str(ds.SOPInstanceUID)
            digest = pixel_sha256(ds)
        except Exception as exc:  # unreadable or undecodable file: the archive copy is bad
            raise archive_error(VerificationError, f"archived file {path.name} cannot be decoded: {exc}", transient=False) from None
        if stored_uid != receipt.sop_instance_uid:
            raise archive_error(VerificationError, f"archived file {path.name} holds another SOP Instance UID", transient=False)
        if receipt.pixel_sha256 and digest != receipt.pixel_sha256:
            raise archive_error(VerificationError, f"pixel hash mismatch for {receipt.sop_instance_uid} in {self.root}", transient=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.dicomdir:
            self.write_dicomdir()

    # --- DICOMDIR --------------------------------------------------------------------------
    def instance_files(self) -> list[Path]:
        """Every archived instance file (sorted)."""
        return sorted(self.root.glob("*/*/*.dcm"))

    def write_dicomdir(self, dest: Path | None = None) -> Path:
        """Create or update the PS3.10 File-set (DICOMDIR) listing every archived instance.

        Parameters
        ----------
        dest : Path, optional
            File-set root; default ``<root>/fileset``. Instances already in the
            File-set (by SOP Instance UID) are not copied again.

        Returns
        -------
        Path
            The DICOMDIR file.

        Raises
        ------
        StoreFailedError
            An instance lacks an attribute the directory records require
            (e.g. PatientID, StudyDate, StudyTime, StudyID, InstanceNumber).
        """
        from pydicom.fileset import FileSet

        dest = Path(dest) if dest is not None else self.root / FILESET_DIR
        dicomdir = dest / "DICOMDIR"
        fs = FileSet(dicomdir) if dicomdir.is_file() else FileSet()
        have = {str(inst.SOPInstanceUID) for inst in fs}
        added = 0
        for path in self.instance_files():
            if path.stem in have:
                continue
            try:
                fs.add_custom(path, _fileset_leaf(dcmread(path, stop_before_pixels=True)))
            except ValueError as exc:
                raise archive_error(StoreFailedError, f"cannot add {path.name} to the DICOMDIR: {exc}", transient=False) from None
            added += 1
        if dicomdir.is_file():
            if added:
                fs.write()
        else:
            dest.mkdir(parents=True, exist_ok=True)
            fs.write(dest)
        log.info("DICOMDIR %s: %d instances (%d added)", dicomdir, len(have) + added, added)
        return dicomdir
