"""The applications of a defocus map: magnification, depth, masks (dmenet.applications)."""
import warnings

import numpy as np
import pytest
from scipy import ndimage

import dmenet
from dmenet.applications import depth as depth_module
from dmenet.applications.depth import defocus_constant, depth_from_defocus
from dmenet.applications.inputs import SigmaCropWarning
from dmenet.applications.magnify import LEVEL_STEP_PX, LEVEL_STEP_RELATIVE, MAX_EXACT_LEVELS, blur_levels, magnify_defocus
from dmenet.applications.masks import blur_mask, fit_threshold
from dmenet.syndof.lens import ThinLens


def _blur(image, sigma):
    """Whole-frame Gaussian blur with MATLAB's 'symmetric' border (scipy's 'reflect'), untruncated."""
    return image if sigma == 0 else ndimage.gaussian_filter(image, (sigma, sigma, 0), mode="reflect", truncate=8.0)


def _blur_per_region(image, sigma, scale=1.0):
    """Each region of constant σ taken from the whole frame blurred by scale·σ."""
    out = np.empty_like(image)
    for value in np.unique(sigma):
        region = sigma == value
        out[region] = _blur(image, scale * value)[region]
    return out


def _psnr(a, b, where=None):
    error = (a - b) ** 2
    if where is not None:
        error = error[where]
    return 10 * np.log10(1.0 / error.mean())


@pytest.fixture(scope="module")
def sharp_photo():
    from skimage import data, transform

    return transform.resize(data.astronaut(), (160, 192), anti_aliasing=True)


@pytest.fixture(scope="module")
def region_map():
    """Piecewise-constant σ: stripes 0 | 1 | 2 px and a disc of 0.5 px."""
    yy, xx = np.mgrid[:160, :192]
    sigma = np.zeros((160, 192))
    sigma[:, 64:128] = 1.0
    sigma[:, 128:] = 2.0
    sigma[(yy - 80) ** 2 + (xx - 150) ** 2 < 28**2] = 0.5
    return sigma


def test_magnifying_a_blurred_photo_by_two_equals_blurring_the_sharp_one_by_two_sigma(sharp_photo, region_map):
    blurred = _blur_per_region(sharp_photo, region_map)
    target = _blur_per_region(sharp_photo, region_map, scale=2.0)
    magnified = magnify_defocus(blurred, region_map, 2.0)
    band = int(np.ceil(3 * 2 * region_map.max()))  # 3·(k·σ_max) around every σ edge
    interior = np.zeros(region_map.shape, bool)
    for value in np.unique(region_map):
        interior |= ndimage.binary_erosion(region_map == value, iterations=band, border_value=1)
    assert interior.mean() > 0.4
    assert _psnr(magnified, target, interior) >= 40.0  # measured 69 dB
    assert _psnr(blurred, target, interior) < 30.0  # the input itself is far from it
    assert magnified.shape == sharp_photo.shape and magnified.min() >= 0 and magnified.max() <= 1


def test_factor_one_and_a_sharp_map_return_the_photo_exactly(sharp_photo, region_map):
    photo = sharp_photo.astype(np.float32)
    assert np.array_equal(magnify_defocus(photo, region_map, 1.0), photo)
    assert np.array_equal(magnify_defocus(photo, np.zeros_like(region_map), 3.0), photo)
    as_uint8 = np.round(sharp_photo * 255).astype(np.uint8)
    assert np.array_equal(magnify_defocus(as_uint8, np.zeros_like(region_map)), as_uint8 / 255.0)


def _subject_on_background(subject_sigma, background_sigma):
    """A bright square (the subject) on a dark flat background, and the σ map of the two."""
    photo = np.full((80, 80, 3), 0.1)
    photo[30:50, 30:50] = 0.9
    sigma = np.full((80, 80), float(background_sigma))
    sigma[30:50, 30:50] = subject_sigma
    return photo, sigma


def test_a_sharp_subject_leaves_no_halo_in_the_blurred_background():
    photo, sigma = _subject_on_background(0.0, 2.0)
    magnified = magnify_defocus(photo, sigma, 3.0)
    # Mixing whole-frame blurs per pixel would put ≈ 0.5 next to the square; layers keep it out.
    np.testing.assert_allclose(magnified[sigma > 0], 0.1, atol=1e-9)
    np.testing.assert_allclose(magnified[sigma == 0], 0.9, atol=1e-9)


