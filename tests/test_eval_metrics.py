"""Evaluation metrics against hand-computed cases and a straightforward loop implementation."""
import numpy as np
import pytest

from dmenet.evaluation import binary_metrics, regression_metrics
from dmenet.evaluation.binary_metrics import ThresholdCounts


def loop_reference(scores, labels, thresholds):
    """The textbook definitions, one threshold at a time (slow, obviously right)."""
    scores, labels = np.ravel(scores), np.ravel(labels).astype(bool)
    rows = []
    for t in list(thresholds) + [np.inf]:
        predicted = scores >= t
        tp = int(np.sum(predicted & labels))
        fp = int(np.sum(predicted & ~labels))
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / labels.sum() if labels.sum() else np.nan
        accuracy = np.mean(predicted == labels)
        rows.append((t, tp, fp, precision, recall, accuracy))
    ap = 0.0
    for (_, _, _, p, r, _), (_, _, _, _, r_next, _) in zip(rows[:-1], rows[1:]):
        ap += (r - r_next) * p
    return rows, ap


def test_hand_computed_four_pixels():
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    labels = np.array([0, 0, 1, 1])
    counts = ThresholdCounts.from_scores(scores, labels)
    np.testing.assert_array_equal(counts.thresholds, [0.1, 0.35, 0.4, 0.8, np.inf])
    np.testing.assert_array_equal(counts.true_positives, [2, 2, 1, 1, 0])
    np.testing.assert_array_equal(counts.false_positives, [2, 1, 1, 0, 0])
    np.testing.assert_allclose(counts.precision, [0.5, 2 / 3, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(counts.recall, [1.0, 1.0, 0.5, 0.5, 0.0])
    assert counts.average_precision() == pytest.approx(1 / 3 + 1 / 2)  # the scikit-learn docs' example: 0.8333
    assert counts.best_accuracy() == (pytest.approx(0.75), 0.35)  # 0.35 and 0.8 tie: the lower wins
    f, threshold = counts.best_f_measure()
    assert f == pytest.approx(1.3 * 0.5 / (0.3 + 0.5)) and threshold == 0.8
    assert binary_metrics.accuracy_at(scores, labels, 0.5) == 0.75
    assert binary_metrics.mask_mae(scores, labels) == pytest.approx((0.1 + 0.4 + 0.65 + 0.2) / 4)


def test_ties_constant_map_and_degenerate_masks():
    labels = np.array([1, 0, 1, 1, 0])
    constant = ThresholdCounts.from_scores(np.full(5, 0.3), labels)
    assert constant.average_precision() == pytest.approx(0.6)  # = blurred fraction
    assert constant.best_accuracy() == (pytest.approx(0.6), 0.3)

    no_blur = ThresholdCounts.from_scores(np.array([0.2, 0.9, 0.5]), np.zeros(3))
    assert np.isnan(no_blur.average_precision()) and np.isnan(no_blur.best_f_measure()[0])
    assert no_blur.best_accuracy() == (1.0, np.inf)  # predicting nothing blurred is right

    all_blur = ThresholdCounts.from_scores(np.array([0.2, 0.9, 0.5]), np.ones(3))
    assert all_blur.average_precision() == 1.0 and all_blur.best_accuracy() == (1.0, 0.2)

    metrics = binary_metrics.image_binary_metrics(np.full((4, 4), 0.7), np.zeros((4, 4)), 0.5)
    assert metrics.accuracy == 0.0 and metrics.best_accuracy == 1.0 and np.isnan(metrics.average_precision)
    assert metrics.mae == pytest.approx(0.7)


@pytest.mark.parametrize("levels", [3, 17, None])
def test_vectorised_counts_equal_loop(levels):
    rng = np.random.default_rng(levels or 0)
    scores = rng.random((23, 31))
    if levels:  # quantised maps produce many ties
        scores = np.round(scores * (levels - 1)) / (levels - 1)
    labels = rng.random((23, 31)) < 0.3 + 0.4 * scores  # informative but noisy
    counts = ThresholdCounts.from_scores(scores, labels)
    rows, ap = loop_reference(scores, labels, np.unique(scores))
    np.testing.assert_array_equal(counts.true_positives, [row[1] for row in rows])
    np.testing.assert_array_equal(counts.false_positives, [row[2] for row in rows])
    np.testing.assert_allclose(counts.precision, [row[3] for row in rows])
    np.testing.assert_allclose(counts.recall, [row[4] for row in rows])
    np.testing.assert_allclose(counts.accuracy, [row[5] for row in rows])
    assert counts.average_precision() == pytest.approx(ap)


def test_grid_counts_pool_like_concatenated_pixels():
    """Counting images on a shared grid and adding equals counting all pixels at once, for any grid."""
    rng = np.random.default_rng(1)
    images = [(rng.random((7, 9)), rng.random((7, 9)) < 0.5) for _ in range(4)]
    grid = np.linspace(0.05, 0.95, 13)  # thresholds that fall between score values
    pooled = sum((ThresholdCounts.from_scores(s, l, grid) for s, l in images[1:]),
                 ThresholdCounts.from_scores(*images[0], grid))
    all_scores = np.concatenate([s.ravel() for s, _ in images])
    all_labels = np.concatenate([l.ravel() for _, l in images])
    rows, ap = loop_reference(all_scores, all_labels, grid)
    np.testing.assert_array_equal(pooled.true_positives, [row[1] for row in rows])
    np.testing.assert_array_equal(pooled.false_positives, [row[2] for row in rows])
    assert pooled.average_precision() == pytest.approx(ap)
    with pytest.raises(ValueError, match="different threshold grids"):
        pooled + ThresholdCounts.from_scores(*images[0])


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        ThresholdCounts.from_scores(np.array([0.1, np.nan]), np.array([0, 1]))
    with pytest.raises(ValueError, match="mask has"):
        ThresholdCounts.from_scores(np.zeros(4), np.zeros(5))
    with pytest.raises(ValueError, match="ascending"):
        ThresholdCounts.from_scores(np.zeros(4), np.zeros(4), thresholds=[0.5, 0.2])


def test_rtf_radius_table_matches_nearest_lookup_loop():
    radii = np.concatenate([np.linspace(-1, 7, 801), regression_metrics.RTF_DISK_RADII,
                            (regression_metrics.RTF_DISK_RADII[:-1] + regression_metrics.RTF_DISK_RADII[1:]) / 2])
    expected = []
    for radius in radii:  # MATLAB: [~, i] = min(abs(table - r)), first index on ties
        expected.append(regression_metrics.RTF_GAUSSIAN_SIGMAS[np.argmin(np.abs(regression_metrics.RTF_DISK_RADII - radius))])
    np.testing.assert_array_equal(regression_metrics.rtf_radius_to_sigma(radii), expected)
    assert len(regression_metrics.RTF_DISK_RADII) == 23 and regression_metrics.RTF_SIGMA_MAX == 3.275
    assert regression_metrics.rtf_radius_to_sigma(0.625) == 0.3  # halfway between 0.5 and 0.75: the smaller
    assert regression_metrics.rtf_radius_to_sigma(1.0) == 0.65


def test_rtf_errors_clip_normalise_and_crop():
    truth = np.full((3, 4), 1.0)  # radius 1.0 -> sigma 0.65
    prediction = np.array([[10.0, -1.0, 0.65], [0.65, 0.65, 0.65]])  # 2x3: cropped region of both
    mse, mae = regression_metrics.rtf_errors(prediction, truth)
    errors = np.array([3.275 - 0.65, 0.65, 0, 0, 0, 0]) / 3.275
    assert mse == pytest.approx(np.mean(errors**2)) and mae == pytest.approx(np.mean(errors))


def test_normalized_errors_and_bad_maps():
    mse, mae = regression_metrics.normalized_errors(np.array([[14.0, 3.5]]), np.array([[7.0, 0.0]]), 7.0)
    assert mse == pytest.approx(0.125) and mae == pytest.approx(0.25)
    with pytest.raises(ValueError, match="differ in shape"):
        regression_metrics.squared_and_absolute_error(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        regression_metrics.rtf_errors(np.full((2, 2), np.nan), np.ones((2, 2)))
