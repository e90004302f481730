"""Exact order statistics of integer images from their histograms.

A median or percentile of a uint8/uint16 array needs no sort: one counting
pass (``cv2.calcHist``) and a cumulative sum give the same values as
``np.percentile`` (default, linear method), several times faster than numpy's
sort on the hundreds of thousands of values a film holds. Used by the polarity
rule (percentiles of a whole scan) and the noise estimate (median of a filter
response).
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def exact_histogram(a: np.ndarray, lo: int = 0, bins: int | None = None) -> np.ndarray:
    """One bin per integer value: the exact counts of a uint8/uint16 array.

    Parameters
    ----------
    a : ndarray of any shape, uint8 or uint16
        Values outside ``[lo, lo + bins)`` are not counted.
    lo : int
        The value bin 0 counts; ``lo + bins`` at most the dtype's maximum + 1.
    bins : int, optional
        Number of bins (default: the whole dtype, 256 or 65536).

    Returns
    -------
    ndarray of shape (bins,), int64
        Bin ``i`` counts the value ``lo + i``.

    Notes
    -----
    ``cv2.calcHist`` (OpenCV documentation, "Histograms") counts in float32,
    exact below 2**24 per call, so large arrays are counted in row chunks;
    arrays under 65 536 values use ``np.bincount``, whose per-call setup is
    smaller.
    """
    if bins is None:
        bins = 256 if a.dtype == np.uint8 else 65536
    if a.size < 1 << 16:
        # (values below lo wrap around to at least 2**bits - lo >= bins: cut off with those above)
        v = a.ravel() - a.dtype.type(lo) if lo else a.ravel()
        return np.bincount(v, minlength=bins)[:bins].astype(np.int64, copy=False)
    if a.ndim != 2:
        a = a.reshape(-1, 1) if a.ndim == 1 else a.reshape(-1, a.shape[-1])
    h = np.zeros(bins, dtype=np.int64)
    # blocks of at most 2**23 values (rows, and columns of a longer row) bound each call's count
    cols = min(a.shape[1], 1 << 23)
    rows = max(1, (1 << 23) // cols)
    for r in range(0, a.shape[0], rows):
        for c in range(0, a.shape[1], cols):
            h += cv2.calcHist([a[r : r + rows, c : c + cols]], [0], None, [bins], [lo, lo + bins]).ravel().astype(np.int64)
    return h


def percentile_from_histogram(h: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear method) of the values counted in ``h``.

    Parameters
    ----------
    h : ndarray of shape (B,), integer counts
        From :func:`exact_histogram`; at least one count.
    q : float
        Percentile, 0..100.

    Returns
    -------
    float
        In bin units (add the histogram's ``lo`` for the value).
    """
    return percentile_from_cumulative(np.cumsum(h), q)


def percentile_from_cumulative(cum: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear method) from a histogram's cumulative counts.

    Parameters
    ----------
    cum : ndarray of shape (B,), integer, non-decreasing
        ``np.cumsum`` of a histogram; ``cum[-1]`` (the number of values) at least 1.
    q : float
        Percentile, 0..100.

    Returns
    -------
    float
        In bin units: the two order statistics around rank ``q / 100 * (n - 1)``,
        linearly interpolated with ``np.percentile``'s own arithmetic.
    """
    idx = q / 100.0 * (cum[-1] - 1)
    k = int(math.floor(idx))
    lo = int(np.searchsorted(cum, k, side="right"))
    hi = int(np.searchsorted(cum, min(k + 1, cum[-1] - 1), side="right"))
    t = idx - k
    # numpy's own interpolation, from the nearer end (the same float rounding as np.percentile)
    return hi - (hi - lo) * (1.0 - t) if t >= 0.5 else lo + (hi - lo) * t
