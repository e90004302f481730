"""Perceptual hashes of straightened films, for the near-duplicate check.

The same film scanned twice never gives the same bytes (noise, a slightly
different position on the bed), so the SHA-256 duplicate check misses it. A
perceptual hash of a small, contrast-stretched copy of the straightened film
does not: rescans of one film land within a few bits of each other, while
different films (even chest radiographs, which all look alike) differ by many.

The hash of each processed film is kept in its ledger record (``record['phash']``),
so a film is compared with the films of this batch and of every earlier one.

References
----------
.. [1] imagehash, https://github.com/JohannesBuchner/imagehash (``phash``: DCT
   of a 32 x 32 grey copy, the 8 x 8 lowest frequencies compared with their median).
"""

from __future__ import annotations

from typing import Any, Mapping

import cv2
import imagehash
import numpy as np
from PIL import Image

#: Bits per side of the hash: 8 -> 64-bit hash, 16 hex characters.
HASH_SIZE = 8
#: Longest side of the copy handed to imagehash, pixels.
WORK_SIDE_PX = 256


def film_phash(film: np.ndarray) -> str:
    """Perceptual hash (DCT ``phash``) of a straightened film, as 16 hex characters.

    Parameters
    ----------
    film : ndarray of shape (M, N), uint8 or uint16
        The straightened, cropped film.

    Returns
    -------
    str
        ``imagehash.phash`` of a copy downscaled (area averaging) to at most
        ``WORK_SIDE_PX`` pixels on its longest side and stretched from its own
        1st..99th percentile to 0..255, so that bit depth, scan resolution and
        exposure do not change the hash.

    Raises
    ------
    TypeError
        When ``film`` is not a 2-D uint8 or uint16 array.
    """
    img = np.asarray(film)
    if img.ndim != 2 or img.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"expected a 2-D uint8 or uint16 film, got {img.dtype} of shape {img.shape}")
    rows, cols = img.shape
    s = min(1.0, WORK_SIDE_PX / max(rows, cols))
    small = cv2.resize(img.astype(np.float32), (max(1, round(cols * s)), max(1, round(rows * s))), interpolation=cv2.INTER_AREA)
    p1, p99 = np.percentile(small, [1, 99])
    grey = np.clip((small - p1) / max(float(p99 - p1), 1e-6) * 255.0, 0, 255).astype(np.uint8)
    return str(imagehash.phash(Image.fromarray(grey), hash_size=HASH_SIZE))


def hamming(a: str, b: str) -> int:
    """Number of differing bits between two hex hashes of the same length.

    Raises
    ------
    ValueError
        When the hashes differ in length or are not hexadecimal.
    """
    if len(a) != len(b):
        raise ValueError(f"hashes of different lengths ({len(a)} and {len(b)} hex characters)")
    return int(imagehash.hex_to_hash(a) - imagehash.hex_to_hash(b))


def known_phashes(ledger: Any, exclude_path: str) -> dict[str, str]:
    """Perceptual hashes of every film in the ledger, except ``exclude_path``.

    Parameters
    ----------
    ledger : filmflow.ledger.Ledger
        Read with ``ledger.rows()``; all batches and states are included.
    exclude_path : str
        The film being checked (its own earlier record must not match itself).

    Returns
    -------
    dict
        ``source_path -> record['phash']`` for the rows whose record holds one.
    """
    return {
        row.source_path: str(row.record["phash"])
        for row in ledger.rows()
        if row.source_path != exclude_path and row.record.get("phash")
    }


def near_matches(phash: str, known: Mapping[str, str], max_distance: int) -> list[tuple[str, int]]:
    """Known films within ``max_distance`` bits of ``phash``, nearest first.

    Returns
    -------
    list of (key, distance)
        Keys of ``known`` (source paths) with their Hamming distance; hashes of
        another length (another hash size) are skipped.
    """
    out = [(key, hamming(phash, other)) for key, other in known.items() if len(other) == len(phash)]
    return sorted(((k, d) for k, d in out if d <= max_distance), key=lambda kd: (kd[1], kd[0]))
