"""pipeline.denoise: shape/dtype/range kept, PSNR improves on a noisy film, 'off' is identity.

Input: a real radiograph (Hannover Medical School COVID-19 repository 00870a9c.jpg,
CC BY 3.0, via covid-chestxray-dataset; /work/shared/data/SOURCES.md), cropped and
scaled to 8/12 bits, with seeded Gaussian noise.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from pipeline.denoise import BILATERAL_SIGMA_SPACE, denoise, estimate_noise_sigma

from conftest import SHARED_DATA


@pytest.fixture(scope="module")
def clean12() -> np.ndarray:
    img = cv2.imread(str(SHARED_DATA / "radiographs" / "00870a9c.jpg"), cv2.IMREAD_GRAYSCALE)[600:1112, 600:1112]
    smooth = cv2.GaussianBlur(img.astype(np.float64), (0, 0), 1.0)  # remove JPEG noise: a "clean" film
    return np.rint(smooth * 4095 / 255).astype(np.uint16)


def speck_mask(img: np.ndarray, sigma: float) -> np.ndarray:
    """The speck rule of pipeline.denoise, by another route (whole-image OpenCV morphology in
    int64): |image - 3x3 median| > 6 sigma, and beyond the max / min of the 8 neighbours by more
    than max(3 sigma, their range)."""
    ring = np.ones((3, 3), np.uint8)
    ring[1, 1] = 0
    hi = cv2.dilate(img, ring, borderType=cv2.BORDER_REFLECT_101).astype(np.int64)
    lo = cv2.erode(img, ring, borderType=cv2.BORDER_REFLECT_101).astype(np.int64)
    v = img.astype(np.int64)
    gap = np.maximum(3.0 * sigma, hi - lo)
    return (np.abs(v - cv2.medianBlur(img, 3)) > 6.0 * sigma) & ((v - hi > gap) | (lo - v > gap))


def _bilateral_ref(work: np.ndarray, sigma: float) -> np.ndarray:
    """The documented bilateral (float32, before rounding): two cv2.bilateralFilter passes over
    the 4-neighbour cross (d = 3), sigmaColor 2 sigma."""
    once = cv2.bilateralFilter(work, d=3, sigmaColor=2.0 * sigma, sigmaSpace=BILATERAL_SIGMA_SPACE)
    return cv2.bilateralFilter(once, d=3, sigmaColor=2.0 * sigma, sigmaSpace=BILATERAL_SIGMA_SPACE)


def noisy_pair(clean12, dtype, sigma_frac=0.01, seed=0):
    top = 4095 if dtype == np.uint16 else 255
    clean = clean12 if dtype == np.uint16 else np.rint(clean12 / 4095 * 255).astype(np.uint8)
    rng = np.random.default_rng(seed)
    noisy = np.clip(np.rint(clean + rng.normal(0, sigma_frac * top, clean.shape)), 0, top).astype(dtype)
    return clean, noisy, top


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("method", ["bilateral", "nlmeans"])
def test_psnr_improves_and_dtype_kept(clean12, dtype, method):
    clean, noisy, top = noisy_pair(clean12, dtype)
    out = denoise(noisy, method=method, strength=1.0)
    assert out.dtype == dtype and out.shape == noisy.shape
    assert out.min() >= noisy.min() and out.max() <= noisy.max()
    before = peak_signal_noise_ratio(clean, noisy, data_range=top)
    after = peak_signal_noise_ratio(clean, out, data_range=top)
    assert after > before + 2.0, (before, after)


def test_sixteen_bit_not_quantized_to_eight(clean12):
    _, noisy, _ = noisy_pair(clean12, np.uint16)
    out = denoise(noisy, method="bilateral", strength=1.0)
    assert np.any(out % 16 != 0)  # 12-bit detail survives (an 8-bit round trip would leave multiples of 16)
    assert len(np.unique(out)) > 256


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_off_and_zero_strength_are_identity(clean12, dtype):
    _, noisy, _ = noisy_pair(clean12, dtype)
    for out in (denoise(noisy, method="off", strength=1.0), denoise(noisy, method="bilateral", strength=0.0)):
        assert out.dtype == dtype
        np.testing.assert_array_equal(out, noisy)
        assert out is not noisy


def test_noise_sigma_estimate(clean12):
    _, noisy, top = noisy_pair(clean12, np.uint16, sigma_frac=0.01)
    assert estimate_noise_sigma(noisy) == pytest.approx(0.01 * top, rel=0.2)


def test_dust_speck_removed(clean12):
    _, noisy, _ = noisy_pair(clean12, np.uint16, sigma_frac=0.005)
    specked = noisy.copy()
    specked[200, 200] = 0
    out = denoise(specked, method="bilateral", strength=1.0)
    assert abs(int(out[200, 200]) - int(np.median(noisy[198:203, 198:203]))) < 100


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_speck_repair_spares_lines_and_texture(clean12, dtype):
    """An isolated dot on the film is repaired; a one-pixel line and the film's own fine texture
    at low noise are not touched by the speck repair (only by the mild bilateral)."""
    clean, noisy, top = noisy_pair(clean12, dtype, sigma_frac=0.003, seed=5)
    img = noisy.copy()
    img[100, 150:250] = top  # a thin bright line (a wire, a trabecula edge)
    img[300, 300] = 0  # a dark dust speck on flat-ish anatomy
    sigma = estimate_noise_sigma(img)
    med = cv2.medianBlur(img, 3)
    old_rule = np.abs(img.astype(np.int64) - med) > 6.0 * sigma
    new_rule = speck_mask(img, sigma)
    assert old_rule[100, 150:250].all()  # the median test alone took the line for specks
    assert not new_rule[100, 150:250].any()
    assert new_rule[300, 300]
    assert new_rule.sum() <= 3  # the speck (and at most a noise spike)
    out = denoise(img, method="bilateral", strength=1.0)
    assert int(out[300, 300]) > int(np.median(img[297:304, 297:304])) - 10 * sigma
    assert (out[100, 155:245].astype(np.int64) > top - 0.2 * top).all()  # the line is kept
    kept = denoise(img, method="bilateral", strength=1.0, despeckle=False)
    assert int(kept[300, 300]) < int(np.median(img[297:304, 297:304])) - 10 * sigma  # no repair asked


def test_low_noise_film_not_degraded(clean12):
    """At 0.3 % noise the old median-only speck rule cost fine anatomy ~1 dB; now the denoised
    film is at least as close to the clean one as the scan was (within 0.2 dB)."""
    clean, noisy, top = noisy_pair(clean12, np.uint8, sigma_frac=0.003, seed=9)
    before = peak_signal_noise_ratio(clean, noisy, data_range=top)
    after = peak_signal_noise_ratio(clean, denoise(noisy, method="bilateral", strength=1.0), data_range=top)
    assert after > before - 0.2, (before, after)


@pytest.mark.parametrize(
    ("image", "kw"),
    [
        (np.zeros((10, 10), np.float32), {"method": "bilateral"}),
        (np.zeros((10, 10, 3), np.uint8), {"method": "bilateral"}),
        (np.zeros((10, 10), np.uint8), {"method": "median"}),
        (np.zeros((10, 10), np.uint8), {"method": "bilateral", "strength": -1}),
    ],
)
def test_bad_input(image, kw):
    with pytest.raises(ValueError):
        denoise(image, **kw)


@pytest.mark.parametrize("top", [65535, 4095], ids=["16-bit-full-range", "12-bit-stored"])
def test_bilateral_fast_path_range_and_values(clean12, top):
    """The bilateral path rounds back with one saturating cv2 pass and no clip: the result must
    equal the straightforward float reference (rint, clip to the input's range) and never wrap."""
    rng = np.random.default_rng(3)
    img = np.clip(np.rint(clean12 * (top / 4095) + rng.normal(0, 0.01 * top, clean12.shape)), 0, top).astype(np.uint16)
    img[:8, :] = 0
    img[-8:, :] = top  # hard full-range steps
    assert int(img.min()) == 0 and int(img.max()) == top
    out = denoise(img, method="bilateral", strength=1.0)
    assert out.dtype == np.uint16 and out.shape == img.shape
    assert int(out.min()) >= 0 and int(out.max()) <= top
    sigma = estimate_noise_sigma(img)
    med = cv2.medianBlur(img, 3)
    work = img.astype(np.float32)
    speck = speck_mask(img, sigma)
    work[speck] = med[speck]
    ref = np.clip(np.rint(_bilateral_ref(work, sigma)), 0, top)
    np.testing.assert_array_equal(out, ref.astype(np.uint16))


def test_specks_repaired_at_their_own_pixels(clean12):
    """Planted specks on a non-square film (rows != cols, so a swapped (x, y) would repair the
    wrong pixels): both methods equal the reference that repairs every flagged pixel by its
    3x3 median before filtering."""
    rng = np.random.default_rng(21)
    img = np.clip(np.rint(clean12[:, : clean12.shape[1] * 2 // 3] + rng.normal(0, 8, (clean12.shape[0], clean12.shape[1] * 2 // 3))),
                  0, 4095).astype(np.uint16)
    assert img.shape[0] != img.shape[1]
    rr, cc = rng.integers(5, img.shape[0] - 5, 40), rng.integers(5, img.shape[1] - 5, 40)
    img[rr, cc] = np.where(img[rr, cc] > 2048, 0, 4095)
    sigma = estimate_noise_sigma(img)
    med = cv2.medianBlur(img, 3)
    speck = speck_mask(img, sigma)
    assert speck[rr, cc].mean() > 0.9
    assert speck.sum() - speck[rr, cc].sum() <= 1e-4 * img.size  # besides them, only rare noise spikes (2 here)
    work = img.astype(np.float32)
    work[speck] = med[speck]
    ref = np.clip(np.rint(_bilateral_ref(work, sigma)), 0, 4095)
    np.testing.assert_array_equal(denoise(img, method="bilateral"), ref.astype(np.uint16))
    fixed = img.copy()
    fixed[speck] = med[speck]
    nl = cv2.fastNlMeansDenoising(fixed, [0.8 * sigma], templateWindowSize=5, searchWindowSize=15, normType=cv2.NORM_L1)
    np.testing.assert_array_equal(denoise(img, method="nlmeans"), np.clip(nl, img.min(), img.max()))


@pytest.mark.parametrize("shape", [(3, 3), (4, 5), (64, 64), (65, 63)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_noise_sigma_median_matches_numpy(shape, dtype):
    """The estimate is 1.4826 * median(|Immerkaer|) / 6 over the interior pixels whose 3x3
    window holds neither the image's minimum nor its maximum (numpy windows, float64)."""
    rng = np.random.default_rng(sum(shape))
    img = rng.integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)
    f = cv2.filter2D(img.astype(np.float64), cv2.CV_64F, np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64),
                     borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1]
    win = np.lib.stride_tricks.sliding_window_view(img, (3, 3))
    clear = (win.min(axis=(2, 3)) > img.min()) & (win.max(axis=(2, 3)) < img.max())
    vals = np.abs(f[clear]) if clear.any() else np.abs(f).ravel()
    assert estimate_noise_sigma(img) == pytest.approx(1.4826 * np.median(vals) / 6.0, rel=1e-9)


def test_noise_sigma_ignores_clipped_areas(clean12):
    """Half the film clipped to one value (a black surround, as on the digitized film SC1_UNC)
    no longer pulls the estimate to ~0: it is the noise of the rest, within 10 %."""
    _, noisy, top = noisy_pair(clean12, np.uint16, sigma_frac=0.01)
    clipped = noisy.copy()
    clipped[:, : clipped.shape[1] // 2] = 0
    clipped[0, -1] = 0  # the minimum is 0
    assert estimate_noise_sigma(clipped) == pytest.approx(estimate_noise_sigma(noisy[:, noisy.shape[1] // 2 + 2:]), rel=0.1)
    assert estimate_noise_sigma(clipped) == pytest.approx(0.01 * top, rel=0.2)


def test_noise_sigma_sampled_bands_match_the_whole_film():
    """A film above the sample size is estimated from bands; the seams where two bands meet are
    left out, so a smooth gradient with white noise gives the noise, not the seams' steps."""
    rng = np.random.default_rng(4)
    ramp = np.linspace(1000, 60000, 1500)[:, None] + np.zeros((1, 900))
    img = np.clip(np.rint(ramp + rng.normal(0, 50, ramp.shape)), 0, 65535).astype(np.uint16)
    assert img.size > 250_000
    assert estimate_noise_sigma(img) == pytest.approx(50, rel=0.05)


def test_low_dpi_label_strokes_survive_the_speck_repair():
    """A 60-dpi film's flashed label has one-pixel strokes. The median-only speck rule took
    hundreds of them for dust and the label was no longer found after denoising (the bad-input
    film 'path with spaces/...', tests/bad_inputs/MANIFEST.md); now no stroke pixel is repaired
    and the label is found on the denoised film."""
    from pathlib import Path

    from PIL import Image

    from pipeline.geometry import straighten
    from pipeline.label import locate_label

    scan = np.asarray(Image.open(Path(__file__).parent / "bad_inputs" / "scans" / "path with spaces" / "Fïlm ñame çopy.png"))
    film, _ = straighten(scan, max_skew_deg=20)
    sigma = estimate_noise_sigma(film)
    old_rule = np.abs(film.astype(np.int64) - cv2.medianBlur(film, 3)) > 6.0 * sigma
    assert old_rule.sum() > 200  # strokes (and edges) the old rule replaced by their median
    assert speck_mask(film, sigma).sum() <= 5
    region = locate_label(denoise(film, method="bilateral", strength=1.0), dpi=60.0)
    assert region is not None


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_both_speck_routes_find_the_same_specks(clean12, dtype, monkeypatch):
    """pipeline.denoise finds specks by gathering each candidate's neighbours when candidates are
    few and by whole-image morphology when they are many; on a low-noise textured film (many
    candidates) with planted specks, including on the border, both give the same pixels."""
    import pipeline.denoise as dn

    _, noisy, top = noisy_pair(clean12, dtype, sigma_frac=0.003, seed=11)
    img = noisy.copy()
    rng = np.random.default_rng(12)
    rr, cc = rng.integers(0, img.shape[0], 60), rng.integers(0, img.shape[1], 60)
    rr[:4], cc[:4] = (0, img.shape[0] - 1, 5, 9), (7, 3, 0, img.shape[1] - 1)  # specks on every border
    img[rr, cc] = np.where(img[rr, cc] > top // 2, 0, top)
    sigma = estimate_noise_sigma(img)
    med = cv2.medianBlur(img, 3)
    found = {}
    for name, share in (("gather", 10**9), ("morphology", 1)):
        monkeypatch.setattr(dn, "_MORPHOLOGY_SHARE", share)
        r, c = dn._specks(img, med, sigma)
        found[name] = set(zip(r.tolist(), c.tolist()))
    assert found["gather"] == found["morphology"]
    assert set(zip(*np.nonzero(speck_mask(img, sigma)))) == found["gather"]
    assert len(found["gather"] & set(zip(rr.tolist(), cc.tolist()))) >= 50


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_noise_sigma_histogram_median_is_exact_with_clipped_areas(dtype):
    """On a film large enough for the counted histogram (240 000 pixels, noise well below its
    limit) and half clipped to black, the estimate is the exact median over the pixels whose 3x3
    window holds no clipped value (numpy windows, float64 filter, np.median)."""
    rng = np.random.default_rng(12)
    top = np.iinfo(dtype).max
    img = np.clip(np.rint(rng.normal(top / 2, top / 40, (400, 600))), 1, top - 1).astype(dtype)
    img[:, :250] = 0
    f = cv2.filter2D(img.astype(np.float64), cv2.CV_64F, np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64),
                     borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1]
    win = np.lib.stride_tricks.sliding_window_view(img, (3, 3))
    clear = (win.min(axis=(2, 3)) > img.min()) & (win.max(axis=(2, 3)) < img.max())
    expected = 1.4826 * np.median(np.abs(f[clear])) / 6.0
    assert estimate_noise_sigma(img) == expected
    assert expected == pytest.approx(top / 40, rel=0.1)


def test_any_memory_layout_and_tiny_shapes(clean12):
    """Transposed / quarter-turned (Fortran-ordered) films denoise as their C-ordered copies; the
    noise estimate answers for every small shape (a 6 x 3 image's 4 x 1 response once passed
    for an OpenCV scalar) and refuses float images instead of rounding them to nothing."""
    _, noisy, _ = noisy_pair(clean12, np.uint16)
    part = noisy[:200, :300]
    for view in (part.T, np.rot90(part), np.rot90(part, 3), np.asfortranarray(part), part[::-1, ::2]):
        np.testing.assert_array_equal(denoise(view), denoise(np.ascontiguousarray(view)))
    for rows in range(3, 9):
        for cols in range(3, 9):
            img = np.arange(rows * cols, dtype=np.uint8).reshape(rows, cols)
            assert estimate_noise_sigma(img) >= 0.0
            assert denoise(img).shape == img.shape
    with pytest.raises(ValueError):
        estimate_noise_sigma(noisy.astype(np.float32))
