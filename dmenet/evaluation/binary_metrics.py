"""Blur-detection metrics: a score map against a binary mask whose positive class is "blurred".

Everything is derived from one table: for each threshold t, how many blurred (TP) and sharp (FP)
pixels have score >= t. From it come accuracy at any threshold, the best threshold, the
precision–recall curve, average precision and the F-measure. The table is built with one
`searchsorted` + `bincount` pass, so a whole dataset pooled on a shared threshold grid costs the same
as one image, and ties are exact because thresholds sit on the score values themselves.
"""
import dataclasses

import numpy as np

F_BETA_SQUARED = 0.3  # the blur/saliency-detection literature's β² (favours precision)


def _flatten_pair(scores, labels):
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"score map has {scores.size} values but the mask has {labels.size}")
    if scores.size == 0:
        raise ValueError("empty score map")
    if not np.all(np.isfinite(scores)):
        raise ValueError("score map contains NaN or infinite values")
    return scores, labels


@dataclasses.dataclass
class ThresholdCounts:
    """TP/FP per threshold (predict "blurred" where score >= threshold); the last threshold is +inf.

    Counts over several images add up (`+`) when they share the same thresholds.
    """

    thresholds: np.ndarray  # ascending, last = +inf (nothing predicted blurred)
    true_positives: np.ndarray
    false_positives: np.ndarray
    positives: int
    negatives: int

    @classmethod
    def from_scores(cls, scores, labels, thresholds=None):
        """Count one map; `thresholds` (ascending, finite) defaults to the map's own unique values."""
        scores, labels = _flatten_pair(scores, labels)
        finite = np.unique(scores) if thresholds is None else np.asarray(thresholds, np.float64)
        if finite.ndim != 1 or finite.size == 0 or np.any(np.diff(finite) <= 0):
            raise ValueError("thresholds must be a non-empty, strictly ascending 1-D array")
        # bucket b = number of thresholds <= score, so score >= thresholds[k]  <=>  bucket >= k + 1.
        buckets = np.searchsorted(finite, scores, side="right")
        positive_hist = np.bincount(buckets[labels], minlength=finite.size + 1)
        negative_hist = np.bincount(buckets[~labels], minlength=finite.size + 1)
        true_positives = np.cumsum(positive_hist[::-1])[::-1][1:]
        false_positives = np.cumsum(negative_hist[::-1])[::-1][1:]
        return cls(
            thresholds=np.append(finite, np.inf),
            true_positives=np.append(true_positives, 0).astype(np.int64),
            false_positives=np.append(false_positives, 0).astype(np.int64),
            positives=int(labels.sum()),
            negatives=int(labels.size - labels.sum()),
        )

    def __add__(self, other):
        if not np.array_equal(self.thresholds, other.thresholds):
            raise ValueError("counts on different threshold grids cannot be pooled")
        return ThresholdCounts(
            self.thresholds,
            self.true_positives + other.true_positives,
            self.false_positives + other.false_positives,
            self.positives + other.positives,
            self.negatives + other.negatives,
        )

    @property
    def total(self):
        return self.positives + self.negatives

    @property
    def accuracy(self):
        """Pixel accuracy at each threshold."""
        true_negatives = self.negatives - self.false_positives
        return (self.true_positives + true_negatives) / self.total

    @property
    def precision(self):
        """TP / (TP + FP); 1 where nothing is predicted blurred (the usual convention)."""
        predicted = self.true_positives + self.false_positives
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(predicted > 0, self.true_positives / np.maximum(predicted, 1), 1.0)

    @property
    def recall(self):
        """TP / positives; NaN everywhere when the mask has no blurred pixel."""
        if self.positives == 0:
            return np.full(self.thresholds.shape, np.nan)
        return self.true_positives / self.positives

    def f_measure(self, beta_squared=F_BETA_SQUARED):
        precision, recall = self.precision, self.recall
        denominator = beta_squared * precision + recall
        with np.errstate(invalid="ignore", divide="ignore"):
            value = (1 + beta_squared) * precision * recall / denominator
        return np.where(denominator > 0, value, 0.0)

    def average_precision(self):
        """Σ (R_k − R_{k+1}) · P_k over thresholds: the step-wise area under the PR curve
        (scikit-learn's definition; no interpolation). NaN without blurred pixels."""
        if self.positives == 0:
            return float("nan")
        recall = self.recall
        return float(np.sum((recall[:-1] - recall[1:]) * self.precision[:-1]))

    def best_accuracy(self):
        """(accuracy, threshold) maximising accuracy; ties go to the lowest threshold."""
        accuracy = self.accuracy
        index = int(np.argmax(accuracy))
        return float(accuracy[index]), float(self.thresholds[index])

    def best_f_measure(self, beta_squared=F_BETA_SQUARED):
        """(max F_β, threshold); NaN without blurred pixels."""
        if self.positives == 0:
            return float("nan"), float("nan")
        f_measure = self.f_measure(beta_squared)
        index = int(np.argmax(f_measure))
        return float(f_measure[index]), float(self.thresholds[index])

    def index_at(self, threshold):
        """Index of the first grid threshold >= `threshold` (so the decision equals score >= threshold
        whenever `threshold` is on the grid or no score lies between the two)."""
        return int(np.searchsorted(self.thresholds, threshold, side="left"))


def accuracy_at(scores, labels, threshold):
    """Pixel accuracy of "blurred where score >= threshold"."""
    scores, labels = _flatten_pair(scores, labels)
    return float(np.mean((scores >= threshold) == labels))


def mask_mae(scores, labels):
    """Mean |map − mask| with the map clipped to [0, 1] (the blur-detection MAE)."""
    scores, labels = _flatten_pair(scores, labels)
    return float(np.mean(np.abs(np.clip(scores, 0.0, 1.0) - labels)))


@dataclasses.dataclass(frozen=True)
class ImageBinaryMetrics:
    """Exact per-image numbers (thresholds on the image's own score values)."""

    pixels: int
    blurred_fraction: float
    accuracy: float  # at the fixed threshold
    best_accuracy: float
    best_threshold: float
    average_precision: float
    best_f_measure: float
    mae: float


def image_binary_metrics(scores, labels, threshold, beta_squared=F_BETA_SQUARED):
    counts = ThresholdCounts.from_scores(scores, labels)
    best_accuracy, best_threshold = counts.best_accuracy()
    best_f, _ = counts.best_f_measure(beta_squared)
    return ImageBinaryMetrics(
        pixels=counts.total,
        blurred_fraction=counts.positives / counts.total,
        accuracy=accuracy_at(scores, labels, threshold),
        best_accuracy=best_accuracy,
        best_threshold=best_threshold,
        average_precision=counts.average_precision(),
        best_f_measure=best_f,
        mae=mask_mae(scores, labels),
    )
