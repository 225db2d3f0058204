"""Zhuo & Sim 2011: each stage against its definition and the official run, the propagation, the CLIs without TensorFlow."""
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import scipy.ndimage
import scipy.special

from dmenet.propagation.solver import Propagation
from dmenet.zhuo11.bilateral import sparse_bilateral
from dmenet.zhuo11.blur_ratio import edge_blur, gradient_magnitude
from dmenet.zhuo11.edges import edge_map, grey_image
from dmenet.zhuo11.errors import Zhuo11Error
from dmenet.zhuo11.params import DEFAULT_PARAMS, Zhuo11Params
from dmenet.zhuo11.pipeline import estimate_zhuo11

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]


def _blurred_step(sigma, size=64):
    """A vertical unit step at x = size/2 − 0.5, blurred by a Gaussian of σ (exact pixel-centre samples)."""
    x = np.arange(size) - (size / 2 - 0.5)
    profile = 0.5 * (1 + scipy.special.erf(x / (sigma * math.sqrt(2)))) if sigma > 0 else (x > 0).astype(float)
    return np.tile(0.2 + 0.6 * profile, (size, 1))


# ---- stages against their definitions (no shared data) ---------------------------------------------

def test_a_blurred_step_gives_its_sigma_at_the_edge():
    found = []
    for sigma in (1.0, 1.5, 2.0, 2.5):
        grey = _blurred_step(sigma)
        edges = edge_map(grey)
        assert set(np.nonzero(edges[8:-8])[1]) == {31}  # 8 taps: half a pixel left of the step at 31.5
        estimates = edge_blur(grey, edges)[edges]
        # measured half a pixel off the step's centre with sampled kernels: a little high (+0.13 at σ = 1)
        assert np.all(np.abs(estimates - sigma) < 0.15), (sigma, estimates)
        found.append(estimates.mean())
    assert np.all(np.diff(found) > 0.4)


def test_sharp_steps_give_no_estimate_and_large_blur_is_clamped():
    sharp = _blurred_step(0.0)
    edges = edge_map(sharp)
    # half a pixel from an ideal step the sampled kernels read R = 1.42, i.e. σ = 0.47: the method's floor
    assert np.all(np.abs(edge_blur(sharp, edges)[edges] - 0.473) < 0.01)
    params = Zhuo11Params(edge_threshold=0.05)
    wide = _blurred_step(5.0)
    edges = edge_map(wide, params)
    assert edges.any() and np.all(edge_blur(wide, edges, params)[edges] == DEFAULT_PARAMS.max_blur)


def test_gradient_kernels_are_the_sampled_derivative_of_gaussian_by_true_convolution():
    rng = np.random.default_rng(0)
    grey = rng.random((11, 13))
    scale = 1.5
    half = 2 * math.ceil(2 * scale) + 1
    gx = np.zeros_like(grey)
    gy = np.zeros_like(grey)
    for dy in range(-half, half + 1):
        for dx in range(-half, half + 1):
            weight = np.exp(-(dx * dx + dy * dy) / (2 * scale ** 2)) / (2 * math.pi * scale ** 4)
            rows = np.clip(np.arange(11) - dy, 0, 10)[:, None]
            cols = np.clip(np.arange(13) - dx, 0, 12)[None, :]
            gx += -dx * weight * grey[rows, cols]
            gy += -dy * weight * grey[rows, cols]
    np.testing.assert_allclose(gradient_magnitude(grey, scale), np.hypot(gx, gy), rtol=1e-12, atol=1e-14)


def _brute_force_bilateral(sparse, rgb, radius=10, sigma_spatial=5.0, sigma_range=0.3):
    height, width = sparse.shape
    out = np.zeros_like(sparse)
    for r in range(height):
        for c in range(width):
            if sparse[r, c] <= 1e-4:
                continue
            numerator = denominator = 0.0
            for dy in range(-radius, radius + 1):
                for dx in range(-radius, radius + 1):
                    q = min(max(r + dy, 0), height - 1), min(max(c + dx, 0), width - 1)
                    if sparse[q] <= 1e-4:
                        continue
                    # every channel of the neighbour against the centre's RED value, summed (the official quirk)
                    colour = sum(math.exp(-(rgb[q][k] - rgb[r, c, 0]) ** 2 / (2 * sigma_range ** 2)) for k in range(3))
                    weight = math.exp(-(dx * dx + dy * dy) / (2 * sigma_spatial ** 2)) * colour * math.exp(-sparse[q])
                    numerator += weight * sparse[q]
                    denominator += weight
            out[r, c] = numerator / denominator
    return out


