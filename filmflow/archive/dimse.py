"""DICOM C-STORE archive target (pynetdicom), ``dicom://CALLED_AET@host:port``.

Presentation contexts: each SOP Class filmflow writes (Multi-frame Grayscale
Word SC, Multi-frame Grayscale Byte SC, plain SC) x each transfer syntax
filmflow writes, **one transfer syntax per context**. Offering several transfer
syntaxes in one context lets the peer pick one (Orthanc picks Explicit VR LE),
after which a compressed file finds no accepted context.

One association is reused for a whole batch and re-opened when the peer has
closed or aborted it. A second association (opened lazily) carries C-FIND and
C-GET for :meth:`DimseArchive.contains` / :meth:`DimseArchive.verify` and the
Patient Root C-FIND of :meth:`DimseArchive.find_patient`; it also
requests the SCP role for the storage classes so C-GET sub-operations can
arrive on it (PS3.4 C.4.3, PS3.7 D.3.3.4).

Storage Commitment (``archive.storage_commitment``, PS3.4 Annex J): after
:meth:`DimseArchive.verify` found the instances, :meth:`DimseArchive.commit`
asks the archive to commit them (one N-ACTION on the query association for all
the receipts it is given) and waits for the N-EVENT-REPORT on filmflow's
listener (:mod:`filmflow.archive.commitment`, port ``archive.commitment_port``,
started by :meth:`DimseArchive.check`, so a port that cannot be bound stops the
batch before anything is pushed, and stopped by :meth:`DimseArchive.close`).
``auto`` falls back to C-FIND (+ C-GET sample) for the rest of the run when the
archive does not offer commitment or sends no report in time; ``require`` then
raises :class:`~filmflow.archive.commitment.CommitmentTimeoutError` /
:class:`~filmflow.archive.commitment.CommitmentFailedError` (transient: the
films stay pending).

Maximum PDU length: we announce :data:`MAX_PDU` (128 KiB, DCMTK's own ceiling)
for what we receive; what we send is cut to the length the *peer* announced.
With pynetdicom's default (16 KiB) and Orthanc's default ``MaximumPduLength``
(16 KiB) a 2 MB film travels in ~130 PDUs, and that per-PDU overhead was the
measured cause of C-STORE running at 0.66x dcmtk's storescu (bench/README.md).
Raise the archive's limit too (Orthanc: ``"MaximumPduLength": 131072``).

Errors
------
- no connection, association rejected or aborted, empty C-STORE status
  (timeout / abort): :class:`ArchiveUnreachableError` (``transient`` True,
  except for a rejected association, which usually means a wrong AE title);
- a Failure status: :class:`StoreFailedError` with the status code in the
  message; ``transient`` True only for 0xA7xx "Refused: Out of Resources".

This class is not thread-safe: use one instance per worker.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

from pydicom import Dataset, dcmread
from pynetdicom import AE, build_role, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    Verification,
)
from pynetdicom.status import STORAGE_SERVICE_CLASS_STATUS, code_to_category

from filmflow.archive.base import (
    FALLBACK_NOTE,
    FILMFLOW_SOP_CLASSES,
    FILMFLOW_TRANSFER_SYNTAXES,
    MULTIFRAME_GRAYSCALE_BYTE_SC,
    MULTIFRAME_GRAYSCALE_WORD_SC,
    Archive,
    StoreReceipt,
    archive_error,
    patient_entries,
    convert_to_plain_sc,
    pixel_sha256,
    read_for_store,
)
from filmflow.archive.commitment import (
    STORAGE_COMMITMENT_PUSH_MODEL,
    TRANSIENT_FAILURE_REASONS,
    CommitmentFailedError,
    CommitmentListener,
    CommitmentOutcome,
    CommitmentTimeoutError,
    CommitmentUnsupportedError,
    acquire_listener,
    handle_event_report,
    release_listener,
    send_commitment_request,
    wait_for_report,
)
from filmflow.config import ArchiveConfig
from filmflow.errors import ArchiveError, ArchiveUnreachableError, ConfigError, StoreFailedError, VerificationError

log = logging.getLogger(__name__)

#: Maximum PDU length we announce (bytes); 131072 is DCMTK's ASC_MAXIMUMPDUSIZE and Orthanc's upper bound.
MAX_PDU = 131072

_AET = re.compile(r"^[\x21-\x5b\x5d-\x7e ]{1,16}$")  # PS3.5 AE VR: no backslash, no control chars


def _status_text(code: int) -> str:
    return STORAGE_SERVICE_CLASS_STATUS.get(code, ("", "unknown status"))[1]


class DimseArchive(Archive):
    """Archive by DICOM C-STORE to a PACS.

    Parameters
    ----------
    called_aet : str
        The archive's AE title.
    host : str
    port : int
    config : ArchiveConfig, optional
        ``calling_ae_title`` and ``timeout_s`` (ACSE, DIMSE, network and TCP
        connect timeouts, seconds) are used.
    sop_classes, transfer_syntaxes : sequence of str, optional
        What to propose (default: everything filmflow writes).
    """

    def __init__(
        self,
        called_aet: str,
        host: str,
        port: int,
        config: ArchiveConfig | None = None,
        *,
        sop_classes: tuple[str, ...] = FILMFLOW_SOP_CLASSES,
        transfer_syntaxes: tuple[str, ...] = FILMFLOW_TRANSFER_SYNTAXES,
    ) -> None:
        self.config = config or ArchiveConfig()
        for name, aet in (("called", called_aet), ("calling", self.config.calling_ae_title)):
            if not _AET.match(aet) or not aet.strip():
                raise ConfigError(f"invalid {name} AE title {aet!r}: 1-16 printable ASCII characters, no backslash")
        self.called_aet = called_aet
        self.host = host
        self.port = int(port)
        self.url = f"dicom://{called_aet}@{host}:{self.port}"
        self.sop_classes = tuple(sop_classes)
        self.transfer_syntaxes = tuple(transfer_syntaxes)
        self._store_ae = self._make_ae()
        self._store_ae.add_requested_context(Verification)
        for sop_class in self.sop_classes:
            for ts in self.transfer_syntaxes:
                self._store_ae.add_requested_context(sop_class, ts)
        self._query_ae = self._make_ae()
        self._query_ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        self._query_ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
        self._query_ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        for sop_class in self.sop_classes:
            for ts in self.transfer_syntaxes:
                self._query_ae.add_requested_context(sop_class, ts)
        if self._commitment_wanted:
            self._query_ae.add_requested_context(STORAGE_COMMITMENT_PUSH_MODEL)
        self._listener: CommitmentListener | None = None
        self._commitment_unavailable = ""  # auto mode: why commitment is not used for the rest of the run
        self._roles = [build_role(sop_class, scp_role=True) for sop_class in self.sop_classes]
        self._assoc: Association | None = None
        self._query_assoc: Association | None = None
        self._received: list[Dataset] = []
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, config: ArchiveConfig | None = None) -> "DimseArchive":
        """Parse ``dicom://CALLED_AET@host:port`` (port defaults to 104).

        Raises
        ------
        ConfigError
        """
        parsed = urlparse(url)
        if parsed.scheme.lower() != "dicom" or not parsed.username or not parsed.hostname:
            raise ConfigError(f"archive URL {url!r} must look like dicom://CALLED_AET@host:port")
        try:
            port = parsed.port or 104
        except ValueError:
            raise ConfigError(f"archive URL {url!r} has an invalid port") from None
        return cls(parsed.username, parsed.hostname, port, config)

    def _make_ae(self) -> AE:
        ae = AE(ae_title=self.config.calling_ae_title)
        t = self.config.timeout_s
        ae.acse_timeout = t
        ae.dimse_timeout = t
        ae.network_timeout = t
        ae.connection_timeout = t
        ae.maximum_pdu_size = MAX_PDU
        return ae

    # --- associations ----------------------------------------------------------------------
    def _open(self, ae: AE, **kwargs: object) -> Association:
        try:
            assoc = ae.associate(self.host, self.port, ae_title=self.called_aet, **kwargs)  # type: ignore[arg-type]
        except OSError as exc:  # pynetdicom mostly reports via flags, but be safe
            raise archive_error(ArchiveUnreachableError, f"cannot connect to {self.url}: {exc}", transient=True) from None
        if assoc.is_established:
            return assoc
        if assoc.is_rejected:
            raise archive_error(
                ArchiveUnreachableError,
                f"{self.url} rejected the association from {self.config.calling_ae_title!r}:"
                " check the called and calling AE titles and the archive's list of known modalities",
                transient=False,
            )
        raise archive_error(
            ArchiveUnreachableError,
            f"cannot associate with {self.url} (connection refused, timed out or aborted); is the archive running?",
            transient=True,
        )

    def _association(self) -> Association:
        if self._assoc is None or not self._assoc.is_established:
            self._drop(self._assoc)
            self._assoc = self._open(self._store_ae)
            log.debug("association to %s: %d contexts accepted", self.url, len(self._assoc.accepted_contexts))
        return self._assoc

    def _query_association(self) -> Association:
        if self._query_assoc is None or not self._query_assoc.is_established:
            self._drop(self._query_assoc)
            self._query_assoc = self._open(
                self._query_ae, ext_neg=self._roles,
                evt_handlers=[(evt.EVT_C_STORE, self._on_c_store), (evt.EVT_N_EVENT_REPORT, handle_event_report)],
            )
        return self._query_assoc

    @staticmethod
    def _drop(assoc: Association | None) -> None:
        if assoc is not None and assoc.is_established:
            assoc.release()

    def close(self) -> None:
        """Release both associations and the commitment listener; idempotent."""
        self._drop(self._assoc)
        self._drop(self._query_assoc)
        self._assoc = self._query_assoc = None
        listener, self._listener = self._listener, None
        if listener is not None:
            release_listener(listener)

    # --- check / store ---------------------------------------------------------------------
    def check(self) -> None:
        """Start the commitment listener (when commitment may be asked), then C-ECHO over the (reused) storage association.

        Raises
        ------
        CommitmentListenerError
            ``archive.commitment_port`` cannot be bound (a
            :class:`~filmflow.errors.ConfigError`: the batch does not start).
        ArchiveUnreachableError
        """
        if self._commitment_wanted:
            self._start_listener()
        with self._lock:
            status = self._association().send_c_echo()
            if "Status" not in status:
                self._abort()
                raise archive_error(ArchiveUnreachableError, f"C-ECHO to {self.url} got no answer", transient=True)
            if status.Status != 0x0000:
                raise archive_error(
                    ArchiveUnreachableError, f"C-ECHO to {self.url} answered status 0x{status.Status:04X}", transient=False
                )

    def accepted(self, sop_class: str, transfer_syntax: str | None = None) -> bool:
        """Whether the current storage association has a context for this class (and syntax)."""
        return any(
            cx.abstract_syntax == sop_class and (transfer_syntax is None or cx.transfer_syntax[0] == transfer_syntax)
            for cx in self._association().accepted_contexts
        )

    def _abort(self) -> None:
        if self._assoc is not None:
            if self._assoc.is_established:
                self._assoc.abort()
            self._assoc = None

    def store(self, dicom_file: Path, *, pixel_sha256: str = "") -> StoreReceipt:
        """C-STORE one file; falls back to plain SC when the peer refuses Multi-frame Grayscale SC.

        The file is streamed from disk by pynetdicom; with ``pixel_sha256``
        (the builder's hash) only its header is parsed here.

        Raises
        ------
        ArchiveUnreachableError
            No association, or no C-STORE response (timeout/abort); transient.
        StoreFailedError
            The archive answered a Failure status, or accepted no context for
            this object.
        """
        dicom_file = Path(dicom_file)
        ds, digest = read_for_store(dicom_file, pixel_sha256)
        sop_class = str(ds.SOPClassUID)
        ts = str(ds.file_meta.TransferSyntaxUID)
        notes: list[str] = []
        with self._lock:
            payload: Path | Dataset = dicom_file
            if not self.accepted(sop_class) and sop_class in (MULTIFRAME_GRAYSCALE_WORD_SC, MULTIFRAME_GRAYSCALE_BYTE_SC):
                payload = convert_to_plain_sc(dcmread(dicom_file))
                sop_class = str(payload.SOPClassUID)
                ts = str(payload.file_meta.TransferSyntaxUID)
                notes.append(FALLBACK_NOTE)
                log.info("%s: %s", self.url, FALLBACK_NOTE)
            if not self.accepted(sop_class, ts):
                raise archive_error(
                    StoreFailedError,
                    f"{self.url} accepted no presentation context for SOP Class {sop_class} in transfer syntax {ts};"
                    " choose another dicom.transfer_syntax or enable it on the archive",
                    transient=False,
                )
            status = self._send(payload)
        code = int(status.Status)
        category = code_to_category(code)
        if category not in ("Success", "Warning"):
            raise archive_error(
                StoreFailedError,
                f"C-STORE failed with status 0x{code:04X} ({category}: {_status_text(code)}) from {self.url}",
                transient=(code & 0xFF00) == 0xA700,
            )
        if category == "Warning":
            notes.append(f"C-STORE warning status 0x{code:04X} ({_status_text(code)})")
        return StoreReceipt(
            sop_instance_uid=str(ds.SOPInstanceUID),
            study_instance_uid=str(ds.StudyInstanceUID),
            series_instance_uid=str(ds.SeriesInstanceUID),
            location=f"{self.url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}",
            sop_class_uid=sop_class,
            pixel_sha256=digest,
            notes=tuple(notes),
            transfer_syntax_uid=ts,
        )

    def _send(self, payload: Path | Dataset) -> Dataset:
        """Send on the reused association; one reconnect if a reused association turns out dead."""
        for attempt in (1, 2):
            reused = self._assoc is not None and self._assoc.is_established
            assoc = self._association()
            status = assoc.send_c_store(payload)
            if "Status" in status:
                return status
            self._abort()
            if not (reused and attempt == 1):
                break
            log.info("association to %s was lost; reconnecting once", self.url)
        raise archive_error(
            ArchiveUnreachableError,
            f"no C-STORE response from {self.url} (timeout after {self.config.timeout_s} s or association aborted)",
            transient=True,
        )

    # --- query / retrieve ------------------------------------------------------------------
    def _find(self, sop_uid: str, study_uid: str = "", series_uid: str = "") -> list[Dataset]:
        query = Dataset()
        query.QueryRetrieveLevel = "IMAGE"
        query.StudyInstanceUID = study_uid
        query.SeriesInstanceUID = series_uid
        query.SOPInstanceUID = sop_uid
        query.SOPClassUID = ""
        matches = self._c_find(query, StudyRootQueryRetrieveInformationModelFind, "instance")
        return [m for m in matches if str(m.get("SOPInstanceUID", "")) == sop_uid]

    def _c_find(self, query: Dataset, model: str, what: str) -> list[Dataset]:
        """Send one C-FIND on the query association; the pending identifiers.

        Raises
        ------
        ArchiveUnreachableError
        """
        matches: list[Dataset] = []
        with self._lock:
            assoc = self._query_association()
            final = None
            for status, identifier in assoc.send_c_find(query, model):
                if "Status" not in status:
                    self._query_assoc = None
                    assoc.abort()
                    raise archive_error(ArchiveUnreachableError, f"no C-FIND ({what}) response from {self.url}", transient=True)
                final = int(status.Status)
                if code_to_category(final) == "Pending" and identifier is not None:
                    matches.append(identifier)
        if final is None or code_to_category(final) not in ("Success", "Pending"):
            raise archive_error(
                ArchiveUnreachableError,
                f"C-FIND ({what}) failed with status 0x{(final or 0):04X} at {self.url}; is querying allowed for our AE title?",
                transient=False,
            )
        return matches

    def find_patient(self, patient_id: str) -> list[dict[str, str]]:
        """C-FIND Patient Root, PATIENT level, on Patient ID (exact match; an ID holding wildcards is not asked).

        A peer that accepts only Study Root C-FIND is asked at STUDY level
        instead (the patient attributes are return keys there too).

        Returns
        -------
        list of dict
            ``PatientID``, ``PatientName``, ``PatientBirthDate`` of each match.

        Raises
        ------
        ArchiveUnreachableError
            No answer, or a failure status (e.g. querying not allowed for our AE title).
        """
        if not patient_id or any(c in patient_id for c in "*?\\"):
            return []  # a wildcard would match other patients; a backslash would be a multi-value
        with self._lock:
            accepted = {cx.abstract_syntax for cx in self._query_association().accepted_contexts}
        if PatientRootQueryRetrieveInformationModelFind in accepted:
            model, level = PatientRootQueryRetrieveInformationModelFind, "PATIENT"
        elif StudyRootQueryRetrieveInformationModelFind in accepted:
            model, level = StudyRootQueryRetrieveInformationModelFind, "STUDY"
        else:
            raise archive_error(
                ArchiveUnreachableError,
                f"{self.url} accepts no C-FIND (Patient or Study Root); allow queries for our AE title",
                transient=False,
            )
        query = Dataset()
        query.QueryRetrieveLevel = level
        query.PatientID = patient_id
        query.PatientName = ""
        query.PatientBirthDate = ""
        if level == "STUDY":
            query.StudyInstanceUID = ""
        return patient_entries(self._c_find(query, model, "patient"), patient_id)

    def contains(self, sop_instance_uid: str) -> bool:
        """C-FIND (Study Root, IMAGE level) for the SOP Instance UID.

        Raises
        ------
        ArchiveUnreachableError
        """
        return bool(self._find(sop_instance_uid))

    def _on_c_store(self, event: evt.Event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        self._received.append(ds)
        return 0x0000

    def verify(self, receipt: StoreReceipt, *, retrieve: bool = True) -> None:
        """C-FIND the instance; when ``retrieve``, C-GET it and compare the pixel hash.

        Storage Commitment is asked separately, by :meth:`commit`.

        Raises
        ------
        VerificationError
            Missing instance, or pixel hash mismatch.
        ArchiveUnreachableError
            No answer.
        """
        matches = self._find(receipt.sop_instance_uid, receipt.study_instance_uid, receipt.series_instance_uid)
        if not matches:
            raise archive_error(VerificationError, f"{self.url} does not hold instance {receipt.sop_instance_uid}", transient=False)
        if not retrieve:
            return
        query = Dataset()
        query.QueryRetrieveLevel = "IMAGE"
        query.StudyInstanceUID = receipt.study_instance_uid
        query.SeriesInstanceUID = receipt.series_instance_uid
        query.SOPInstanceUID = receipt.sop_instance_uid
        with self._lock:
            self._received = []
            assoc = self._query_association()
            final = None
            for status, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet):
                if "Status" not in status:
                    self._query_assoc = None
                    assoc.abort()
                    raise archive_error(ArchiveUnreachableError, f"no C-GET response from {self.url}", transient=True)
                final = int(status.Status)
            received, self._received = self._received, []
        got = [ds for ds in received if str(ds.SOPInstanceUID) == receipt.sop_instance_uid]
        if not got:
            raise archive_error(
                VerificationError,
                f"C-GET of {receipt.sop_instance_uid} from {self.url} returned no instance (final status 0x{(final or 0):04X})",
                transient=False,
            )
        if receipt.pixel_sha256 and pixel_sha256(got[0]) != receipt.pixel_sha256:
            raise archive_error(VerificationError, f"pixel hash mismatch for {receipt.sop_instance_uid} at {self.url}", transient=False)

    # --- storage commitment ----------------------------------------------------------------
    @property
    def _commitment_wanted(self) -> bool:
        return self.config.storage_commitment != "off" and self.config.commitment_port > 0

    def _start_listener(self) -> None:
        """Acquire the process's commitment listener on ``commitment_host:commitment_port`` (once per archive).

        Raises
        ------
        CommitmentListenerError
        """
        if self._listener is None:
            cfg = self.config
            self._listener = acquire_listener(cfg.calling_ae_title, cfg.commitment_host, cfg.commitment_port)

    def commit(self, receipts: Sequence[StoreReceipt]) -> dict[str, CommitmentOutcome | CommitmentFailedError]:
        """Storage Commitment for stored instances: one N-ACTION for all ``receipts``, one wait for the report (PS3.4 J.3).

        Call after :meth:`verify` found the instances. The archive's report is
        matched back per SOP Instance UID, so one request may carry the
        instances of many films.

        Parameters
        ----------
        receipts : sequence of StoreReceipt
            From :meth:`store` (``sop_class_uid`` is the class as stored).

        Returns
        -------
        dict
            Per SOP Instance UID of ``receipts``: a :class:`CommitmentOutcome`
            (``committed``; ``unsupported``: ``auto`` and commitment is not
            available, verified by C-FIND/C-GET only; ``off``: not asked), or
            the :class:`CommitmentFailedError` of an instance the archive did not
            commit (its Failure Reason in the message, transient for 0x0110 and
            0x0213; an instance missing from the report: transient).

        Raises
        ------
        CommitmentTimeoutError
            ``require`` and no report within ``commitment_timeout_s`` (transient:
            the films stay pending for the next run).
        CommitmentFailedError
            ``require`` and the archive does not offer commitment, refuses the
            request or aborts it (transient: an archive-side setting).
        CommitmentListenerError
            The listener's port cannot be bound (when :meth:`check` was not called).
        ArchiveUnreachableError
            The query association cannot be opened.
        """
        receipts = list(receipts)
        cfg = self.config
        if not receipts:
            return {}
        if cfg.storage_commitment == "off":
            return self._for_all(receipts, CommitmentOutcome("off", "storage commitment off (archive.storage_commitment)"))
        if not cfg.commitment_port:
            return self._for_all(receipts, CommitmentOutcome("off", "storage commitment not requested (archive.commitment_port is 0)"))
        if self._commitment_unavailable:
            return self._for_all(receipts, CommitmentOutcome("unsupported", self._commitment_unavailable))
        self._start_listener()
        listen = f"AE {cfg.calling_ae_title!r} at this host, port {cfg.commitment_port}"
        references = [(r.sop_class_uid, r.sop_instance_uid) for r in receipts]
        with self._lock:
            assoc = self._query_association()  # an outage propagates: it says nothing about commitment
            try:
                transaction = send_commitment_request(assoc, references, url=self.url)
            except CommitmentUnsupportedError as exc:
                return self._commitment_unavailable_for(exc, receipts)
            except ArchiveUnreachableError as exc:  # no N-ACTION response: the association is unusable
                self._query_assoc = None
                if assoc.is_established:
                    assoc.abort()
                return self._commitment_unavailable_for(exc, receipts)
        try:
            report = wait_for_report(transaction, cfg.commitment_timeout_s, url=self.url, listen=listen)
        except CommitmentTimeoutError as exc:
            return self._commitment_unavailable_for(exc, receipts)
        committed = report.committed_uids()
        out: dict[str, CommitmentOutcome | CommitmentFailedError] = {}
        for uid in dict.fromkeys(r.sop_instance_uid for r in receipts):
            failed = report.failure(uid)
            if failed is not None:
                out[uid] = archive_error(
                    CommitmentFailedError,
                    f"{self.url} did not commit instance {uid}: failure reason {failed.failure_text}",
                    transient=failed.failure_reason in TRANSIENT_FAILURE_REASONS,
                )
            elif uid not in committed:
                out[uid] = archive_error(
                    CommitmentFailedError,
                    f"the storage commitment report from {self.url} (transaction {transaction}) does not list instance {uid}",
                    transient=True,
                )
            else:
                out[uid] = CommitmentOutcome("committed", f"committed by {self.url} (storage commitment, transaction {transaction})")
        return out

    @staticmethod
    def _for_all(receipts: list[StoreReceipt], outcome: CommitmentOutcome) -> dict[str, CommitmentOutcome | CommitmentFailedError]:
        return {r.sop_instance_uid: outcome for r in receipts}

    def _commitment_unavailable_for(self, exc: ArchiveError, receipts: list[StoreReceipt]) -> dict[str, CommitmentOutcome | CommitmentFailedError]:
        """``require``: raise, transient (the films stay pending until the archive commits); ``auto``: fall back for the run."""
        if self.config.storage_commitment == "require":
            if isinstance(exc, CommitmentTimeoutError):
                raise exc
            raise archive_error(
                CommitmentFailedError,
                f"{exc}; archive.storage_commitment is 'require': enable commitment for our AE title on the archive or use 'auto'",
                transient=True,  # an archive-side setting: keep the film pending, do not re-process it
            ) from None
        self._commitment_unavailable = f"storage commitment unavailable, verified without it (C-FIND, C-GET sample): {exc}"
        log.warning("%s; not asked again in this run", self._commitment_unavailable)
        return self._for_all(receipts, CommitmentOutcome("unsupported", self._commitment_unavailable))
