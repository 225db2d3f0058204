"""Inference: tiling, rescaling, and infer.py on real and broken photos."""
import json

import numpy as np
import pytest
from PIL import Image

import infer
from dmenet.checkpoints import save_blur_net
from dmenet.encoding import NORMALIZED
from dmenet.image_io import read_array
from dmenet.inference import DefocusPredictor, ImageTooSmallError, _tile_starts
from dmenet.networks.blur_net import build_blur_net
from dmenet.weights import load_official_npz
from tests import official_graph


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """B with non-trivial random weights, in our checkpoint format."""
    folder = tmp_path_factory.mktemp("weights")
    model = build_blur_net()
    np.savez(folder / "random.npz", **official_graph.random_checkpoint(seed=3))
    load_official_npz(model, folder / "random.npz")
    return save_blur_net(model, folder / "b.weights.h5", NORMALIZED), model


def test_tiles_cover_the_image_with_the_requested_overlap():
    for length, tile, overlap in [(1000, 256, 64), (257, 256, 32), (4000, 1024, 128)]:
        starts = _tile_starts(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] + tile == length
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


def test_tiled_prediction_agrees_with_whole_image(checkpoint):
    _, model = checkpoint
    image = np.random.default_rng(0).random((160, 272, 3), dtype=np.float32)
    image = np.clip(image * 0.3 + np.linspace(0, 0.7, 272)[None, :, None], 0, 1).astype(np.float32)
    whole = DefocusPredictor(model, NORMALIZED).predict_map(image)
    tiled = DefocusPredictor(model, NORMALIZED, tile=128, overlap=48).predict_map(image)
    assert tiled.shape == whole.shape == (160, 272)
    difference = np.abs(tiled - whole)
    assert difference.mean() < 0.1 * whole.std() and difference.max() < 0.1


def test_max_side_rescales_sigma_to_full_resolution(checkpoint):
    _, model = checkpoint
    image = np.random.default_rng(1).random((96, 128, 3), dtype=np.float32)
    direct = DefocusPredictor(model, NORMALIZED)
    small = DefocusPredictor(model, NORMALIZED, max_side=64)
    sigma = small.predict_sigma(image)
    assert sigma.shape == (96, 128)
    from skimage.transform import resize

    half = resize(image, (48, 64), anti_aliasing=True, preserve_range=True).astype(np.float32)
    expected = NORMALIZED.to_sigma(direct.predict_map(half)) * 2.0  # σ doubles at twice the size
    assert sigma.mean() == pytest.approx(expected.mean(), rel=0.01)


def test_too_small_image_is_refused(checkpoint):
    with pytest.raises(ImageTooSmallError, match="at least 32"):
        DefocusPredictor(checkpoint[1], NORMALIZED).predict_map(np.zeros((20, 64, 3), np.float32))


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
    out = tmp_path / "out"
    code = infer.main([str(inputs), "--weights", str(checkpoint[0]), "-o", str(out), "--npy",
                       "--mask-threshold", "1.0", "--figure", "--quiet"])
    assert code == 1  # one input failed
    summary = json.loads((out / "summary.json").read_text())
    assert [f["input"].rsplit("/", 1)[1] for f in summary["failures"]] == ["corrupt.jpg"]
    assert "corrupt.jpg" in capsys.readouterr().err
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


def test_infer_without_weights_explains_how_to_get_them(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DMENET_WEIGHTS", raising=False)
    Image.new("RGB", (64, 64)).save(tmp_path / "a.png")
    assert infer.main([str(tmp_path / "a.png"), "-o", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "No weights given" in error and "--weights" in error and "train.py --demo" in error


def test_infer_rejects_inputs_that_do_not_exist(checkpoint, tmp_path, capsys):
    assert infer.main([str(tmp_path / "nothing*.jpg"), "--weights", str(checkpoint[0])]) == 2
    assert "no such file" in capsys.readouterr().err