def test_sparse_bilateral_matches_its_definition_borders_and_red_centre_included():
    rng = np.random.default_rng(1)
    rgb = rng.random((14, 17, 3))
    sparse = np.where(rng.random((14, 17)) < 0.25, rng.uniform(0.0, 3.0, (14, 17)), 0.0)
    sparse[0, 0], sparse[13, 16], sparse[5, 5] = 2.0, 1.0, 5e-5  # corners (replicated) and a sub-floor value
    out = sparse_bilateral(sparse, rgb)
    np.testing.assert_allclose(out, _brute_force_bilateral(sparse, rgb), rtol=1e-12, atol=1e-14)
    assert out[5, 5] == 0


def test_propagation_at_the_zhuo11_constants_reaches_the_direct_solution():
    rng = np.random.default_rng(2)
    rgb = scipy.ndimage.gaussian_filter(rng.random((48, 64, 3)), (2, 2, 0))
    rgb = np.round(rgb * 255) / 255  # 8-bit colours: flat windows make ε = 1e-7 matter
    known = rng.random((48, 64)) < 0.05
    values = np.where(known, rng.uniform(0.2, 3.0, known.shape), 0.0)
    multigrid = Propagation(rgb, known, lam=1e-3, epsilon=1e-7, method="amg").solve(values)
    direct = Propagation(rgb, known, lam=1e-3, epsilon=1e-7, method="direct").solve(values)
    assert np.abs(multigrid.astype(np.float64) - direct).max() < 1e-3


def test_pipeline_on_a_synthetic_photo_finds_the_blur_of_each_half():
    # left half: sharp-edged stripes blurred by σ 1; right half: blurred by σ 2.5
    stripes = np.zeros((96, 128))
    stripes[:, ::16] = 1
    stripes = np.cumsum(stripes, axis=1) % 2
    left = scipy.ndimage.gaussian_filter(stripes, 1.0, mode="nearest")
    right = scipy.ndimage.gaussian_filter(stripes, 2.5, mode="nearest")
    grey = np.where(np.arange(128)[None, :] < 64, left, right)
    photo = np.round(np.stack([grey, 0.8 * grey, 0.6 * grey + 0.2], axis=2) * 255).astype(np.uint8)
    sigma = estimate_zhuo11(photo).sigma
    assert sigma.shape == (96, 128) and sigma.dtype == np.float32
    assert abs(np.median(sigma[8:-8, 8:56]) - 1.0) < 0.2
    assert abs(np.median(sigma[8:-8, 72:120]) - 2.5) < 0.4


def _stripes_photo():
    stripes = np.zeros((96, 128))
    stripes[:, ::16] = 1
    stripes = np.cumsum(stripes, axis=1) % 2
    grey = scipy.ndimage.gaussian_filter(stripes, (1.0, 2.0), mode="nearest")
    return np.round(np.stack([grey, 0.8 * grey, 0.6 * grey + 0.2], axis=2) * 255).astype(np.uint8)


def _sequential_solve(photo, sparse):
    """The propagation set up after the bilateral clean-up, on the clean-up's own support (the official order)."""
    from dmenet.zhuo11.pipeline import as_unit_rgb

    params = DEFAULT_PARAMS
    known = sparse > params.SPARSE_FLOOR
    return Propagation(as_unit_rgb(photo), known, lam=params.lam, epsilon=params.LAPLACIAN_EPSILON,
                       tolerance=params.PROPAGATION_TOLERANCE).solve(sparse)


def test_the_set_up_beside_the_bilateral_gives_the_sequential_map_bit_for_bit():
    photo = _stripes_photo()
    result = estimate_zhuo11(photo, keep_intermediates=True)
    sparse = result.intermediates["sDMap"]
    assert np.array_equal(sparse > DEFAULT_PARAMS.SPARSE_FLOOR, result.intermediates["edge_sigma"] > DEFAULT_PARAMS.SPARSE_FLOOR)
    np.testing.assert_array_equal(result.sigma, _sequential_solve(photo, sparse))
    assert set(result.stage_seconds) >= {"laplacian", "propagation_setup", "propagation_solve"}