def test_near_side_draws_the_blurred_layer_over_the_sharp_one():
    photo, sigma = _subject_on_background(2.0, 0.0)  # a blurred subject in front of a sharp background
    near = magnify_defocus(photo, sigma, 3.0, side="near")
    far = magnify_defocus(photo, sigma, 3.0, side="far")
    beside = (slice(30, 50), slice(25, 29))  # background pixels just left of the square
    assert near[beside].mean() > 0.2  # the subject's soft edge spreads over its background
    np.testing.assert_allclose(far[beside], 0.1, atol=1e-9)  # drawn behind, it cannot


def test_continuous_maps_get_levels_fine_enough_for_no_bands():
    sigma_add = np.linspace(0, 12, 20000).reshape(100, 200)
    levels, index = blur_levels(sigma_add)
    assert MAX_EXACT_LEVELS < len(levels) < 400
    error = np.abs(levels[index] - sigma_add)
    assert np.all(error <= np.maximum(LEVEL_STEP_PX, LEVEL_STEP_RELATIVE * sigma_add) / 2 * (1 + LEVEL_STEP_RELATIVE))  # geometric steps
    few = np.repeat([0.0, 0.3, 1.7], 10).reshape(5, 6)
    levels, index = blur_levels(few)
    assert np.array_equal(levels[index], few)  # label maps keep their exact values


@pytest.mark.parametrize("call, message", [
    (lambda p, s: magnify_defocus(p, s, 0.5), "≥ 1"),
    (lambda p, s: magnify_defocus(p, s, side="up"), "unknown side"),
    (lambda p, s: magnify_defocus(p, np.where(s > 0, np.nan, s)), "NaN"),
    (lambda p, s: magnify_defocus(p, s - 1), "negative"),
    (lambda p, s: magnify_defocus(p, np.zeros((90, 70))), "the photo is 80×80"),
    (lambda p, s: magnify_defocus(p[..., 0:2], s), "H×W×3"),
    (lambda p, s: depth_from_defocus(s, side="sideways"), "unknown side"),
    (lambda p, s: depth_from_defocus(s, {"f_mm": 50, "z_focal": 30, "n_number": 2}), "must exceed the focal length"),
    (lambda p, s: depth_from_defocus(s, {"f_mm": 50, "z_focal": 3000}), "n_number"),
    (lambda p, s: blur_mask(s, -1.0), "≥ 0"),
    (lambda p, s: blur_mask(s, "median"), "unknown threshold"),
    (lambda p, s: blur_mask(s, "fit"), "labelled data"),
])
def test_bad_inputs_are_one_clear_value_error(call, message):
    photo, sigma = _subject_on_background(0.0, 2.0)
    with pytest.raises(ValueError, match=message):
        call(photo, sigma)


def test_a_smaller_map_uses_the_photos_top_left_region_with_a_warning():
    photo, sigma = _subject_on_background(0.0, 2.0)
    with pytest.warns(SigmaCropWarning, match="top-left 64×48"):
        magnified = magnify_defocus(photo, sigma[:48, :64], 2.0)
    assert magnified.shape == (48, 64, 3)


@pytest.mark.parametrize("side", ["far", "near"])
def test_thin_lens_round_trip_returns_depths_with_the_same_coc(side):
    lens = ThinLens(f_mm=50.0, z_focal=2500.0, n_number=2.0, width=640)
    depths = np.linspace(2600, 40000, 400) if side == "far" else np.linspace(400, 2400, 400)
    coc = lens.coc(depths)  # rounded to 0.1 px, as SYNDOF stores it
    resolved = coc > 1
    sigma = np.where(resolved, (coc - 1) / 4, 0.0).reshape(20, 20)
    estimated = depth_from_defocus(sigma, lens, side=side).ravel()
    assert np.all(np.isnan(estimated[~resolved])) and np.all(np.isfinite(estimated[resolved]))
    assert np.array_equal(lens.coc(estimated[resolved]), coc[resolved])
    exact = defocus_constant(lens) * np.abs(depths - lens.z_focal) / (depths + depth_module.EPSILON)
    recovered = defocus_constant(lens) * np.abs(estimated - lens.z_focal) / (estimated + depth_module.EPSILON)
    assert np.all(np.abs(recovered[resolved] - exact[resolved]) <= 0.05 + 1e-9)  # within the CoC's rounding
    assert np.all((estimated[resolved] > lens.z_focal) == (side == "far"))


