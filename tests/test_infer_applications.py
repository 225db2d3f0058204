"""infer.py's applications: --all-in-focus, --magnify, --depth, --mask-threshold otsu, and --sigma-maps
(maps computed earlier; no network, no TensorFlow)."""
import importlib.util
import json
import subprocess
import sys
import types

import numpy as np
import pytest

from dmenet.cli import infer
from dmenet.files.images import read_array, write_png
from dmenet.inference.batch import OutputOptions, run_inference
from dmenet.inference.tiling import Prediction
from dmenet.units import NORMALIZED

REPOSITORY = __import__("pathlib").Path(__file__).resolve().parents[1]
HAS_DEBLUR = importlib.util.find_spec("dmenet.applications.deblur") is not None
needs_deblur = pytest.mark.skipif(not HAS_DEBLUR, reason="dmenet.applications.deblur is not in this checkout yet")


@pytest.fixture(scope="module")
def photos_and_maps(tmp_path_factory):
    """Three photos; maps for two of them: a.npy-style σ map, b as infer.py's 16-bit PNG with its unit
    text, and c.png without a unit (another method's σ·10 map); d has no map."""
    from skimage import data, transform

    root = tmp_path_factory.mktemp("apps")
    photos, maps = root / "photos", root / "maps"
    photos.mkdir()
    maps.mkdir()
    image = np.round(transform.resize(data.astronaut(), (64, 80), anti_aliasing=True) * 255).astype(np.uint8)
    sigma = np.zeros((64, 80), np.float32)
    sigma[:, 40:] = 2.0
    for name in "abcd":
        write_png(photos / f"{name}.png", image)
    np.save(maps / "a_sigma.npy", sigma)
    write_png(maps / "b_sigma.png", np.round(sigma * 1000).astype(np.uint16), text={"dmenet:unit": "sigma_px = value / 1000"})
    write_png(maps / "c.png", np.round(sigma * 10).astype(np.uint16))
    return photos, maps, sigma


def test_sigma_maps_make_every_application_without_tensorflow(photos_and_maps, tmp_path):
    photos, maps, sigma = photos_and_maps
    out = tmp_path / "out"
    script = ("import sys; from dmenet.cli import infer; "
              f"code = infer.main([{str(photos / 'a.png')!r}, {str(photos / 'b.png')!r}, '--sigma-maps', {str(maps)!r}, '-o', {str(out)!r}, "
              "'--magnify', '2', '--depth', '--npy', '--mask-threshold', 'otsu', '--figure', '--quiet']); "
              "print('tensorflow' in sys.modules, 'keras' in sys.modules); sys.exit(code)")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPOSITORY, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "False False"
    for name in "ab":
        for suffix in ("_magnified.png", "_depth.png", "_depth.npy", "_mask.png", "_figure.png"):
            assert (out / f"{name}{suffix}").is_file(), name + suffix
        np.testing.assert_array_equal(read_array(out / f"{name}_mask.png") == 255, sigma > 1)
        depth = np.load(out / f"{name}_depth.npy")
        np.testing.assert_allclose(depth, 1 - sigma / 2)  # relative inverse depth, far side
        assert read_array(out / f"{name}_magnified.png").shape == (64, 80, 3)
    summary = json.loads((out / "applications.json").read_text())
    assert summary["applications"]["magnify"]["factor"] == 2.0
    assert summary["applications"]["depth"]["side"] == "far" and summary["applications"]["depth"]["camera"] is None
    assert [image["mask_threshold_px"] for image in summary["images"]] == [1.0, 1.0]
    assert summary["failures"] == []