def test_a_clean_up_that_loses_an_estimate_is_propagated_on_its_own_support(monkeypatch):
    """The set-up assumes the clean-up keeps the estimates' support; where it does not, the map's own is used."""
    from dmenet.zhuo11 import pipeline

    def losing_one(edge_sigma, rgb, params):
        cleaned = sparse_bilateral(edge_sigma, rgb, params)
        rows, columns = np.nonzero(cleaned)
        cleaned[rows[len(rows) // 2], columns[len(rows) // 2]] = 0.0
        return cleaned

    monkeypatch.setattr(pipeline, "sparse_bilateral", losing_one)
    photo = _stripes_photo()
    result = estimate_zhuo11(photo, keep_intermediates=True)
    sparse = result.intermediates["sDMap"]
    assert (sparse > 0).sum() == (result.intermediates["edge_sigma"] > 0).sum() - 1
    np.testing.assert_array_equal(result.sigma, _sequential_solve(photo, sparse))


def test_bad_inputs_fail_with_one_clear_line():
    with pytest.raises(Zhuo11Error, match="no edge"):
        estimate_zhuo11(np.full((20, 20, 3), 128, np.uint8))
    with pytest.raises(Zhuo11Error, match="H×W×3"):
        estimate_zhuo11(np.zeros((20, 20), np.uint8))
    with pytest.raises(ValueError, match="lam"):
        Zhuo11Params(lam=0.0)
    from dmenet.api import load_predictor

    with pytest.raises(ValueError, match="no weights"):
        load_predictor("zhuo11", "some.caffemodel")
    with pytest.raises(ValueError, match="unknown Zhuo"):
        load_predictor("zhuo11", lambda_=0.1)


# ---- the official run (GNU Octave, unmodified code) on the author's example -------------------------

@pytest.fixture(scope="module")
def bird(shared_data):
    path = shared_data / "zhuo11_reference" / "bird_example.npz"
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    with np.load(path) as archive:
        reference = {key: archive[key] for key in archive.files}
    return reference, estimate_zhuo11(reference["image_rgb_u8"], keep_intermediates=True)


def test_reference_edge_map_is_identical(bird):
    reference, result = bird
    np.testing.assert_array_equal(result.intermediates["edgeMap"], reference["edgeMap"])


def test_reference_sparse_map_is_identical(bird):
    reference, result = bird
    np.testing.assert_array_equal(result.intermediates["sDMap"].astype(np.float32), reference["sDMap"])


def test_reference_sparse_map_from_the_reference_edges(bird):
    reference, _ = bird
    rgb = reference["image_rgb_u8"] / 255.0
    sparse = sparse_bilateral(edge_blur(grey_image(rgb), reference["edgeMap"]), rgb)
    np.testing.assert_array_equal(sparse.astype(np.float32), reference["sDMap"])


def test_reference_full_map(bird):
    reference, result = bird
    error = np.abs(result.sigma.astype(np.float64) - reference["fDmap"])
    assert error.mean() <= 1e-3 and error.max() <= 0.01, (error.mean(), error.max())


# ---- the CLIs and the API start no TensorFlow for zhuo11 ---------------------------------------------

def test_infer_and_evaluate_cli_run_zhuo11_without_tensorflow_or_scipy(tmp_path):
    from dmenet.files.images import write_png

    photo = np.round(np.clip(_blurred_step(1.5, 48)[..., None] * np.array([1.0, 0.9, 0.7]), 0, 1) * 255).astype(np.uint8)
    write_png(tmp_path / "step.png", photo)
    estimate_zhuo11(photo)  # compiles and caches the kernels here first: compiling in the child would import SciPy
    code = (
        "import sys\n"
        "from dmenet.cli.infer import run\n"
        f"rc = run([{str(tmp_path / 'step.png')!r}, '--method', 'zhuo11', '--quiet', '--npy', '--zhuo11-lambda', '0.002', "
        f"'-o', {str(tmp_path / 'out')!r}])\n"
        "assert rc == 0, rc\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'\n"
        "slow = [name for name in ('scipy.sparse', 'scipy.ndimage', 'scipy.linalg', 'matplotlib') if name in sys.modules]\n"
        "assert not slow, f'a one-photo zhuo11 run imported {slow} (a third of a second of start-up)'\n"
        "assert 'numba' not in sys.modules, 'numba was imported: a kernel on the path runs without its native object'\n"
        "from dmenet.cli.evaluate import parse_args\n"
        f"args = parse_args(['--dataset', 'folder', '--mask-polarity', 'blurred-white', '--data-root', {str(tmp_path)!r}, "
        "'--method', 'zhuo11'])\n"
        "assert args.run_method and 'tensorflow' not in sys.modules\n"
        "import dmenet\n"
        "dmenet.load_predictor('zhuo11', lam=0.002).predict_sigma(dmenet.read_image(sys.argv[1]))\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "step.png")], capture_output=True, text=True,
                         timeout=120, cwd=REPOSITORY)
    assert run.returncode == 0, run.stderr
    assert "Device: CPU" in run.stdout and "zhuo11" not in run.stderr
    sigma = np.load(tmp_path / "out" / "step_sigma.npy")
    assert sigma.shape == (48, 48) and abs(float(np.median(sigma)) - 1.5) < 0.2


def test_estimate_defocus_zhuo11_passes_parameters():
    import dmenet

    photo = np.round(np.clip(_blurred_step(2.0, 40)[..., None] * np.ones(3), 0, 1) * 255).astype(np.uint8)
    default = dmenet.estimate_defocus(photo, method="zhuo11")
    clamped = dmenet.estimate_defocus(photo, method="zhuo11", max_blur=1.0)
    assert abs(float(np.median(default)) - 2.0) < 0.2
    assert float(clamped.max()) <= 1.0 + 1e-3
