"""DICOM Storage Commitment Push Model, SCU side (PS3.4 Annex J).

After instances were stored by C-STORE, filmflow asks the archive to take
responsibility for them: an **N-ACTION** (SOP Class 1.2.840.10008.1.20.1,
well-known instance 1.2.840.10008.1.20.1.1, Action Type ID 1 "Request Storage
Commitment") carrying a Transaction UID and the Referenced SOP Sequence. The
archive answers the N-ACTION at once (that only acknowledges the request) and
later sends an **N-EVENT-REPORT** (Event Type ID 1: every instance committed;
2: failures exist) with the same Transaction UID, the committed instances in the
Referenced SOP Sequence and the others in the Failed SOP Sequence, each with a
Failure Reason (PS3.4 J.3.3.1).

Most archives (Orthanc among them) send the report on a **new association**
that they open to the requesting AE, looked up by AE title in their own list of
modalities: the archive administrator must register filmflow's calling AE
title with the host and port of the listener below (Orthanc:
``DicomModalities``). A report may also arrive on the association of the
N-ACTION (PS3.4 J.3.3); :func:`handle_event_report` serves both.

Pieces
------
- :func:`action_information` builds the N-ACTION dataset;
- :func:`parse_event_report` reads an N-EVENT-REPORT into a :class:`CommitmentReport`;
- :class:`CommitmentListener` is the small SCP that receives reports
  (started with the first request, stopped with the archive; one per
  host/port in the process, shared and reference-counted);
- :func:`request_commitment` sends the N-ACTION on an established association
  and waits for the matching report.

Errors
------
- :class:`CommitmentUnsupportedError`: the archive accepted no presentation
  context for the Push Model SOP Class, or answered the N-ACTION with a failure
  status. Permanent for this archive; ``storage_commitment = "auto"`` then
  verifies by C-FIND/C-GET instead.
- :class:`CommitmentTimeoutError` (code ``commitment_timeout``, ``transient``
  True): no report within the timeout.
- :class:`CommitmentFailedError` (code ``commitment_failed``): the archive did
  not commit an instance (Failed SOP Sequence; ``transient`` per Failure
  Reason), or, with ``storage_commitment = "require"``, refused or does not
  offer commitment (raised by :mod:`filmflow.archive.dimse`).
- :class:`CommitmentListenerError` (a :class:`~filmflow.errors.ConfigError`,
  exit code 2): the listener's port cannot be bound (in use, not permitted);
  refused before a batch starts (``DimseArchive.check``).
- :class:`~filmflow.errors.ArchiveUnreachableError` (``transient`` True): no
  N-ACTION response (timeout or abort).

Messages carry UIDs, AE titles, ports and status codes only, never patient data.

References
----------
DICOM PS3.4 Annex J (Storage Commitment Service Class), PS3.7 10.1.1
(N-EVENT-REPORT) and 10.1.4 (N-ACTION); pynetdicom 3.0 docs:
``Association.send_n_action``, ``evt.EVT_N_EVENT_REPORT``,
``AE.start_server``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Iterable, Literal

from pydicom import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.status import code_to_category

from filmflow.archive.base import archive_error
from filmflow.errors import ArchiveError, ArchiveUnreachableError, ConfigError

log = logging.getLogger(__name__)

#: Storage Commitment Push Model SOP Class and its well-known SOP Instance (PS3.4 J.3.1, PS3.6 Annex A).
STORAGE_COMMITMENT_PUSH_MODEL = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE = "1.2.840.10008.1.20.1.1"
#: N-ACTION Action Type ID "Request Storage Commitment" (PS3.4 J.3.2).
REQUEST_COMMITMENT = 1
#: N-EVENT-REPORT Event Type IDs (PS3.4 J.3.3).
EVENT_ALL_COMMITTED = 1
EVENT_FAILURES_EXIST = 2

#: Failure Reason (0008,1197) values of the Failed SOP Sequence (PS3.4 J.3.3.1.1).
FAILURE_REASONS: dict[int, str] = {
    0x0110: "processing failure",
    0x0112: "no such object instance",
    0x0213: "resource limitation",
    0x0122: "referenced SOP Class not supported",
    0x0119: "class / instance conflict",
    0x0131: "duplicate transaction UID",
}
#: Failure reasons worth asking again later (the archive may commit on a later request).
TRANSIENT_FAILURE_REASONS = frozenset({0x0110, 0x0213})

Method = Literal["committed", "unsupported", "off"]


class CommitmentUnsupportedError(ArchiveError):
    """The archive does not offer Storage Commitment (no accepted context, or a failure status to the N-ACTION)."""

    code = "commitment_unsupported"


class CommitmentFailedError(ArchiveError):
    """The archive did not commit an instance (PS3.4 J.3.3.1.1), or commitment is required and the archive refuses it.

    ``transient`` (see :func:`~filmflow.archive.base.archive_error`) says whether
    asking again in a later run may help; the film then stays pending.
    """

    code = "commitment_failed"


class CommitmentTimeoutError(CommitmentFailedError):
    """No storage commitment report (N-EVENT-REPORT) for a request within ``archive.commitment_timeout_s``."""

    code = "commitment_timeout"


class CommitmentListenerError(ConfigError):
    """The listener for commitment reports cannot bind its port (in use by another program, or not permitted)."""

    code = "commitment_listener"


@dataclass(frozen=True)
class SopReference:
    """One (SOP Class UID, SOP Instance UID) pair; ``failure_reason`` is set for a failed one (PS3.4 J.3.3.1.1)."""

    sop_class_uid: str
    sop_instance_uid: str
    failure_reason: int | None = None

    @property
    def failure_text(self) -> str:
        """``0x0112 (no such object instance)``; empty when not failed."""
        if self.failure_reason is None:
            return ""
        return f"0x{self.failure_reason:04X} ({FAILURE_REASONS.get(self.failure_reason, 'unknown reason')})"


@dataclass(frozen=True)
class CommitmentReport:
    """The archive's answer to one commitment request (an N-EVENT-REPORT).

    Attributes
    ----------
    transaction_uid : str
        The Transaction UID (0008,1195) of the request.
    event_type : int
        1 (all committed) or 2 (failures exist).
    committed : tuple of SopReference
        Referenced SOP Sequence (0008,1199).
    failed : tuple of SopReference
        Failed SOP Sequence (0008,1198), each with its Failure Reason.
    calling_ae_title : str
        AE title of the peer that sent the report.
    """

    transaction_uid: str
    event_type: int
    committed: tuple[SopReference, ...]
    failed: tuple[SopReference, ...]
    calling_ae_title: str = ""

    def committed_uids(self) -> set[str]:
        """SOP Instance UIDs the archive committed."""
        return {r.sop_instance_uid for r in self.committed}

    def failure(self, sop_instance_uid: str) -> SopReference | None:
        """The failed entry for this instance, or None."""
        return next((r for r in self.failed if r.sop_instance_uid == sop_instance_uid), None)


@dataclass(frozen=True)
class CommitmentOutcome:
    """How an archived instance was confirmed, for the per-film record.

    Attributes
    ----------
    method : {"committed", "unsupported", "off"}
        ``committed``: the archive committed it (Storage Commitment);
        ``unsupported``: commitment was tried but is not available, verified
        by C-FIND (+ C-GET sample) only; ``off``: not requested (configuration).
    note : str
        Why, for the report (no patient data).
    """

    method: Method
    note: str = ""


def action_information(transaction_uid: str, references: Iterable[tuple[str, str]]) -> Dataset:
    """The N-ACTION *Action Information* of a commitment request (PS3.4 J.3.2.1.1, Table J.3-1).

    Parameters
    ----------
    transaction_uid : str
    references : iterable of (sop_class_uid, sop_instance_uid)

    Returns
    -------
    pydicom.Dataset
        Transaction UID (0008,1195) and Referenced SOP Sequence (0008,1199).

    Raises
    ------
    ValueError
        When ``references`` is empty.
    """
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    items = []
    for sop_class_uid, sop_instance_uid in references:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class_uid
        item.ReferencedSOPInstanceUID = sop_instance_uid
        items.append(item)
    if not items:
        raise ValueError("a storage commitment request needs at least one instance")
    ds.ReferencedSOPSequence = items
    return ds


def parse_event_report(event_type: int | None, info: Dataset, calling_ae_title: str = "") -> CommitmentReport:
    """Read a Storage Commitment N-EVENT-REPORT's *Event Information* (PS3.4 J.3.3.1, Table J.3-2).

    Parameters
    ----------
    event_type : int
        Event Type ID (0000,1002): 1 or 2.
    info : pydicom.Dataset
        Event Information.
    calling_ae_title : str, optional

    Returns
    -------
    CommitmentReport

    Raises
    ------
    ValueError
        Unknown event type, missing Transaction UID, or a Failed SOP Sequence
        item without Failure Reason.
    """
    if event_type not in (EVENT_ALL_COMMITTED, EVENT_FAILURES_EXIST):
        raise ValueError(f"unknown storage commitment event type {event_type!r}")
    transaction_uid = str(info.get("TransactionUID", "") or "")
    if not transaction_uid:
        raise ValueError("storage commitment report without Transaction UID")
    committed = tuple(
        SopReference(str(item.ReferencedSOPClassUID), str(item.ReferencedSOPInstanceUID))
        for item in info.get("ReferencedSOPSequence", [])
    )
    failed = []
    for item in info.get("FailedSOPSequence", []):
        if "FailureReason" not in item:
            raise ValueError("storage commitment report: Failed SOP Sequence item without Failure Reason")
        failed.append(SopReference(str(item.ReferencedSOPClassUID), str(item.ReferencedSOPInstanceUID), int(item.FailureReason)))
    return CommitmentReport(transaction_uid, int(event_type), committed, tuple(failed), calling_ae_title)


# --- reports, by Transaction UID -------------------------------------------------------------
class _Pending:
    """Transactions waiting for their report; filled by :func:`handle_event_report` from any association."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, tuple[threading.Event, list[CommitmentReport]]] = {}

    def expect(self, transaction_uid: str) -> None:
        with self._lock:
            self._slots[transaction_uid] = (threading.Event(), [])

    def deliver(self, report: CommitmentReport) -> bool:
        with self._lock:
            slot = self._slots.get(report.transaction_uid)
        if slot is None:
            return False
        slot[1].append(report)
        slot[0].set()
        return True

    def wait(self, transaction_uid: str, timeout_s: float) -> CommitmentReport | None:
        with self._lock:
            slot = self._slots[transaction_uid]
        slot[0].wait(timeout_s)
        with self._lock:
            self._slots.pop(transaction_uid, None)
        return slot[1][0] if slot[1] else None

    def discard(self, transaction_uid: str) -> None:
        with self._lock:
            self._slots.pop(transaction_uid, None)


