"""Inference: tiling, rescaling, and infer.py on real and broken photos."""
import json
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from dmenet.cli import infer
from dmenet.files.images import read_array
from dmenet.inference.tiling import DefocusPredictor, InferenceInterrupted, plan_tiles
from dmenet.networks.blur_net import build_blur_net
from dmenet.units import NORMALIZED
from dmenet.weights.checkpoints import save_blur_net
from dmenet.weights.pretrained import load_official_npz
from tests import official_graph

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """B with non-trivial random weights, in our checkpoint format."""
    folder = tmp_path_factory.mktemp("weights")
    model = build_blur_net()
    np.savez(folder / "random.npz", **official_graph.random_checkpoint(seed=3))
    load_official_npz(model, folder / "random.npz")
    return save_blur_net(model, folder / "b.weights.h5", NORMALIZED), model


def test_tile_cores_cover_the_photo_once_with_aligned_equal_windows():
    for height, width, tile, margin in [(4000, 6000, 1024, 64), (257, 1000, 256, 32), (80, 90, 128, 32), (10, 10, 1024, 64)]:
        plan = plan_tiles(height, width, tile, margin)
        covered = np.zeros(plan.padded_shape, np.int32)
        window_h, window_w = plan.window_shape
        assert window_h <= tile and window_w <= tile and window_h % 16 == 0 and window_w % 16 == 0
        for top, left, (r0, r1), (c0, c1) in plan.windows():
            assert top % 16 == 0 and left % 16 == 0  # the whole photo's pooling grid
            assert top + window_h <= plan.padded_shape[0] and left + window_w <= plan.padded_shape[1]
            assert top <= r0 and r1 <= top + window_h and left <= c0 and c1 <= left + window_w
            # the context margin is there except where the photo ends
            assert r0 - top >= margin or top == 0
            assert top + window_h - r1 >= margin or top + window_h == plan.padded_shape[0]
            covered[r0:r1, c0:c1] += 1
        assert (covered == 1).all()
    assert plan_tiles(4000, 6000).count == 35


