"""Archive throughput: filmflow's C-STORE and STOW-RS vs dcmtk ``storescu``, same files, same run.

Starts a throw-away Orthanc on loopback (tests/orthanc_server.py), writes N
synthetic films (Multi-frame Grayscale Word SC, 16-bit, seeded noise), pushes
them with each method into an emptied Orthanc and prints instances/second.

    .venv/bin/python bench/archive_throughput.py --films 200 --rows 1024 --cols 1024

filmflow's plain numbers include what a receipt needs (reading the file and
hashing the decoded pixels). The "hash known" rows pass the pixel hash computed
when the film was built, as the migrate flow does (``Pusher`` gives the record's
``pixel_sha256`` to ``Archive.store``), so only the header is parsed before the
file is streamed. ``storescu`` only streams files, and (like pynetdicom's
storescu app) does not act on the returned status.

The two "commit" rows add DICOM Storage Commitment (PS3.4 Annex J) to the "hash
known" C-STORE: "commit, batch" sends one N-ACTION for every film after the
stores (``DimseArchive.commit`` of all receipts) and waits for Orthanc's
N-EVENT-REPORT on filmflow's listener; "verify+commit each" is the per-film path
with ``verify_fraction`` 0 (C-FIND, then N-ACTION and wait for the report, per
film: ``DimseArchive.verify(retrieve=False)`` then ``DimseArchive.commit([receipt])``
with ``storage_commitment = "require"``, what ``Pusher.push`` does), against
"verify each (C-FIND)", the same without commitment; "verify each, commit/round"
is ``Pusher.push_many``'s path: store + C-FIND per film, then one
``DimseArchive.commit`` per round of ``flows.push.ROUND_FILMS`` films.
``--no-commitment`` leaves them out.

Orthanc runs with ``MaximumPduLength`` 131072 (tests/orthanc_server.py); use
``--orthanc-pdu 16384`` for Orthanc's default.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydicom import dcmread

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fixtures_orthanc import make_film_file  # noqa: E402
from orthanc_server import CALLING_AET, OrthancServer  # noqa: E402

from filmflow.archive.dicomweb import ENV_PASSWORD, ENV_TOKEN, ENV_USER, DicomWebArchive  # noqa: E402
from filmflow.archive.base import pixel_sha256  # noqa: E402
from filmflow.archive.commitment import CommitmentOutcome  # noqa: E402
from filmflow.archive.dimse import MAX_PDU, DimseArchive  # noqa: E402
from filmflow.config import ArchiveConfig  # noqa: E402

TS = {
    "explicit": "1.2.840.10008.1.2.1",
    "jpegls": "1.2.840.10008.1.2.4.80",
    "j2k": "1.2.840.10008.1.2.4.90",
    "rle": "1.2.840.10008.1.2.5",
}


def run_filmflow(archive_cls, url: str, files: list[Path], hashes: dict[Path, str] | None = None) -> float:
    t0 = time.perf_counter()
    with archive_cls.from_url(url, ArchiveConfig(timeout_s=60)) as archive:
        archive.check()
        for f in files:
            archive.store(f, pixel_sha256=(hashes or {}).get(f, ""))
    return time.perf_counter() - t0


def commitment_config(server: OrthancServer) -> ArchiveConfig:
    """Listen where the throw-away Orthanc reports (its DicomModalities entry for our AE)."""
    return ArchiveConfig(timeout_s=60, storage_commitment="require", commitment_port=server.calling_aet_port,
                         commitment_host="127.0.0.1", commitment_timeout_s=60)


def run_commit_batch(server: OrthancServer, files: list[Path], hashes: dict[Path, str]) -> float:
    """C-STORE every film (hash known), then one commitment request for all of them."""
    cfg = commitment_config(server)
    t0 = time.perf_counter()
    with DimseArchive.from_url(server.dicom_url, cfg) as archive:
        archive.check()  # starts the listener, as the flow does
        receipts = [archive.store(f, pixel_sha256=hashes[f]) for f in files]
        t_commit = time.perf_counter()
        results = archive.commit(receipts)
        t_commit = time.perf_counter() - t_commit
    print(f"  one commitment request for {len(files)} instances: N-ACTION to N-EVENT-REPORT {t_commit:.3f} s")
    committed = [r for r in results.values() if isinstance(r, CommitmentOutcome) and r.method == "committed"]
    if len(committed) != len(files):
        raise SystemExit(f"commitment: {len(committed)} committed of {len(files)}")
    return time.perf_counter() - t0


def run_verify_each(server: OrthancServer, files: list[Path], hashes: dict[Path, str], commit: bool) -> float:
    """The flow's path with verify_fraction 0: C-STORE, then C-FIND (+ commitment when ``commit``) per film."""
    cfg = commitment_config(server) if commit else ArchiveConfig(timeout_s=60, storage_commitment="off")
    t0 = time.perf_counter()
    with DimseArchive.from_url(server.dicom_url, cfg) as archive:
        archive.check()
        for f in files:
            receipt = archive.store(f, pixel_sha256=hashes[f])
            archive.verify(receipt, retrieve=False)
            if commit:
                outcome = archive.commit([receipt])[receipt.sop_instance_uid]
                if not isinstance(outcome, CommitmentOutcome) or outcome.method != "committed":
                    raise SystemExit(f"commitment: {outcome}")
    return time.perf_counter() - t0


