"""evaluate.py end to end: real CUHK masks with a real blur measure, broken inputs, RTF, SYNDOF, --weights."""
import csv
import json
import os

import numpy as np
import pytest
import scipy.io
from scipy import ndimage

from dmenet.cli import evaluate
from dmenet.files import images as image_io

STEMS = ["out_of_focus0003", "out_of_focus0042", "out_of_focus0117", "out_of_focus0250", "out_of_focus0404",
         "out_of_focus0500"]


def gradient_blur_score(image):
    """A classic hand-made blur measure: low local gradient energy = blurred. Returns uint8, 255 = blurred."""
    grey = image.mean(axis=2)
    energy = ndimage.uniform_filter(ndimage.sobel(grey, 0) ** 2 + ndimage.sobel(grey, 1) ** 2, 31)
    sharpness = np.sqrt(np.maximum(energy, 0))
    return np.round(255 * (1 - np.clip(sharpness / 0.5, 0, 1))).astype(np.uint8)


@pytest.fixture(scope="module")
def cuhk_predictions(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("cuhk")
    (root / "split.txt").write_text("\n".join(STEMS) + "\n")
    for stem in STEMS:
        image = image_io.read_image(shared_data / "cuhk_train" / "image" / f"{stem}.jpg")
        image_io.write_png(root / "grad" / f"{stem}.png", gradient_blur_score(image))
    return root


def run_cli(capsys, *args):
    try:
        code = evaluate.main([str(arg) for arg in args] + ["--no-progress"])
    except SystemExit as exit:  # argparse's usage errors
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cuhk_scores_match_a_direct_computation(shared_data, cuhk_predictions, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(capsys, "--dataset", "cuhk", "--data-root", shared_data / "cuhk_train",
                                   "--split-file", cuhk_predictions / "split.txt",
                                   "--predictions", cuhk_predictions / "grad", "--pred-unit", "score", "--out", out)
    assert code == 0, stderr
    run = json.loads((out / "summary.json").read_text())["runs"][0]
    protocol, metrics = run["protocol"], run["metrics"]
    assert protocol["dataset"] == "cuhk" and protocol["split"] == "file:split.txt" and protocol["images"] == 6
    assert "exact" in protocol["threshold_grid"] and "maximising pooled pixel accuracy" in protocol["best_threshold"]

    # Independent path: every pixel of the set in two arrays, each threshold tested directly.
    scores, labels = [], []
    for stem in STEMS:
        scores.append(image_io.read_mask(cuhk_predictions / "grad" / f"{stem}.png").ravel() / 255.0)
        labels.append(image_io.read_mask(shared_data / "cuhk_train" / "gt" / f"{stem}.png").ravel() == 255)
    scores, labels = np.concatenate(scores), np.concatenate(labels)
    thresholds = np.append(np.unique(scores), np.inf)
    accuracy, precision, recall = [], [], []
    for t in thresholds:
        predicted = scores >= t
        tp = np.count_nonzero(predicted & labels)
        fp = np.count_nonzero(predicted & ~labels)
        accuracy.append(np.mean(predicted == labels))
        precision.append(tp / (tp + fp) if tp + fp else 1.0)
        recall.append(tp / labels.sum())
    ap = sum((recall[k] - recall[k + 1]) * precision[k] for k in range(len(thresholds) - 1))
    best = int(np.argmax(accuracy))
    assert metrics["accuracy_at_best_threshold"] == pytest.approx(accuracy[best], abs=1e-12)
    assert metrics["best_threshold"] == pytest.approx(thresholds[best])
    assert metrics["average_precision"] == pytest.approx(ap, abs=1e-12)
    assert metrics["accuracy_at_fixed_threshold"] == pytest.approx(np.mean((scores >= 0.5) == labels))
    assert metrics["blurred_fraction"] == pytest.approx(labels.mean())
    assert 0.55 < metrics["average_precision"] < 1 and metrics["average_precision"] > labels.mean()
    assert run["warnings"] == []

    rows = list(csv.DictReader((out / "per_image_grad.csv").open()))
    assert [row["stem"] for row in rows] == STEMS
    first = slice(0, int(rows[0]["pixels"]))
    assert float(rows[0]["accuracy"]) == pytest.approx(np.mean((scores[first] >= 0.5) == labels[first]))
    for name in ("pr_curve.png", "sheet_grad.png"):
        assert image_io.read_array(out / name).shape[0] > 100
    assert "at the best threshold" in stdout

    # The same maps as the original scripts save them: input cropped to multiples of 16, files named
    # 0000.png ... in sorted order. --match-by order --size-mismatch crop scores the common region.
    released = tmp_path / "released"
    kept_scores, kept_labels, cropped = [], [], 0
    for index, stem in enumerate(STEMS):
        score = image_io.read_mask(cuhk_predictions / "grad" / f"{stem}.png")
        mask = image_io.read_mask(shared_data / "cuhk_train" / "gt" / f"{stem}.png") == 255
        height, width = score.shape[0] // 16 * 16, score.shape[1] // 16 * 16
        cropped += (height, width) != score.shape
        image_io.write_png(released / f"{index:04d}.png", score[:height, :width])
        kept_scores.append(score[:height, :width].ravel() / 255.0)
        kept_labels.append(mask[:height, :width].ravel())
    code, _, stderr = run_cli(capsys, "--dataset", "cuhk", "--data-root", shared_data / "cuhk_train",
                              "--split-file", cuhk_predictions / "split.txt", "--predictions", released,
                              "--pred-unit", "official", "--match-by", "order", "--size-mismatch", "crop",
                              "--out", tmp_path / "released_out")
    assert code == 0, stderr
    run = json.loads((tmp_path / "released_out" / "summary.json").read_text())["runs"][0]
    scores, labels = np.concatenate(kept_scores), np.concatenate(kept_labels)
    accuracy = [np.mean((scores >= t) == labels) for t in np.unique(scores)]
    assert run["metrics"]["accuracy_at_best_threshold"] == pytest.approx(max(accuracy), abs=1e-12)
    assert run["metrics"]["pixels"] == scores.size and run["protocol"]["size_adjusted_images"] == cropped > 0


def test_wrong_polarity_is_flagged(shared_data, cuhk_predictions, tmp_path, capsys):
    code, stdout, _ = run_cli(capsys, "--dataset", "cuhk", "--data-root", shared_data / "cuhk_train",
                              "--split-file", cuhk_predictions / "split.txt", "--mask-polarity", "sharp-white",
                              "--predictions", cuhk_predictions / "grad", "--pred-unit", "score",
                              "--out", tmp_path, "--sheet-count", "1")
    assert code == 0
    run = json.loads((tmp_path / "summary.json").read_text())["runs"][0]
    assert run["metrics"]["average_precision"] < run["metrics"]["blurred_fraction"]
    assert "polarity" in run["warnings"][0] and "WARNING" in stdout


def make_folder_set(root, count=3, size=(40, 56)):
    rng = np.random.default_rng(3)
    for index in range(count):
        image_io.write_png(root / "image" / f"img{index}.png", rng.integers(0, 255, (*size, 3), dtype=np.uint8))
        mask = np.zeros(size, np.uint8)
        mask[:, : size[1] // 2 + index] = 255
        image_io.write_png(root / "gt" / f"img{index}.png", mask)


def test_broken_inputs_give_clear_errors(tmp_path, capsys):
    make_folder_set(tmp_path / "set")
    predictions = tmp_path / "pred"
    for index in range(3):
        image_io.write_png(predictions / f"img{index}.png", np.zeros((40, 56), np.uint8))
    base = ["--dataset", "folder", "--data-root", tmp_path / "set", "--out", tmp_path / "out"]

    code, _, stderr = run_cli(capsys, *base, "--predictions", predictions)
    assert code == 2 and "--mask-polarity" in stderr
    base += ["--mask-polarity", "blurred-white"]

    (tmp_path / "set" / "gt" / "img1.png").unlink()
    (tmp_path / "set" / "gt" / "img2.png").unlink()
    code, _, stderr = run_cli(capsys, *base, "--predictions", predictions)
    assert code == 2 and "images without ground truth" in stderr and "img1.png" in stderr and "img2.png" in stderr
    make_folder_set(tmp_path / "set")

    image_io.write_png(predictions / "img1.png", np.zeros((20, 28), np.uint8))
    (predictions / "img2.png").unlink()
    code, _, stderr = run_cli(capsys, *base, "--predictions", predictions)
    assert code == 2 and "img2.png|.npy" in stderr and "img1.png is 28x20" in stderr
    code, _, stderr = run_cli(capsys, *base, "--predictions", predictions, tmp_path / "missing")
    assert code == 2 and "does not exist" in stderr
    assert not (tmp_path / "out" / "summary.json").exists()

    image_io.write_png(predictions / "img2.png", np.zeros((40, 56), np.uint8))
    code, _, stderr = run_cli(capsys, *base, "--predictions", predictions, "--size-mismatch", "resize")
    assert code == 0, stderr
    code, _, stderr = run_cli(capsys, "--dataset", "rtf", "--data-root", tmp_path / "set", "--predictions",
                              predictions, "--pred-unit", "score")
    assert code == 2 and "regression" in stderr


def test_rtf_protocol_on_mat_files(tmp_path, capsys):
    rng = np.random.default_rng(5)
    radius = rng.uniform(0.5, 6.0, (30, 40))
    (tmp_path / "gt").mkdir()
    for index in range(2):
        scipy.io.savemat(tmp_path / "gt" / f"{index + 1:02d}.mat", {"blurMap": radius})
        image_io.write_png(tmp_path / "image" / f"{index + 1:02d}.png", np.zeros((30, 40, 3), np.uint8))
    # The official decoding of an 8-bit output v: sigma = max(0, (15 v - 1) / 2); maps one pixel smaller.
    stored = rng.integers(0, 256, (29, 40)).astype(np.uint8)
    image_io.write_png(tmp_path / "pred" / "01.png", stored)
    image_io.write_png(tmp_path / "pred" / "02.png", stored)
    code, stdout, stderr = run_cli(capsys, "--dataset", "rtf", "--data-root", tmp_path, "--predictions",
                                   tmp_path / "pred", "--pred-unit", "official", "--out", tmp_path / "out")
    assert code == 0, stderr
    sigma = np.clip(np.maximum(0, (15 * (stored / 255.0) - 1) / 2), 0, 3.275) / 3.275
    table = dict(zip(np.arange(0.5, 6.01, 0.25).round(2), [0.3, 0.5, 0.65, 0.775, 0.875, 0.975, 1.125, 1.275, 1.375,
                 1.525, 1.65, 1.8, 1.925, 2.05, 2.2, 2.325, 2.45, 2.6, 2.725, 2.875, 3.0, 3.15, 3.275]))
    truth = np.vectorize(lambda r: table[round(round(r * 4) / 4, 2)])(radius[:29]) / 3.275
    run = json.loads((tmp_path / "out" / "summary.json").read_text())["runs"][0]
    assert run["metrics"]["mse"] == pytest.approx(np.mean((sigma - truth) ** 2))
    assert run["metrics"]["mae"] == pytest.approx(np.mean(np.abs(sigma - truth)))
    assert "3.275" in run["protocol"]["conversion"] and (tmp_path / "out" / "sheet_pred.png").exists()


def test_syndof_sample_against_its_own_maps(shared_data, tmp_path, capsys):
    root = shared_data / "syndof_official_sample"
    sample = next((root / "blur_map").iterdir())
    sigma = image_io.read_mask(sample).astype(np.float32) / 10
    np.save(tmp_path / f"{sample.stem}.npy", sigma + 0.7)
    code, _, stderr = run_cli(capsys, "--dataset", "syndof", "--data-root", root, "--predictions", tmp_path,
                              "--labels", "shifted", "--out", tmp_path / "out")
    assert code == 0, stderr
    run = json.loads((tmp_path / "out" / "summary.json").read_text())["runs"][0]
    expected = np.clip(sigma + 0.7, 0, 7) / 7 - sigma / 7
    assert run["metrics"]["mae"] == pytest.approx(np.mean(np.abs(expected)), rel=1e-5)
    assert run["metrics"]["mse"] == pytest.approx(np.mean(expected**2), rel=1e-5)
    assert "sigma_max = 7" in run["protocol"]["conversion"] and "unit sigma inferred" in run["protocol"]["inferred"][0]


def test_weights_run_network_b_and_resume(tmp_path, capsys):
    pytest.importorskip("dmenet.inference.tiling")
    import keras

    from dmenet.inference.tiling import DefocusPredictor
    from dmenet.networks.blur_net import build_blur_net
    from dmenet.units import NORMALIZED
    from dmenet.weights.checkpoints import save_blur_net

    keras.utils.set_random_seed(0)
    weights = tmp_path / "random.weights.h5"
    save_blur_net(build_blur_net(), weights, NORMALIZED)
    make_folder_set(tmp_path / "set", count=2, size=(40, 56))
    args = ["--dataset", "folder", "--mask-polarity", "blurred-white", "--data-root", tmp_path / "set",
            "--weights", weights, "--out", tmp_path / "out"]
    code, stdout, stderr = run_cli(capsys, *args)
    assert code == 0, stderr
    folder = tmp_path / "out" / "predictions_random.weights.h5"
    sigma = np.load(folder / "img0.npy")
    predictor = DefocusPredictor.from_weights(weights)
    expected = predictor.predict_sigma(image_io.read_image(tmp_path / "set" / "image" / "img0.png"))
    np.testing.assert_allclose(sigma, expected, atol=1e-5)
    run = json.loads((tmp_path / "out" / "summary.json").read_text())["runs"][0]
    assert run["protocol"]["unit"] == "sigma" and run["protocol"]["binary_score"] == "sigma / 7"

    stamp = (folder / "img0.npy").stat().st_mtime_ns
    assert run_cli(capsys, *args)[0] == 0  # resumes: existing maps are reused, not recomputed
    assert (folder / "img0.npy").stat().st_mtime_ns == stamp
    os.utime(weights, ns=(stamp, stamp + 10**9))  # "retrained": the cached maps no longer match the file
    code, _, stderr = run_cli(capsys, *args)
    assert code == 2 and "holds maps from other weights" in stderr
