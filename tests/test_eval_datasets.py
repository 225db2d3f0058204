"""Benchmark readers: splits, polarity, pairing errors, RTF .mat (v5 and v7.3), SYNDOF, prediction folders."""
import h5py
import numpy as np
import pytest
import scipy.io

from dmenet.evaluation import datasets
from dmenet.evaluation.datasets import DatasetError
from dmenet.evaluation.predictions import PredictionFolder
from dmenet.files import images as image_io


def make_mask_set(root, numbers, size=(12, 16), prefix="out_of_focus", blurred_white=True):
    """image/<stem>.png + gt/<stem>.png; the left half of each image is 'blurred'."""
    rng = np.random.default_rng(0)
    blurred = np.zeros(size, bool)
    blurred[:, : size[1] // 2] = True
    for number in numbers:
        stem = f"{prefix}{number:04d}"
        image_io.write_png(root / "image" / f"{stem}.png", rng.integers(0, 255, (*size, 3), dtype=np.uint8))
        mask = blurred if blurred_white else ~blurred
        image_io.write_png(root / "gt" / f"{stem}.png", (mask * 255).astype(np.uint8))
    return blurred


def test_cuhk_named_splits_from_number_ranges(tmp_path):
    make_mask_set(tmp_path, [1, 2, 504, 505, 704, 3])
    every = datasets.open_benchmark("cuhk", tmp_path, split="all")
    assert [s.stem[-4:] for s in every.samples] == ["0001", "0002", "0003", "0504", "0505", "0704"]
    with pytest.raises(DatasetError) as error:
        datasets.open_benchmark("cuhk", tmp_path, split="dmenet-test")
    message = str(error.value)
    assert "0505-0704" in message and "(198)" in message and "0506" in message and "0505\n" not in message
    make_mask_set(tmp_path, range(505, 705), size=(4, 4))
    test = datasets.open_benchmark("cuhk", tmp_path, split="dmenet-test")
    assert len(test.samples) == 200 and test.samples[0].stem == "out_of_focus0505"
    assert test.protocol()["split"] == "dmenet-test"
    make_mask_set(tmp_path, [505, 506], size=(4, 4), prefix="motion")  # CUHK's motion-blur part is ignored
    assert datasets.open_benchmark("cuhk", tmp_path, split="dmenet-test").samples[1].stem == "out_of_focus0506"
    with pytest.raises(DatasetError, match="share the number"):
        datasets.select_split(["a0505", "b0505"], "dmenet-test")


def test_split_file_and_missing_entries(tmp_path):
    make_mask_set(tmp_path, [1, 2, 3])
    (tmp_path / "list.txt").write_text("# BTBNet-style list\nout_of_focus0003\n\nout_of_focus0001.jpg\n")
    dataset = datasets.open_benchmark("cuhk", tmp_path, split_file=tmp_path / "list.txt")
    assert [s.stem for s in dataset.samples] == ["out_of_focus0003", "out_of_focus0001"]
    (tmp_path / "bad.txt").write_text("out_of_focus0001\nout_of_focus0009\n")
    with pytest.raises(DatasetError, match="out_of_focus0009"):
        datasets.open_benchmark("cuhk", tmp_path, split_file=tmp_path / "bad.txt")


def test_polarity_cuhk_blurred_white_dut_sharp_white(tmp_path):
    blurred = make_mask_set(tmp_path / "cuhk", [1])
    make_mask_set(tmp_path / "dut", [1], blurred_white=False)
    cuhk = datasets.open_benchmark("cuhk", tmp_path / "cuhk", split="all")
    dut = datasets.open_benchmark("dut", tmp_path / "dut")
    np.testing.assert_array_equal(cuhk.load_truth(cuhk.samples[0]), blurred)
    np.testing.assert_array_equal(dut.load_truth(dut.samples[0]), blurred)
    wrong = datasets.MaskDataset(tmp_path / "dut" / "gt", tmp_path / "dut" / "image", "blurred-white")
    np.testing.assert_array_equal(wrong.load_truth(wrong.samples[0]), ~blurred)
    with pytest.raises(DatasetError, match="polarity"):
        datasets.MaskDataset(tmp_path / "dut" / "gt", polarity="white")


def test_rgba_and_16bit_masks(tmp_path):
    make_mask_set(tmp_path, [1, 2])
    mask = image_io.read_mask(tmp_path / "gt" / "out_of_focus0001.png")
    rgba = np.dstack([mask, mask, mask, np.full_like(mask, 255)])
    from PIL import Image

    Image.fromarray(rgba).save(tmp_path / "gt" / "out_of_focus0001.png")
    image_io.write_png(tmp_path / "gt" / "out_of_focus0002.png", mask.astype(np.uint16) * 257)
    dataset = datasets.open_benchmark("cuhk", tmp_path, split="all")
    for sample in dataset.samples:
        np.testing.assert_array_equal(dataset.load_truth(sample), mask == 255)


def test_pairing_errors_list_every_file(tmp_path):
    make_mask_set(tmp_path, [1, 2, 3, 4])
    (tmp_path / "gt" / "out_of_focus0002.png").unlink()
    (tmp_path / "gt" / "out_of_focus0003.png").unlink()
    with pytest.raises(DatasetError) as error:
        datasets.open_benchmark("cuhk", tmp_path, split="all")
    assert "images without ground truth" in str(error.value)
    assert "out_of_focus0002.png" in str(error.value) and "out_of_focus0003.png" in str(error.value)

    make_mask_set(tmp_path, [2, 3])
    image_io.write_png(tmp_path / "gt" / "out_of_focus0001.png", np.zeros((12, 15), np.uint8))
    (tmp_path / "gt" / "out_of_focus0004.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError) as error:
        datasets.open_benchmark("cuhk", tmp_path, split="all")
    message = str(error.value)
    assert "out_of_focus0001.png: ground truth is 15x12 but its image out_of_focus0001.png is 16x12" in message
    assert "out_of_focus0004.png: not a readable image" in message

    (tmp_path / "image" / "out_of_focus0003.png").unlink()
    with pytest.raises(DatasetError, match="ground truth without an image"):
        datasets.open_benchmark("cuhk", tmp_path, split="all")
    with pytest.raises(DatasetError, match="does not exist"):
        datasets.open_benchmark("cuhk", tmp_path / "nowhere", split="all")


def write_mat_v73(path, **arrays):
    """A MATLAB v7.3 file: HDF5 with MATLAB's 512-byte header, matrices stored transposed."""
    with h5py.File(path, "w", userblock_size=512) as handle:
        for name, array in arrays.items():
            handle[name] = np.asarray(array).T
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .".ljust(116)
    with open(path, "r+b") as f:
        f.write(header + b"\x00" * 8 + b"\x00\x02" + b"IM")


def test_rtf_mat_v5_and_v73(tmp_path):
    radius = np.arange(12, dtype=np.float64).reshape(3, 4) / 2
    (tmp_path / "gt").mkdir()
    scipy.io.savemat(tmp_path / "gt" / "01.mat", {"blurMap": radius})
    write_mat_v73(tmp_path / "gt" / "02.mat", blurMap=radius)
    assert scipy.io.matlab.matfile_version(tmp_path / "gt" / "02.mat")[0] == 2  # really "v7.3" to scipy
    image_io.write_png(tmp_path / "image" / "01.png", np.zeros((3, 5, 3), np.uint8))  # sizes may differ
    image_io.write_png(tmp_path / "image" / "02.png", np.zeros((3, 4, 3), np.uint8))
    dataset = datasets.open_benchmark("rtf", tmp_path)
    for sample in dataset.samples:
        np.testing.assert_array_equal(dataset.load_truth(sample), radius)

    scipy.io.savemat(tmp_path / "gt" / "03.mat", {"depth": radius})
    with pytest.raises(DatasetError, match="no variable 'blurMap' \\(it holds depth\\)"):
        datasets.read_mat_blur_map(tmp_path / "gt" / "03.mat")
    (tmp_path / "gt" / "04.mat").write_bytes(b"garbage" * 40)
    with pytest.raises(DatasetError, match="not a readable MATLAB file"):
        datasets.read_mat_blur_map(tmp_path / "gt" / "04.mat")
    scipy.io.savemat(tmp_path / "gt" / "05.mat", {"blurMap": np.array([[np.nan, 1.0]])})
    with pytest.raises(DatasetError, match="NaN"):
        datasets.read_mat_blur_map(tmp_path / "gt" / "05.mat")


def test_syndof_official_sample(shared_data):
    root = shared_data / "syndof_official_sample"
    dataset = datasets.open_benchmark("syndof", root)
    assert len(dataset.samples) == 1 and dataset.sigma_max == 7.0
    sigma = dataset.load_truth(dataset.samples[0])
    assert sigma.shape == (497, 720) and 0 <= sigma.min() and sigma.max() == pytest.approx(7.0)
    norm = image_io.read_mask(next((root / "blur_map_norm").iterdir()))  # the generator's own σ/σ_max
    scale = np.iinfo(norm.dtype).max
    np.testing.assert_allclose(sigma / 7.0, norm / scale, atol=1.5 / scale + 0.01)


def test_prediction_folder_units_and_errors(tmp_path):
    make_mask_set(tmp_path, [1, 2])
    dataset = datasets.open_benchmark("cuhk", tmp_path, split="all")
    folder = tmp_path / "pred"
    sigma = np.linspace(0, 7, 12 * 16).reshape(12, 16)
    image_io.write_png(folder / "out_of_focus0001_s.png", np.round(sigma * 10).astype(np.uint16))
    np.save(folder / "out_of_focus0002_s.npy", sigma.astype(np.float32))
    as_sigma = PredictionFolder(folder, unit="sigma", scale=10, suffix="_s")
    np.testing.assert_allclose(as_sigma.sigma("out_of_focus0001"), sigma, atol=0.05)
    np.testing.assert_allclose(as_sigma.score("out_of_focus0001"), sigma / 7, atol=0.01)
    npy = PredictionFolder(folder, unit="sigma", suffix="_s")
    np.testing.assert_allclose(npy.sigma("out_of_focus0002"), sigma, atol=1e-6)
    official = PredictionFolder(folder, unit="official", scale=70, suffix="_s")  # values 0..1
    np.testing.assert_allclose(official.sigma("out_of_focus0001").max(), 7.0)
    assert PredictionFolder(folder, unit="score", suffix="_s", invert=True).score("out_of_focus0002").max() <= 0

    image_io.write_png(folder / "out_of_focus0001.png", np.zeros((12, 15), np.uint8))
    plain = PredictionFolder(folder, unit="score")
    with pytest.raises(DatasetError) as error:
        plain.check(dataset.samples, dataset.truth_size)
    assert "out_of_focus0002.png|.npy" in str(error.value) and "is 15x12" in str(error.value)
    truth = np.ones((12, 16), bool)
    resized = PredictionFolder(folder, unit="score", size_policy="resize")
    assert [a.shape for a in resized.scored_pair("out_of_focus0001", truth)] == [(12, 16), (12, 16)]
    cropped = PredictionFolder(folder, unit="score", size_policy="crop")
    assert [a.shape for a in cropped.scored_pair("out_of_focus0001", truth)] == [(12, 15), (12, 15)]
    assert cropped.describe()["size_adjusted_images"] == 1
    with pytest.raises(DatasetError, match="--size-mismatch"):
        plain.scored_pair("out_of_focus0001", truth)
    with pytest.raises(DatasetError, match="no σ unit"):
        plain.sigma("out_of_focus0001")

    image_io.write_png(folder / "out_of_focus0002.png", np.dstack([np.zeros((12, 16), np.uint8)] * 2 + [np.ones((12, 16), np.uint8)]))
    with pytest.raises(DatasetError, match="colour"):
        PredictionFolder(folder, unit="score").score("out_of_focus0002")
    np.save(folder / "bad.npy", np.array([[np.inf]]))
    with pytest.raises(DatasetError, match="NaN or infinite"):
        PredictionFolder(folder, unit="sigma").read_value("bad")
    with pytest.raises(DatasetError, match="unknown prediction unit"):
        PredictionFolder(folder, unit="px")


def test_prediction_folder_matched_by_sorted_order(tmp_path):
    """The original saved test maps as 0000.png, 0001.png, ... in the ground truth's sorted order."""
    make_mask_set(tmp_path, [7, 3, 5])
    dataset = datasets.open_benchmark("cuhk", tmp_path, split="all")
    for index, value in enumerate([10, 20, 30]):
        image_io.write_png(tmp_path / "pred" / f"{index:04d}.png", np.full((12, 16), value, np.uint8))
    by_name = PredictionFolder(tmp_path / "pred", unit="score")
    with pytest.raises(DatasetError, match="--match-by order"):
        by_name.check(dataset.samples, dataset.truth_size)
    by_order = PredictionFolder(tmp_path / "pred", unit="score", match="order")
    by_order.check(dataset.samples, dataset.truth_size)
    assert [by_order.score(f"out_of_focus000{n}")[0, 0] * 255 for n in (3, 5, 7)] == pytest.approx([10, 20, 30])
    image_io.write_png(tmp_path / "pred" / "0003.png", np.zeros((12, 16), np.uint8))
    with pytest.raises(DatasetError, match="holds 4 maps but the dataset has 3"):
        PredictionFolder(tmp_path / "pred", unit="score", match="order").check(dataset.samples, None)