def test_photos_without_a_map_or_a_unit_fail_alone(photos_and_maps, tmp_path, capsys):
    photos, maps, _ = photos_and_maps
    out = tmp_path / "out"
    assert infer.main([str(photos), "--sigma-maps", str(maps), "-o", str(out), "--magnify", "1.5", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "c.png: states no unit" in err and "--sigma-unit" in err and "d.png: no σ map" in err
    summary = json.loads((out / "applications.json").read_text())
    assert [image["input"][-5:] for image in summary["images"]] == ["a.png", "b.png"]
    # Stating the unit reads another method's map: c.png holds σ·10.
    assert infer.main([str(photos / "c.png"), "--sigma-maps", str(maps), "--sigma-unit", "scale=10", "-o", str(out),
                       "--depth", "--camera", "50,2000,2.8", "--npy", "--quiet"]) == 0
    depth = np.load(out / "c_depth.npy")
    assert np.isnan(depth[:, :40]).all() and (depth[:, 40:] > 2000).all()  # in focus: unresolved; blurred: behind focus
    assert read_array(out / "c_depth.png")[0, 0] == 0


@pytest.mark.parametrize("arguments, message", [
    (["--magnify", "0.5"], "magnification factor must be a finite number ≥ 1"),
    (["--magnify", "two"], "magnification factor must be a number"),
    (["--depth", "--side", "up"], "unknown side 'up'"),
    (["--depth", "--camera", "50,2000"], "--camera takes F,Z,N"),
    (["--camera", "50,2000,2.8"], "--camera goes with --depth"),
    (["--mask-threshold", "-1"], "--mask-threshold"),
    (["--sigma-unit", "furlongs"], "unknown --sigma-unit"),
])
def test_bad_values_are_one_error_line_before_any_model_loads(photos_and_maps, tmp_path, capsys, arguments, message):
    photos, maps, _ = photos_and_maps
    # With the network path: the weights do not exist, yet the value is what is reported.
    assert infer.main([str(photos / "a.png"), "--weights", str(tmp_path / "missing.weights.h5"), "-o", str(tmp_path), *arguments]
                      + (["--sigma-maps", str(maps)] if "--sigma-unit" in arguments else [])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_a_bad_map_fails_its_photo_with_one_line(photos_and_maps, tmp_path, capsys):
    photos, _, _ = photos_and_maps
    maps = tmp_path / "maps"
    maps.mkdir()
    np.save(maps / "a.npy", np.full((64, 80), -1.0))
    np.save(maps / "b.npy", np.zeros((70, 90)))
    code = infer.main([str(photos / "a.png"), str(photos / "b.png"), "--sigma-maps", str(maps), "-o", str(tmp_path / "o"), "--magnify", "2", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "negative values" in err and "the σ map is 90×70 but the photo is 80×64" in err
    assert "Traceback" not in err


class _FakePredictor:
    """Stands in for a network: σ = 2 px on the right half (run_inference's contract, no TensorFlow)."""

    method, encoding, precision, precision_reason, xla, max_side, tile, margin = "dmenet", NORMALIZED, "fp32", "test", False, None, 1024, 64

    def predict(self, image, progress=None, stop=None):
        sigma = np.zeros(image.shape[:2], np.float32)
        sigma[:, image.shape[1] // 2:] = 2.0
        return Prediction(sigma=sigma, scale=1.0, sigma_limit=7.0, tiles=1)


def test_the_network_path_writes_the_applications_beside_the_map_and_records_them(photos_and_maps, tmp_path):
    from dmenet.applications.outputs import ApplicationOptions

    photos, _, _ = photos_and_maps
    options = OutputOptions(mask_threshold="otsu", write_figure=True,
                            applications=ApplicationOptions(magnify=3.0, depth=True, side="near"))
    summary = run_inference([photos / "a.png"], _FakePredictor(), tmp_path, options, progress=False)
    files = summary["images"][0]["files"]
    assert {"a_sigma.png", "a_mask.png", "a_magnified.png", "a_depth.png", "a_figure.png"} <= set(files)
    assert summary["applications"]["magnify"] == {**summary["applications"]["magnify"], "factor": 3.0, "side": "near"}
    assert summary["mask_rule"].startswith("255 where sigma_px > each image's Otsu threshold")
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["applications"]["depth"]["side"] == "near" and saved["images"][0]["mask_threshold_px"] == 1.0


@needs_deblur
def test_all_in_focus_from_sigma_maps(photos_and_maps, tmp_path, capsys):
    photos, maps, _ = photos_and_maps
    out = tmp_path / "out"
    assert infer.main([str(photos / "a.png"), "--sigma-maps", str(maps), "-o", str(out), "--all-in-focus", "--quiet"]) == 0
    image = read_array(out / "a_allinfocus.png")
    assert image.shape == (64, 80, 3) and image.dtype == np.uint8
    recorded = json.loads((out / "applications.json").read_text())["applications"]["all_in_focus"]
    assert recorded["lambda"] == 420.0 and recorded["preset"] == "cuhk"
    assert infer.main([str(photos / "a.png"), "--sigma-maps", str(maps), "-o", str(out), "--all-in-focus", "dpdd", "--quiet"]) == 0
    assert json.loads((out / "applications.json").read_text())["applications"]["all_in_focus"]["lambda"] == 16.8
    for bad in ("0", "-3", "sharp"):
        assert infer.main([str(photos / "a.png"), "--sigma-maps", str(maps), "-o", str(out), "--all-in-focus", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err


def test_all_in_focus_is_wired_to_the_deblur_interface(photos_and_maps, tmp_path, monkeypatch):
    """The CLI's side of --all-in-focus against the agreed interface (deblur(image, sigma, lam, *,
    progress), LAMBDA_PRESETS, resolve_lambda), with a stand-in that records its call."""
    photos, maps, _ = photos_and_maps
    calls = []
    stand_in = types.ModuleType("dmenet.applications.deblur")
    stand_in.LAMBDA_PRESETS = {"cuhk": 420.0, "dpdd": 16.8, "realdof": 4.2}
    stand_in.resolve_lambda = lambda value: stand_in.LAMBDA_PRESETS.get(str(value).lower()) or float(value)

    def deblur(image, sigma, lam=420.0, *, mode="exact", progress=None, workers=None):
        calls.append((image.shape, sigma.shape, lam, mode))
        progress(1, 1)
        return np.full(image.shape, 0.5)

    stand_in.deblur = deblur
    monkeypatch.setitem(sys.modules, "dmenet.applications.deblur", stand_in)
    out = tmp_path / "out"
    assert infer.main([str(photos / "a.png"), "--sigma-maps", str(maps), "-o", str(out), "--all-in-focus", "realdof", "--figure"]) == 0
    assert calls == [((64, 80, 3), (64, 80), 4.2, "exact")]
    assert (read_array(out / "a_allinfocus.png") == 128).all()
    assert json.loads((out / "applications.json").read_text())["applications"]["all_in_focus"]["preset"] == "realdof"


class _CompilingPredictor(_FakePredictor):
    """A classical method whose kernels are not in numba's cache yet: its first photo compiles one."""

    method, runs_compiled_kernels = "zhuo11", True

    def __init__(self):
        from dmenet.native_kernels import kernel

        self.kernel = kernel(cache=False)(lambda value: value + 1.0)

    def predict(self, image, progress=None, stop=None):
        assert self.kernel(1.0) == 2.0
        return super().predict(image, progress, stop)


def test_a_first_run_says_it_compiles_and_marks_the_photo_it_slowed(photos_and_maps, tmp_path):
    from dmenet.kernel_cache import COMPILING_NOTE

    photos, _, _ = photos_and_maps
    lines = []
    summary = run_inference([photos / "a.png", photos / "b.png"], _CompilingPredictor(), tmp_path, OutputOptions(),
                            progress=False, log=lines.append)
    assert lines == [f"note: {COMPILING_NOTE}"]
    assert [image.get("compiled_kernels") for image in summary["images"]] == [True, None]
    lines.clear()
    summary = run_inference([photos / "a.png"], _FakePredictor(), tmp_path / "network", OutputOptions(), progress=False,
                            log=lines.append)
    assert lines == [] and "compiled_kernels" not in summary["images"][0]
