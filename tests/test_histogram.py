"""pipeline.histogram: exact counts and np.percentile's values from them, for both of its
counting routes (np.bincount below 65 536 values, chunked cv2.calcHist above)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.histogram import exact_histogram, percentile_from_cumulative, percentile_from_histogram


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(50, 60), (400, 300)])  # bincount / calcHist
def test_values_outside_the_bins_are_not_counted(dtype, shape):
    rng = np.random.default_rng(3)
    top = np.iinfo(dtype).max
    img = rng.integers(0, top + 1, shape).astype(dtype)
    lo, bins = top // 4, top // 3
    h = exact_histogram(img, lo, bins)
    inside = img[(img >= lo) & (img < lo + bins)].astype(np.int64) - lo
    assert h.shape == (bins,) and h.dtype == np.int64
    np.testing.assert_array_equal(h, np.bincount(inside, minlength=bins))
    assert 0 < h.sum() < img.size  # values on both sides were left out


def test_percentiles_match_numpy_with_a_tail_bin():
    """The noise estimate counts the values below a limit and puts the rest in one last bin:
    percentiles whose ranks fall below that bin are the exact ones."""
    rng = np.random.default_rng(4)
    v = np.rint(np.abs(rng.normal(0, 3000, 100_001))).astype(np.uint16)
    limit = 4000
    cum = np.cumsum(exact_histogram(v, 0, limit))
    assert cum[-1] > v.size // 2
    with_tail = np.append(cum, v.size)
    for q in (1, 25, 50):
        assert percentile_from_cumulative(with_tail, q) == pytest.approx(float(np.percentile(v, q)), abs=1e-9)
    assert percentile_from_histogram(exact_histogram(v), 50) == float(np.median(v))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_statistics_match_numpy(dtype):
    rng = np.random.default_rng(11)
    top = np.iinfo(dtype).max
    for shape in [(7, 9), (64, 65), (301, 200)]:
        img = rng.integers(0, top + 1, shape).astype(dtype)
        img[0, 0], img[-1, -1] = 0, top  # the full range, both ends
        h = exact_histogram(img)
        assert h.sum() == img.size
        for q in (0, 5, 25, 50, 75, 95, 100):
            assert percentile_from_histogram(h, q) == pytest.approx(float(np.percentile(img, q)), rel=1e-9, abs=1e-9)
        # over the values' own span only (bin i counts lo + i), as polarity.assess uses it: small (bincount)
        # and large (calcHist) arrays alike
        for big in (False, True):
            part = np.tile(img, (40, 40)) if big and img.size < 1 << 16 else img
            lo, hi = int(part.min()) + 1, int(part.max()) - 1
            part = np.clip(part, lo, hi)
            hs = exact_histogram(part, lo, hi - lo + 1)
            assert hs.size == hi - lo + 1 and hs.sum() == part.size
            np.testing.assert_array_equal(hs, np.bincount(part.ravel().astype(np.int64) - lo, minlength=hi - lo + 1))
            for q in (0, 5, 50, 95, 100):
                assert lo + percentile_from_histogram(hs, q) == pytest.approx(float(np.percentile(part, q)), rel=1e-9, abs=1e-9)


def test_percentiles_are_numpys_to_the_last_bit():
    rng = np.random.default_rng(5)
    for _ in range(300):
        v = rng.integers(0, rng.integers(2, 65536), rng.integers(1, 3000)).astype(np.uint16)
        h = exact_histogram(v)
        for q in rng.uniform(0, 100, 5):
            assert percentile_from_histogram(h, q) == np.percentile(v, q)


def test_a_row_longer_than_calchists_exact_count():
    """cv2.calcHist counts in float32 (exact to 2**24): one long row is counted in pieces."""
    h = exact_histogram(np.zeros((1, (1 << 24) + 3), np.uint8))
    assert h[0] == (1 << 24) + 3 and h.sum() == h[0]