def test_depth_accepts_the_cameras_fields_and_orders_relative_depth_by_blur():
    sigma = np.array([[0.0, 0.5, 1.0, 3.0]])
    far = depth_from_defocus(sigma)
    assert np.all(np.diff(far[0]) < 0) and far.max() == 1.0 and far.min() == 0.0  # nearer = larger
    near = depth_from_defocus(sigma, side="near")
    assert np.all(np.diff(near[0]) > 0)
    fields = {"f_mm": 50.0, "z_focal": 2500.0, "n_number": 2.0, "width": 640}
    np.testing.assert_array_equal(depth_from_defocus(sigma, fields), depth_from_defocus(sigma, ThinLens(**fields)))
    wide = np.zeros((2, 640))
    wide[:, 0] = 1.0
    without_width = depth_from_defocus(wide, {k: v for k, v in fields.items() if k != "width"})
    np.testing.assert_array_equal(without_width, depth_from_defocus(wide, fields))  # the map's width is the photo's
    beyond = depth_from_defocus(np.array([[1000.0]]), fields)
    assert np.isinf(beyond).all()  # more blur than any finite depth gives this camera


def _two_mode_map():
    rng = np.random.default_rng(3)
    truth = np.zeros((60, 80), bool)
    truth[:, 30:] = True
    truth[10:20, 5:15] = True
    sigma = np.where(truth, rng.normal(3.0, 0.3, truth.shape), np.abs(rng.normal(0.2, 0.05, truth.shape)))
    return sigma, truth


def test_otsu_splits_a_two_mode_map_exactly():
    sigma, truth = _two_mode_map()
    mask, used = blur_mask(sigma, "otsu")
    assert np.array_equal(mask, truth)
    assert sigma[~truth].max() < used < sigma[truth].min()


def test_otsu_splits_a_photo_almost_all_blurred_when_its_small_sharp_mode_stands_out():
    rng = np.random.default_rng(5)
    truth = np.ones((100, 100), bool)
    truth[30:55, 30:55] = False  # 6 % sharp (as in Park'17's sample 2; Otsu itself misses much smaller classes)
    sigma = np.where(truth, rng.normal(1.4, 0.15, truth.shape), rng.normal(0.52, 0.02, truth.shape))  # Park'17-like σ range
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mask, _ = blur_mask(sigma, "otsu")
    assert np.mean(mask == truth) > 0.99  # Otsu cuts a little into the wide blurred mode's tail


def test_otsu_on_a_one_mode_map_says_so_and_calls_it_one_class():
    rng = np.random.default_rng(4)
    for centre, blurred in ((0.3, False), (3.0, True)):
        sigma = np.abs(rng.normal(centre, 0.1, (30, 30)))
        with pytest.warns(UserWarning, match="one mode"):
            mask, used = blur_mask(sigma, "otsu")
        assert mask.all() if blurred else not mask.any()
        assert np.array_equal(mask, sigma > used)
    park17_like = np.abs(rng.normal(0.8, 0.05, (30, 30)))  # Park'17's σ never exceed 2 px: a lower line fits it
    with pytest.warns(UserWarning, match="all blurred"):
        assert blur_mask(park17_like, "otsu", one_mode_threshold=0.66)[0].all()


def test_fit_picks_the_best_accuracy_threshold_on_labelled_maps():
    sigma, truth = _two_mode_map()
    noisy = truth.copy()
    noisy[0, :5] = True  # a few mislabelled sharp pixels cannot move the best split
    threshold, accuracy = fit_threshold([(sigma, noisy.astype(np.uint8) * 255)])
    assert sigma[~truth].max() < threshold < sigma[truth].min()
    assert accuracy == pytest.approx(1 - 5 / truth.size)
    other = sigma[::-1] * 1.0
    mask, used = blur_mask(other, "fit", labels=[(sigma, truth)])
    assert used == threshold and np.array_equal(mask, other > used)
    assert blur_mask(sigma, "fit", labels=truth)[1] == threshold
    mask, used = blur_mask(sigma, 1.5)
    assert used == 1.5 and np.array_equal(mask, sigma > 1.5)


def test_the_applications_are_public_lazily():
    from dmenet.applications import depth, magnify, masks

    assert {"deblur", "magnify_defocus", "depth_from_defocus", "blur_mask"} <= set(dmenet.__all__)
    assert dmenet.magnify_defocus is magnify.magnify_defocus
    assert dmenet.depth_from_defocus is depth.depth_from_defocus
    assert dmenet.blur_mask is masks.blur_mask
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("magnify_defocus", "depth_from_defocus", "blur_mask"):
            doc = getattr(dmenet, name).__doc__
            assert "Args:" in doc and "Returns:" in doc and "Examples:" in doc