def test_tiled_prediction_agrees_with_whole_image(checkpoint):
    _, model = checkpoint
    image = np.random.default_rng(0).random((160, 272, 3), dtype=np.float32)
    image = np.clip(image * 0.3 + np.linspace(0, 0.7, 272)[None, :, None], 0, 1).astype(np.float32)
    whole = DefocusPredictor(model, NORMALIZED).predict_map(image)
    calls = []
    tiled = DefocusPredictor(model, NORMALIZED, tile=128, margin=32, tile_batch=2).predict_map(
        image, progress=lambda done, total: calls.append((done, total)))
    assert tiled.shape == whole.shape == (160, 272)
    count = plan_tiles(160, 272, 128, 32).count
    assert count > 2 and calls[0] == (0, count) and calls[-1] == (count, count)
    assert len(calls) == 1 + -(-count // 2)  # announced, then two windows per call
    difference = np.abs(tiled - whole)
    assert difference.mean() < 0.1 * whole.std() and difference.max() < 0.1


def test_stop_callback_interrupts_between_tiles(checkpoint):
    predictor = DefocusPredictor(checkpoint[1], NORMALIZED, tile=64, margin=16)
    seen = []
    with pytest.raises(InferenceInterrupted):
        predictor.predict_map(np.zeros((96, 96, 3), np.float32), progress=lambda d, t: seen.append(d), stop=lambda: len(seen) >= 3)
    assert seen == [0, 1, 2]


def test_max_side_rescales_sigma_and_its_colour_scale_to_full_resolution(checkpoint):
    _, model = checkpoint
    image = np.random.default_rng(1).random((96, 128, 3), dtype=np.float32)
    direct = DefocusPredictor(model, NORMALIZED)
    small = DefocusPredictor(model, NORMALIZED, max_side=64)
    prediction = small.predict(image)
    assert prediction.sigma.shape == (96, 128)
    assert prediction.scale == 0.5 and prediction.sigma_limit == pytest.approx(14.0)
    from skimage.transform import resize

    half = resize(image, (48, 64), anti_aliasing=True, preserve_range=True).astype(np.float32)
    expected = NORMALIZED.to_sigma(direct.predict_map(half)) * 2.0  # σ doubles at twice the size
    assert prediction.sigma.mean() == pytest.approx(expected.mean(), rel=0.01)


def test_tiny_images_are_mirrored_up_to_the_size_b_needs(checkpoint):
    predictor = DefocusPredictor(checkpoint[1], NORMALIZED)
    for shape in [(10, 10, 3), (1, 1, 3), (20, 64, 3)]:
        sigma = predictor.predict_sigma(np.full(shape, 0.5, np.float32))
        assert sigma.shape == shape[:2] and np.isfinite(sigma).all()


def test_bf16_stays_close_to_fp32(checkpoint, tmp_path):
    from dmenet.inference.precision import resolve_precision

    image = np.random.default_rng(2).random((64, 96, 3), dtype=np.float32)
    fp32 = DefocusPredictor.from_weights(checkpoint[0], precision="fp32")
    bf16 = DefocusPredictor.from_weights(checkpoint[0], precision="bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    difference = np.abs(fp32.predict_sigma(image) - bf16.predict_sigma(image))
    assert 0 < difference.mean() < 0.05 * 7 and difference.max() < 0.25 * 7
    assert resolve_precision("auto")[0] in ("fp32", "bf16")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16")


def _odd_inputs(folder, shared_data):
    """Real photos plus the awkward kinds users have: 16-bit grey, RGBA, EXIF-rotated, corrupt."""
    source = shared_data / "cuhk_train" / "image"
    photo = Image.open(source / "out_of_focus0002.jpg").resize((120, 80))
    photo.save(folder / "photo.jpg")
    grey16 = (np.asarray(photo.convert("L"), np.uint16) * 257)
    Image.fromarray(grey16).save(folder / "grey16.png")
    photo.convert("RGBA").save(folder / "alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    photo.save(folder / "rotated.jpg", exif=exif)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")


def test_infer_cli_writes_every_output_and_reports_the_corrupt_file(checkpoint, tmp_path, shared_data, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _odd_inputs(inputs, shared_data)
    (inputs / "notes.txt").write_text("not a photo")
    out = tmp_path / "out"
    code = infer.main([str(inputs), "--weights", str(checkpoint[0]), "-o", str(out), "--npy",
                       "--mask-threshold", "1.0", "--figure", "--quiet"])
    assert code == 1  # one input failed
    summary = json.loads((out / "summary.json").read_text())
    assert [f["input"].rsplit("/", 1)[1] for f in summary["failures"]] == ["corrupt.jpg"]
    assert summary["precision"] in ("fp32", "bf16") and summary["precision_reason"]
    captured = capsys.readouterr()
    assert captured.err.count("corrupt.jpg") == 1  # said once, with the file and what to do
    assert "re-export it as PNG or JPEG" in captured.err
    assert "notes.txt: not an image (.txt), skipped" in captured.err
    assert captured.out.count("Device:") == 1
    for stem in ("photo", "grey16", "alpha", "rotated"):
        for suffix in ("_sigma.png", "_sigma.npy", "_defocus.png", "_mask.png", "_figure.png"):
            assert (out / f"{stem}{suffix}").is_file(), stem + suffix
        sigma = np.load(out / f"{stem}_sigma.npy")
        stored = read_array(out / f"{stem}_sigma.png")
        assert stored.dtype == np.uint16
        np.testing.assert_allclose(stored / 1000.0, sigma, atol=5e-4)
        mask = read_array(out / f"{stem}_mask.png")
        np.testing.assert_array_equal(mask == 255, sigma > 1.0)
    assert np.load(out / "rotated_sigma.npy").shape == (120, 80)  # EXIF orientation applied
    assert np.load(out / "photo_sigma.npy").shape == (80, 120)
    assert Image.open(out / "photo_sigma.png").text["dmenet:unit"] == "sigma_px = value / 1000"


def test_sigma_beyond_16_bits_gets_a_smaller_png_scale_and_nothing_is_lost(checkpoint, tmp_path, capsys):
    from dmenet.inference.batch import OutputOptions, write_outputs
    from dmenet.inference.tiling import Prediction

    sigma = np.linspace(0, 137.1, 64 * 48, dtype=np.float32).reshape(48, 64)  # --max-side 256 on a big photo
    prediction = Prediction(sigma, scale=1 / 24, sigma_limit=7.0 * 24, tiles=1)
    image = np.zeros((48, 64, 3), np.float32)
    files, notes, scale = write_outputs(tmp_path, "auto", image, prediction, NORMALIZED, OutputOptions(write_npy=True))
    assert scale == 200 and "auto_sigma.png" in files and "σ × 200" in notes[0]
    assert Image.open(tmp_path / "auto_sigma.png").text["dmenet:unit"] == "sigma_px = value / 200"
    np.testing.assert_allclose(read_array(tmp_path / "auto_sigma.png") / 200.0, sigma, atol=0.003)

    from dmenet.inference.batch import OutputError

    with pytest.raises(OutputError, match=r"fixed_sigma.png not written.*--png-scale 200") as raised:
        write_outputs(tmp_path, "fixed", image, prediction, NORMALIZED, OutputOptions(png_scale=1000, write_npy=True))
    assert raised.value.files == ["fixed_sigma.npy", "fixed_defocus.png"]
    assert (tmp_path / "fixed_sigma.npy").is_file() and not (tmp_path / "fixed_sigma.png").exists()


def test_max_side_run_states_its_png_scale(checkpoint, tmp_path, capsys):
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (800, 1200, 3), dtype=np.uint8)).save(tmp_path / "big.jpg")
    out = tmp_path / "out"
    assert infer.main([str(tmp_path / "big.jpg"), "--weights", str(checkpoint[0]), "-o", str(out), "--npy",
                       "--max-side", "32", "--quiet", "--precision", "fp32"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    (record,) = summary["images"]
    scale = record["sigma_png_scale"]
    sigma = np.load(out / "big_sigma.npy")
    assert sigma.max() * scale <= 65535 and record["inference_scale"] == pytest.approx(32 / 1200)
    assert Image.open(out / "big_sigma.png").text["dmenet:unit"] == f"sigma_px = value / {scale:g}"
    np.testing.assert_allclose(read_array(out / "big_sigma.png") / scale, sigma, atol=1 / scale)


def test_infer_without_weights_explains_how_to_get_them(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DMENET_WEIGHTS", raising=False)
    Image.new("RGB", (64, 64)).save(tmp_path / "a.png")
    assert infer.main([str(tmp_path / "a.png"), "-o", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "No weights given" in error and "--weights" in error and "train.py --demo" in error


def test_infer_rejects_inputs_that_do_not_exist(checkpoint, tmp_path, capsys):
    assert infer.main([str(tmp_path / "nothing*.jpg"), "--weights", str(checkpoint[0])]) == 2
    assert "no such file" in capsys.readouterr().err


def _cli_environment(**settings):
    import os

    environment = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "DMENET_VERBOSE")}
    environment["PYTHONPATH"] = str(REPOSITORY)
    return {**environment, **settings}


@pytest.mark.parametrize("onednn", ["0", "1"])
def test_cli_starts_quietly_and_names_the_device_once(checkpoint, tmp_path, onednn):
    """No TensorFlow start-up lines (cuInit failures, oneDNN notices) reach the user, oneDNN on or off.

    oneDNN is on by default only on AVX512-BF16/AMX CPUs, where TensorFlow prints its notice before
    its logging starts; forcing both settings makes this fail on any machine if the noise comes back.
    """
    Image.fromarray(np.full((40, 48, 3), 128, np.uint8)).save(tmp_path / "tiny.png")
    run = subprocess.run([sys.executable, str(REPOSITORY / "infer.py"), str(tmp_path / "tiny.png"), "--weights",
                          str(checkpoint[0]), "-o", str(tmp_path / "out"), "--quiet"],
                         capture_output=True, text=True, env=_cli_environment(TF_ENABLE_ONEDNN_OPTS=onednn), timeout=600)
    assert run.returncode == 0, run.stderr
    for noise in ("cuInit", "oneDNN", "E0000", "I0000", "W0000", "absl::InitializeLog", "Traceback"):
        assert noise not in run.stderr and noise not in run.stdout, noise
    assert run.stderr.strip() == ""
    device_lines = [line for line in run.stdout.splitlines() if line.startswith("Device:")]
    assert len(device_lines) == 1 and ("CPU" in device_lines[0] or "GPU" in device_lines[0])
    assert (tmp_path / "out" / "tiny_sigma.png").is_file()


def test_ctrl_c_on_a_tiled_photo_stops_at_once_with_one_line(checkpoint, tmp_path):
    import re
    import threading

    Image.fromarray(np.random.default_rng(5).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    process = subprocess.Popen([sys.executable, str(REPOSITORY / "infer.py"), str(tmp_path / "big.png"), "--weights",
                                str(checkpoint[0]), "-o", str(tmp_path / "out"), "--tile", "256", "--margin", "32"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_cli_environment(),
                               # as in a terminal: a test run started in the background inherits SIGINT ignored
                               # (POSIX shells do that to background jobs), and Python then keeps ignoring it
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    streams = {"stdout": [], "stderr": []}

    def drain(name):
        for chunk in iter(lambda: getattr(process, name).read(1), ""):
            streams[name].append(chunk)

    readers = [threading.Thread(target=drain, args=(name,), daemon=True) for name in streams]
    for reader in readers:
        reader.start()
    # Interrupt in the middle of the run: after the first tile is done (B loaded and compiled).
    deadline = time.monotonic() + 300
    while not re.search(r"\b[1-9]\d*/\d+ tiles", "".join(streams["stderr"])):
        assert process.poll() is None and time.monotonic() < deadline, "".join(streams["stderr"])[-2000:]
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    sent = time.perf_counter()
    process.wait(timeout=120)
    assert time.perf_counter() - sent < 5.0
    for reader in readers:
        reader.join(10)
    stdout, stderr = "".join(streams["stdout"]), "".join(streams["stderr"])
    assert stdout.startswith("Device:")
    assert process.returncode == 130
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert stderr.count("interrupted:") == 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["images"] == []


def test_park17_and_the_comparison_figure_from_infer_cli(checkpoint, tmp_path, capsys):
    from skimage.data import coffee

    from dmenet.files.images import write_png
    from dmenet.park17.network import build_patch_classifier
    from dmenet.weights.park17 import save_park17_classifier

    park_weights = tmp_path / "park.weights.h5"
    save_park17_classifier(build_patch_classifier(), park_weights)
    write_png(tmp_path / "photo.png", coffee()[::3, ::3])
    out = tmp_path / "park"
    assert infer.main([str(tmp_path / "photo.png"), "--method", "park17", "--weights", str(park_weights), "-o", str(out),
                       "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "park17" and summary["images"][0]["sigma_px"]["max"] > 0.4
    both = tmp_path / "both"
    assert infer.main([str(tmp_path / "photo.png"), "--weights", str(checkpoint[0]), "--compare-park17", str(park_weights),
                       "-o", str(both), "--quiet"]) == 0
    for name in ("photo_sigma.png", "photo_park17_sigma.png", "photo_park17_defocus.png", "photo_compare.png"):
        assert (both / name).is_file(), name
    summary = json.loads((both / "summary.json").read_text())
    assert summary["method"] == "dmenet" and summary["compared_with"]["method"] == "park17"
    assert infer.main([str(tmp_path / "photo.png"), "--method", "park17", "--compare-park17", "-o", str(both)]) == 2
    assert "--compare-park17 goes with --method dmenet" in capsys.readouterr().err


def test_a_text_file_among_the_photos_is_reported_before_any_model_loads(tmp_path, capsys):
    (tmp_path / "notes.jpg").write_text("a text file with a photo's name")
    # The weights do not exist either: the input is checked first, so that is what the user hears.
    assert infer.main([str(tmp_path / "notes.jpg"), "--weights", str(tmp_path / "missing.weights.h5")]) == 2
    error = capsys.readouterr().err
    assert "notes.jpg: not a readable image" in error and "missing.weights.h5" not in error


def test_missing_dmenet_weights_name_the_method_that_needs_none(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DMENET_WEIGHTS", raising=False)
    Image.new("RGB", (64, 64)).save(tmp_path / "a.png")
    assert infer.main([str(tmp_path / "a.png"), "-o", str(tmp_path / "out")]) == 2
    assert "--method park17" in capsys.readouterr().err


def test_a_photo_given_as_park17_weights_is_named_in_one_line(tmp_path, capsys):
    Image.new("RGB", (64, 64)).save(tmp_path / "a.jpg")
    assert infer.main([str(tmp_path / "a.jpg"), "--method", "park17", "--weights", str(tmp_path / "a.jpg"),
                       "-o", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "not a Caffe model (it looks like a JPEG image)" in error
    assert "wire type" not in error and "DHDE_model.caffemodel" in error


def test_stage_progress_names_stages_and_estimates_only_from_a_finished_photo(tmp_path, capsys):
    from dmenet.inference.batch import StageProgress

    stages = ("edges", "matting_solve", "weighted_median")
    progress = StageProgress("park17", show_after=0)
    for photo, pixels in (("first.jpg", 1000), ("second.jpg", 4000)):
        progress.start(pixels)
        for done, stage in enumerate(stages):
            progress.show(tmp_path / photo, done, len(stages), stage)
            time.sleep(0.05 if stage != "matting_solve" else 0.3)
        progress.show(tmp_path / photo, len(stages), len(stages), "done")
        progress.close()
        text = capsys.readouterr().err
        assert "matting solve" in text and "stages" in text and "tiles" not in text
        if photo == "first.jpg":
            assert "left" not in text  # nothing measured yet: no promise
        else:
            # four times the pixels of a photo that took ~0.4 s: about 2 s left at the start
            assert "about 2 s left" in text and "under a second left" in text



def test_stage_progress_shows_nothing_for_a_photo_done_sooner_than_its_delay(tmp_path, capsys):
    from dmenet.inference.batch import StageProgress

    progress = StageProgress("zhuo11", show_after=0.2)
    progress.start(1000)
    for done, stage in enumerate(("edges", "propagation_solve")):
        progress.show(tmp_path / "small.jpg", done, 2, stage)
    progress.show(tmp_path / "small.jpg", 2, 2, "done")
    progress.close()
    assert capsys.readouterr().err == "" and progress.previous[1].keys() == {"edges", "propagation_solve"}
    progress.start(1000)
    progress.show(tmp_path / "large.jpg", 0, 2, "edges")
    time.sleep(0.25)
    progress.show(tmp_path / "large.jpg", 1, 2, "propagation_solve")  # 0.25 s into the photo: the line appears
    progress.close()
    assert "zhuo11 on large.jpg: 1/2 stages" in capsys.readouterr().err