def run_verify_rounds(server: OrthancServer, files: list[Path], hashes: dict[Path, str]) -> float:
    """``Pusher.push_many``'s path with verify_fraction 0: C-STORE + C-FIND per film, one commitment request per round."""
    from flows.push import ROUND_FILMS

    cfg = commitment_config(server)
    t0 = time.perf_counter()
    with DimseArchive.from_url(server.dicom_url, cfg) as archive:
        archive.check()
        for i in range(0, len(files), ROUND_FILMS):
            receipts = []
            for f in files[i:i + ROUND_FILMS]:
                receipts.append(archive.store(f, pixel_sha256=hashes[f]))
                archive.verify(receipts[-1], retrieve=False)
            results = archive.commit(receipts)
            if not all(isinstance(o, CommitmentOutcome) and o.method == "committed" for o in results.values()):
                raise SystemExit(f"commitment: {results}")
    return time.perf_counter() - t0


def run_storescu(server: OrthancServer, files: list[Path]) -> float:
    exe = shutil.which("storescu")
    if exe is None:
        raise SystemExit("storescu (dcmtk) not found")
    t0 = time.perf_counter()
    subprocess.run(
        [exe, "-aet", CALLING_AET, "-aec", server.aet, "127.0.0.1", str(server.dicom_port), *map(str, files)],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--films", type=int, default=200)
    p.add_argument("--rows", type=int, default=1024)
    p.add_argument("--cols", type=int, default=1024)
    p.add_argument("--ts", choices=sorted(TS), default="explicit")
    p.add_argument("--no-commitment", action="store_true", help="leave out the storage commitment rows")
    p.add_argument("--orthanc-pdu", type=int, default=131072, help="Orthanc's MaximumPduLength (4096..131072)")
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="filmflow-bench-"))
    try:
        t0 = time.perf_counter()
        files = [
            make_film_file(tmp, seed=i, shape=(args.rows, args.cols), transfer_syntax=TS[args.ts]) for i in range(args.films)
        ]
        mb = sum(f.stat().st_size for f in files) / 1e6
        print(f"{args.films} films {args.rows}x{args.cols} uint16, {args.ts}, {mb:.0f} MB, made in {time.perf_counter() - t0:.1f} s")
        hashes = {f: pixel_sha256(dcmread(f)) for f in files}  # as process_film records them
        print(f"Orthanc MaximumPduLength {args.orthanc_pdu}, filmflow announces {MAX_PDU}")
        with OrthancServer(extra_config={"MaximumPduLength": args.orthanc_pdu}) as server:
            os.environ.pop(ENV_TOKEN, None)
            os.environ[ENV_USER], os.environ[ENV_PASSWORD] = server.auth
            results: dict[str, float] = {}
            methods = [
                ("storescu (dcmtk)", lambda: run_storescu(server, files)),
                ("filmflow C-STORE", lambda: run_filmflow(DimseArchive, server.dicom_url, files)),
                ("C-STORE hash known", lambda: run_filmflow(DimseArchive, server.dicom_url, files, hashes)),
                ("filmflow STOW-RS", lambda: run_filmflow(DicomWebArchive, server.dicomweb_url, files)),
                ("STOW-RS hash known", lambda: run_filmflow(DicomWebArchive, server.dicomweb_url, files, hashes)),
            ]
            if not args.no_commitment:
                methods[3:3] = [
                    ("C-STORE, commit batch", lambda: run_commit_batch(server, files, hashes)),
                    ("verify each (C-FIND)", lambda: run_verify_each(server, files, hashes, commit=False)),
                    ("verify+commit each", lambda: run_verify_each(server, files, hashes, commit=True)),
                    ("verify each, commit/round", lambda: run_verify_rounds(server, files, hashes)),
                ]
            for name, run in methods:
                server.clear()
                seconds = run()
                stored = len(server.rest("GET", "/instances"))
                if stored != len(files):
                    raise SystemExit(f"{name}: Orthanc holds {stored} of {len(files)} instances")
                results[name] = seconds
        base = results["storescu (dcmtk)"]
        print(f"{'method':<26} {'seconds':>8} {'inst/s':>8} {'MB/s':>7} {'vs storescu':>12}")
        for name, seconds in results.items():
            print(f"{name:<26} {seconds:8.2f} {len(files) / seconds:8.1f} {mb / seconds:7.1f} {base / seconds:11.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