_PENDING = _Pending()


def handle_event_report(event: evt.Event) -> tuple[int, None]:
    """``evt.EVT_N_EVENT_REPORT`` handler: hand a commitment report to the request waiting for it.

    Returns
    -------
    (status, None)
        0x0000 when the report was read (also for a transaction nobody waits
        for any more, e.g. one that timed out: the archive need not resend it);
        0x0113 (no such event type) or 0x0110 (processing failure) when it
        cannot be read (PS3.7 10.1.1.1.8).
    """
    calling = str(getattr(event.assoc.requestor, "ae_title", "") or "").strip()
    try:
        report = parse_event_report(event.event_type, event.event_information, calling)
    except ValueError as exc:
        log.warning("storage commitment report from %s not usable: %s", calling or "?", exc)
        return (0x0113 if event.event_type not in (EVENT_ALL_COMMITTED, EVENT_FAILURES_EXIST) else 0x0110), None
    except Exception as exc:  # noqa: BLE001 - pydicom decodes lazily; a malformed dataset must not kill the SCP
        log.warning("storage commitment report from %s cannot be decoded: %s", calling or "?", type(exc).__name__)
        return 0x0110, None
    if not _PENDING.deliver(report):
        log.info("storage commitment report for transaction %s that no request waits for; ignored", report.transaction_uid)
    return 0x0000, None


