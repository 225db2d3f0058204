"""The all-in-focus deconvolution: stage by stage against the official run (shared data), and on its own."""
import json
import warnings

import numpy as np
import pytest

from dmenet.applications import deblur as D
from dmenet.bench.deblur import plain_edgetaper, plain_fast_deconv  # a plain transcription of the official MATLAB

REFERENCE = "deconv_reference"


def smooth_scene(height=40, width=52, seed=0):
    rng = np.random.default_rng(seed)
    from scipy import ndimage

    image = ndimage.gaussian_filter(rng.random((height, width, 3)), (1.5, 1.5, 0))
    image = (image - image.min()) / (image.max() - image.min())
    return np.round(image * 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Against the official run
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(shared_data):
    from PIL import Image

    folder = shared_data / REFERENCE
    if not folder.is_dir():
        pytest.skip(f"{folder} is not present")
    map_u8 = np.asarray(Image.open(folder / "cuhk0027_map_in.png"))
    return {
        "folder": folder,
        "photo": np.asarray(Image.open(folder / "cuhk0027_photo.jpg").convert("RGB")),
        "sigma": D.sigma_from_official_map(map_u8 if map_u8.ndim == 2 else map_u8[..., 0]),
        "quantised": np.load(folder / "cuhk0027_sigma_q.npz"),
        "record": json.loads((folder / "cuhk0027.json").read_text()),
    }


def test_quantisation_is_the_official_one(reference):
    sigma_q, bin_index, edges = D.quantize_sigma(reference["sigma"])
    expected = reference["quantised"]
    assert np.array_equal(edges, expected["w_edges"])
    assert np.array_equal(bin_index, expected["bin_index"])
    assert np.array_equal(sigma_q, expected["sigma_q"])
    plan = D.LayerPlan(reference["sigma"])
    assert plan.levels == expected["layer_sigma"].tolist()
    assert [int(plan.weight(level).sum()) for level in plan.levels] == expected["layer_npix"].tolist()
    assert [D.layer_kernel(level).shape[0] // 2 for level in plan.levels] == [layer["ks"] for layer in reference["record"]["layers"]]


@pytest.mark.parametrize("name", ["cuhk0027_j02_ch1.npz", "cuhk0027_j17_ch1.npz"])
def test_layer_stages_match_the_official(reference, name):
    layer = np.load(reference["folder"] / name)
    kernel = D.layer_kernel(float(layer["sigma"]))
    assert kernel.shape == layer["kernel"].shape
    np.testing.assert_allclose(kernel, layer["kernel"], rtol=0, atol=1e-15)
    channel = layer["input_channel_u8"] / 255.0
    assert np.array_equal(layer["input_channel_u8"], reference["photo"][:640, :608, int(layer["channel"]) - 1])
    half = int(layer["ks"])
    padded = np.pad(channel, half, mode="edge")[None]
    tapered = D.EdgeTaper(kernel, padded.shape[1:])(padded)[0]
    np.testing.assert_allclose(tapered, layer["image_tapered"], rtol=0, atol=1e-13)
    solved = D.fast_deconv(layer["image_tapered"], kernel, float(layer["lambda"]), float(layer["alpha"]))
    np.testing.assert_allclose(solved, layer["x"], rtol=0, atol=1e-12)


def test_whole_image_matches_the_official(reference):
    from PIL import Image

    folder = reference["folder"]
    with pytest.warns(D.SigmaCropWarning, match="top-left 608×640"):
        image = D.deblur(reference["photo"], reference["sigma"], "cuhk", workers=2)
    official = np.load(folder / "cuhk0027_out_float32.npz")["output"]
    assert image.shape == official.shape == (640, 608, 3)
    assert np.abs(image - official).max() < 1e-6
    as_uint8 = np.floor(image * 255 + 0.5).astype(np.uint8)
    assert np.mean(as_uint8 == np.asarray(Image.open(folder / "cuhk0027_out.png"))) >= 0.999


# ---------------------------------------------------------------------------------------------
# On its own
# ---------------------------------------------------------------------------------------------


def test_band_edgetaper_equals_the_full_frame_one():
    image = smooth_scene(30, 44)[..., 0] / 255.0
    for sigma in (0.6, 2.3):
        kernel = D.layer_kernel(sigma)
        half = kernel.shape[0] // 2
        padded = np.pad(image, half, mode="edge")
        expected = padded
        for _ in range(4):
            expected = plain_edgetaper(expected, kernel)
        tapered = D.EdgeTaper(kernel, padded.shape)(padded[None])[0]
        np.testing.assert_allclose(tapered, expected, rtol=0, atol=1e-13)
        assert np.abs(tapered - padded).max() > 1e-3  # the taper did change the border


@pytest.mark.parametrize("shape", [(37, 46), (46, 37)])  # both frame orientations (one is solved transposed)
def test_solver_equals_a_plain_transcription(shape):
    rng = np.random.default_rng(1)
    y = rng.random(shape) * 0.8 + 0.1
    kernel = D.layer_kernel(1.3)
    np.testing.assert_allclose(D.fast_deconv(y, kernel, 420.0), plain_fast_deconv(y, kernel, 420.0), rtol=0, atol=1e-11)
    np.testing.assert_allclose(D.fast_deconv(y, kernel, 4.2), plain_fast_deconv(y, kernel, 4.2), rtol=0, atol=1e-11)


def test_uniform_sigma_is_the_single_layer_solution_and_sharpens():
    from scipy import ndimage

    sharp = smooth_scene(48, 56, seed=3) / 255.0
    sigma = 1.4
    blurred = ndimage.gaussian_filter(sharp, (sigma, sigma, 0), mode="nearest", truncate=8.5)
    observed = np.round(blurred * 255).astype(np.uint8)
    image = D.deblur(observed, np.full((48, 56), sigma), 420.0, workers=1)
    channels = np.moveaxis(observed / 255.0, 2, 0)
    expected = np.clip(D.deconvolve_layer(channels, sigma, 420.0), 0, 1)
    np.testing.assert_array_equal(image, np.moveaxis(expected, 0, 2))
    inner = (slice(8, -8), slice(8, -8))

    def error(candidate):
        return np.sqrt(np.mean((candidate[inner] - sharp[inner]) ** 2))

    assert error(image) < 0.7 * error(observed / 255.0)


def test_zero_sigma_is_the_identity():
    photo = smooth_scene(20, 24)
    np.testing.assert_array_equal(D.deblur(photo, np.zeros((20, 24))), photo / 255.0)
    assert D.layer_kernel(0.0).shape == (1, 1) and D.layer_kernel(0.11).shape == (1, 1)
    assert D.layer_kernel(0.13).shape == (3, 3)


def test_few_distinct_values_repeat_edges_and_layer_order_does_not_matter():
    photo = smooth_scene(36, 40, seed=5)
    sigma = np.zeros((36, 40))
    sigma[:, 14:] = 1.0
    sigma[20:, 26:] = 2.0
    sigma_q, bin_index, edges = D.quantize_sigma(sigma)
    assert len(edges) == 34 and set(np.unique(sigma_q)) <= set(edges)
    assert np.all(sigma_q <= sigma) and np.all(sigma_q[sigma == 0] == 0)
    seen = []
    serial = D.deblur(photo, sigma, workers=1, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(np.unique(sigma_q)),) * 2 and len(seen) == len(np.unique(sigma_q))
    np.testing.assert_array_equal(serial, D.deblur(photo, sigma, workers=3))
    assert np.array_equal(serial[sigma == 0], photo[sigma == 0] / 255.0)  # σ = 0 pixels: the identity layer


def test_conservative_and_fast_modes():
    photo = smooth_scene(36, 40, seed=6)
    sigma = np.full((36, 40), 0.8)
    sigma[:, 20:] = np.linspace(1.0, 2.0, 20)
    exact = D.deblur(photo, sigma, workers=1)
    conservative = D.deblur(photo, sigma, mode="conservative", workers=1)
    far = (slice(None), slice(0, 14))  # beyond radius + feather reach of the edge: the lowest level, unfeathered
    np.testing.assert_allclose(conservative[far], exact[far], rtol=0, atol=1e-9)
    assert np.abs(conservative[:, 17:23] - exact[:, 17:23]).max() > 1e-3  # the edge takes the smaller σ
    hard = D.deblur(photo, sigma, mode="conservative", workers=1, radius=0, feather=0)
    np.testing.assert_array_equal(hard, exact)  # radius 0 and no feathering: the official composition
    fast = D.deblur(photo, sigma, mode="fast", workers=1)
    assert 10 * np.log10(1 / np.mean((fast - exact) ** 2)) > 35
    with pytest.raises(ValueError, match="unknown option"):
        D.deblur(photo, sigma, mode="exact", radius=2)
    with pytest.raises(ValueError, match="radius"):
        D.deblur(photo, sigma, mode="conservative", radius=-1)


def test_layer_plans_sum_to_one():
    sigma = np.linspace(0, 3, 200).reshape(10, 20)
    for rule in ("lower", "nearest", "linear", "conservative"):
        plan = D.LayerPlan(sigma, rule)
        total = sum(plan.weight(level).astype(float) for level in plan.levels)
        np.testing.assert_allclose(total, 1.0, atol=1e-12)
    assert D.LayerPlan(sigma, "conservative").levels[0] == 0.0
    with pytest.raises(ValueError, match="rule"):
        D.LayerPlan(sigma, "cubic")


def test_smaller_sigma_map_crops_the_photo_top_left():
    photo = smooth_scene(24, 30, seed=2)
    sigma = np.full((16, 24), 0.9)
    with pytest.warns(D.SigmaCropWarning, match="cropped to its top-left 24×16"):
        cropped = D.deblur(photo, sigma, workers=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(cropped, D.deblur(photo[:16, :24], sigma, workers=1))


def test_lambda_presets():
    assert D.LAMBDA_PRESETS == {"cuhk": 420.0, "dpdd": 16.8, "realdof": 4.2}
    assert D.resolve_lambda("cuhk") == 420.0 and D.resolve_lambda(" DPDD ") == 16.8 and D.resolve_lambda("realdof") == 4.2
    assert D.resolve_lambda("12.5") == 12.5 and D.resolve_lambda(3) == 3.0
    for junk in ("sharp", "", "-1", "0", "nan", "inf", 0, -3.0, None, [1]):
        with pytest.raises(ValueError, match="lambda") as error:
            D.resolve_lambda(junk)
        assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "photo, sigma, kwargs, message",
    [
        ((20, 24, 3), np.full((20, 24), np.nan), {}, "NaN"),
        ((20, 24, 3), np.full((20, 24), -0.5), {}, "negative"),
        ((20, 24, 3), np.ones((20, 24)), {"lam": 0}, "lambda"),
        ((20, 24, 3), np.ones((20, 24)), {"lam": "bogus"}, "lambda"),
        ((20, 24, 3), np.ones((24, 24)), {}, "never larger"),
        ((20, 24, 3), np.ones((16, 28)), {}, "never larger"),
        ((20, 24, 2), np.ones((20, 24)), {}, "H×W×3"),
        ((20, 24, 3), np.ones((20, 24, 2)), {}, "σ map must be a 2-D H×W array"),
        ((20, 24, 3), np.ones((20, 24)), {"mode": "sharpest"}, "mode"),
        ((20, 24, 3), np.ones((20, 24)), {"iterations": 3}, "unknown option"),
        ((20, 24, 3), np.ones((20, 24)), {"bins": 0}, "bins"),
        ((20, 24, 3), np.ones((20, 24)), {"workers": 0}, "workers"),
    ],
)
def test_bad_input_is_one_clear_value_error(photo, sigma, kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        D.deblur(np.zeros(photo, np.uint8), sigma, **kwargs)
    assert "\n" not in str(error.value)


def test_float_photo_out_of_range_is_refused():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        D.deblur(np.full((8, 8, 3), 2.0), np.ones((8, 8)))