# --- the listener ----------------------------------------------------------------------------
class CommitmentListener:
    """A Storage Commitment SCP (report receiver) on ``host:port`` with AE title ``ae_title``.

    Accepts the Push Model SOP Class with the SCP role proposed by the
    archive (PS3.4 J.3.3: the archive opening the association is the SCP of the
    class; pynetdicom ``add_supported_context(..., scu_role=False,
    scp_role=True)``), Implicit and Explicit VR Little Endian. Use
    :func:`acquire_listener` / :func:`release_listener` rather than this class
    directly, so archives in one process share a port.

    Parameters
    ----------
    ae_title : str
        Our AE title, as registered on the archive.
    host : str
        Address to bind ("0.0.0.0": every interface; "127.0.0.1": loopback).
    port : int
        TCP port, as registered on the archive.
    """

    def __init__(self, ae_title: str, host: str, port: int) -> None:
        self.ae_title, self.host, self.port = ae_title, host, int(port)
        self._server = None
        self.users = 0

    def start(self) -> "CommitmentListener":
        """Bind and serve in a background thread; idempotent.

        Raises
        ------
        CommitmentListenerError
            The port cannot be bound (in use, not permitted).
        """
        if self._server is not None:
            return self
        ae = AE(ae_title=self.ae_title)
        ae.add_supported_context(STORAGE_COMMITMENT_PUSH_MODEL, scu_role=False, scp_role=True)
        try:
            self._server = ae.start_server(
                (self.host, self.port), block=False, evt_handlers=[(evt.EVT_N_EVENT_REPORT, handle_event_report)]
            )
        except OSError as exc:
            raise CommitmentListenerError(
                f"cannot listen for storage commitment reports on {self.host}:{self.port} ({exc.strerror or exc}):"
                " another program (another filmflow run?) holds the port; free it, or set archive.commitment_port"
                " to a free port and register that port for our AE title on the archive"
            ) from None
        log.debug("storage commitment listener %s on %s:%d", self.ae_title, self.host, self.port)
        return self

    def stop(self) -> None:
        """Stop serving; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()

    @property
    def running(self) -> bool:
        return self._server is not None


_LISTENERS: dict[tuple[str, int], CommitmentListener] = {}
_LISTENERS_LOCK = threading.Lock()


def acquire_listener(ae_title: str, host: str, port: int) -> CommitmentListener:
    """The process's running listener on ``(host, port)``, started on first use (reference-counted).

    Raises
    ------
    CommitmentListenerError
        The port cannot be bound.
    """
    with _LISTENERS_LOCK:
        listener = _LISTENERS.get((host, int(port)))
        if listener is None:
            listener = CommitmentListener(ae_title, host, port).start()
            _LISTENERS[(host, int(port))] = listener
        listener.users += 1
        return listener


def release_listener(listener: CommitmentListener) -> None:
    """Drop one reference; the last one stops the listener."""
    with _LISTENERS_LOCK:
        listener.users -= 1
        if listener.users <= 0:
            _LISTENERS.pop((listener.host, listener.port), None)
            listener.stop()


# --- the request -----------------------------------------------------------------------------
def accepts_commitment(assoc: Association) -> bool:
    """Whether the association has an accepted context for the Push Model SOP Class."""
    return any(cx.abstract_syntax == STORAGE_COMMITMENT_PUSH_MODEL for cx in assoc.accepted_contexts)


def send_commitment_request(assoc: Association, references: Iterable[tuple[str, str]], *, url: str = "",
                            transaction_uid: str | None = None) -> str:
    """Send the N-ACTION of a commitment request; the Transaction UID to wait for.

    The transaction is registered before the N-ACTION is sent (the report may
    arrive before the N-ACTION response); call :func:`wait_for_report` next,
    or :func:`discard_transaction` to give up.

    Parameters
    ----------
    assoc : pynetdicom.association.Association
        Established, with a context for :data:`STORAGE_COMMITMENT_PUSH_MODEL`.
    references : iterable of (sop_class_uid, sop_instance_uid)
    url : str, optional
        The archive's URL, for messages.
    transaction_uid : str, optional
        Default: a new UID (``pydicom.uid.generate_uid``).

    Returns
    -------
    str
        The Transaction UID.

    Raises
    ------
    CommitmentUnsupportedError
        No accepted context for the Push Model, or a Failure status to the N-ACTION.
    ArchiveUnreachableError
        (transient) no N-ACTION response (timeout or abort).
    ValueError
        ``references`` is empty.
    """
    if not accepts_commitment(assoc):
        raise archive_error(
            CommitmentUnsupportedError,
            f"{url} accepted no presentation context for Storage Commitment Push Model ({STORAGE_COMMITMENT_PUSH_MODEL})",
            transient=False,
        )
    transaction_uid = transaction_uid or generate_uid()
    info = action_information(transaction_uid, references)
    _PENDING.expect(transaction_uid)
    try:
        status, _reply = assoc.send_n_action(
            info, REQUEST_COMMITMENT, STORAGE_COMMITMENT_PUSH_MODEL, STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE)
    except BaseException:
        _PENDING.discard(transaction_uid)
        raise
    if "Status" not in status:
        _PENDING.discard(transaction_uid)
        raise archive_error(
            ArchiveUnreachableError,
            f"no answer to the storage commitment request (N-ACTION) from {url} (timeout or association aborted);"
            " the archive may not know our AE title as a modality, or not allow it storage commitment",
            transient=True,
        )
    code = int(status.Status)
    if code_to_category(code) not in ("Success", "Warning"):
        _PENDING.discard(transaction_uid)
        raise archive_error(
            CommitmentUnsupportedError,
            f"{url} answered the storage commitment request with status 0x{code:04X}",
            transient=False,
        )
    return transaction_uid


def wait_for_report(transaction_uid: str, timeout_s: float, *, url: str = "", listen: str = "") -> CommitmentReport:
    """Wait up to ``timeout_s`` seconds for the report of ``transaction_uid``.

    Parameters
    ----------
    transaction_uid : str
    timeout_s : float
        Seconds.
    url, listen : str, optional
        The archive's URL and our listener's ``AET@host:port``, for messages.

    Returns
    -------
    CommitmentReport

    Raises
    ------
    CommitmentTimeoutError
        (transient) no report in time.
    """
    report = _PENDING.wait(transaction_uid, timeout_s)
    if report is None:
        raise archive_error(
            CommitmentTimeoutError,
            f"no storage commitment report (N-EVENT-REPORT) from {url} within {timeout_s:g} s for transaction"
            f" {transaction_uid}; the archive must have {listen or 'our AE title, host and listener port'}"
            " registered as a modality",
            transient=True,
        )
    return report


def discard_transaction(transaction_uid: str) -> None:
    """Stop waiting for a transaction (a late report is then acknowledged and ignored)."""
    _PENDING.discard(transaction_uid)


def request_commitment(assoc: Association, references: Iterable[tuple[str, str]], *, timeout_s: float,
                       url: str = "", listen: str = "", transaction_uid: str | None = None) -> CommitmentReport:
    """Request Storage Commitment for a batch of instances and wait for the archive's report.

    A :class:`CommitmentListener` for the archive's report must be running
    (:func:`acquire_listener`) unless the archive reports on ``assoc`` itself.

    Parameters
    ----------
    assoc : pynetdicom.association.Association
        Established, with a context for the Push Model SOP Class.
    references : iterable of (sop_class_uid, sop_instance_uid)
    timeout_s : float
        Seconds to wait for the N-EVENT-REPORT after the N-ACTION was answered.
    url, listen : str, optional
        For messages.
    transaction_uid : str, optional
        Default: a new UID.

    Returns
    -------
    CommitmentReport
        Possibly with failures: the caller decides what they mean.

    Raises
    ------
    CommitmentUnsupportedError
    ArchiveUnreachableError
        (transient) no N-ACTION response.
    CommitmentTimeoutError
        (transient) no report within ``timeout_s``.
    """
    uid = send_commitment_request(assoc, references, url=url, transaction_uid=transaction_uid)
    return wait_for_report(uid, timeout_s, url=url, listen=listen)
