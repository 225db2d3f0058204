"""Score one prediction source on one dataset under the dataset's protocol.

Binary protocols take two passes over the maps: the first computes exact per-image numbers and finds
the score values present; the second counts every image on one shared threshold grid, so the pooled
precision–recall curve and the dataset-level best threshold are exact (grid = the distinct score
values when there are at most `exact_grid_limit` of them, e.g. 8-bit maps; else an even grid).
"""
import dataclasses

import numpy as np
from tqdm import tqdm

from dmenet.evaluation import binary_metrics, regression_metrics
from dmenet.evaluation.datasets import RtfDataset, SyndofDataset

EXACT_GRID_LIMIT = 4096
EVEN_GRID_SIZE = 1001


@dataclasses.dataclass
class RunResult:
    label: str
    task: str  # "binary" or "regression"
    protocol: dict
    metrics: dict
    per_image: list  # one dict per image, in dataset order
    curve: dict | None = None  # binary: thresholds, precision, recall (pooled)
    warnings: list = dataclasses.field(default_factory=list)


def _threshold_grid(values, low, high, grid_size):
    """The distinct score values if they were few enough to keep, else an even grid over the range."""
    if values is not None:
        return values, "exact: every distinct score value"
    if low == high:
        return np.array([low]), "exact: constant maps"
    return np.linspace(low, high, grid_size), f"{grid_size} evenly spaced thresholds from the smallest to the largest score"


def evaluate_binary(dataset, source, threshold=0.5, beta_squared=binary_metrics.F_BETA_SQUARED,
                    exact_grid_limit=EXACT_GRID_LIMIT, grid_size=EVEN_GRID_SIZE, progress=True):
    """Blur-detection protocol (CUHK, DUT, folders): per-image and pooled pixel metrics."""
    rows, values, low, high = [], np.empty(0), np.inf, -np.inf
    for sample in tqdm(dataset.samples, desc=f"scoring {source.label}", unit="image", disable=not progress):
        score, truth = source.scored_pair(sample.stem, dataset.load_truth(sample))
        metrics = binary_metrics.image_binary_metrics(score, truth, threshold, beta_squared)
        rows.append({"stem": sample.stem, **dataclasses.asdict(metrics)})
        low, high = min(low, float(score.min())), max(high, float(score.max()))
        if values is not None:
            values = np.union1d(values, np.unique(score))
            if values.size > exact_grid_limit:
                values = None
    grid, grid_description = _threshold_grid(values, low, high, grid_size)

    pooled, per_image_counts = None, []
    for sample in tqdm(dataset.samples, desc="pooling", unit="image", disable=not progress):
        score, truth = source.scored_pair(sample.stem, dataset.load_truth(sample))
        counts = binary_metrics.ThresholdCounts.from_scores(score, truth, grid)
        per_image_counts.append(counts)
        pooled = counts if pooled is None else pooled + counts

    accuracy, chosen = pooled.best_accuracy()
    chosen_index = pooled.index_at(chosen)
    for row, counts in zip(rows, per_image_counts):
        row["accuracy_at_dataset_threshold"] = float(counts.accuracy[chosen_index])
    best_f, best_f_threshold = pooled.best_f_measure(beta_squared)
    image_aps = np.array([row["average_precision"] for row in rows])
    fixed_correct = sum(row["accuracy"] * row["pixels"] for row in rows)
    metrics = {
        "accuracy_at_best_threshold": accuracy,
        "best_threshold": chosen,
        "accuracy_at_fixed_threshold": fixed_correct / pooled.total,
        "fixed_threshold": threshold,
        "mean_image_accuracy_at_best_threshold": float(np.mean([row["accuracy_at_dataset_threshold"] for row in rows])),
        "average_precision": pooled.average_precision(),
        "mean_image_average_precision": float(np.nanmean(image_aps)) if np.any(np.isfinite(image_aps)) else None,
        "images_without_blurred_pixels": int(np.sum(~np.isfinite(image_aps))),
        "max_f_measure": best_f,
        "max_f_measure_threshold": best_f_threshold,
        # The thresholds are on the score (binary_score in the protocol); these are the σ they stand for.
        "best_threshold_sigma_px": source.score_to_sigma(chosen),
        "fixed_threshold_sigma_px": source.score_to_sigma(threshold),
        "mean_mae": float(np.mean([row["mae"] for row in rows])),
        "blurred_fraction": pooled.positives / pooled.total,
        "pixels": pooled.total,
    }
    warnings = []
    if pooled.positives and pooled.negatives and metrics["average_precision"] < metrics["blurred_fraction"]:
        warnings.append(
            f"average precision {metrics['average_precision']:.3f} is below chance ({metrics['blurred_fraction']:.3f}): "
            "the maps rank sharp pixels above blurred ones. Check the mask polarity (--mask-polarity) and "
            "whether the maps need --invert."
        )
    protocol = {
        **dataset.protocol(),
        **source.describe(),
        "decision": "blurred where score >= threshold",
        "threshold_unit": "the score (see binary_score), not σ; *_threshold_sigma_px give the σ in pixels it "
                          "stands for (null for maps in 'score' units)",
        "best_threshold": "the one threshold maximising pooled pixel accuracy over the whole set (chosen on "
                          "the evaluated data, as in the paper's accuracy figure)",
        "average_precision": "pooled over all pixels of the set: sum_k (R_k - R_k+1) * P_k, no interpolation; "
                             "mean_image_average_precision averages the per-image APs instead",
        "f_measure": f"F_beta with beta^2 = {beta_squared:g}, maximum over thresholds (pooled)",
        "beta_squared": beta_squared,
        "mae": "mean |clip(score, 0, 1) - mask| per image, averaged over images",
        "threshold_grid": grid_description,
    }
    curve = {"thresholds": pooled.thresholds, "precision": pooled.precision, "recall": pooled.recall}
    return RunResult(source.label, "binary", protocol, metrics, rows, curve, warnings)


def evaluate_regression(dataset, source, progress=True):
    """Defocus-regression protocol (RTF or SYNDOF): mean of per-image MSE and MAE."""
    rows = []
    for sample in tqdm(dataset.samples, desc=f"scoring {source.label}", unit="image", disable=not progress):
        truth = dataset.load_truth(sample)
        if isinstance(dataset, RtfDataset):
            sigma = source.sigma(sample.stem)
            mse, mae = regression_metrics.rtf_errors(sigma, truth)
            height, width = min(sigma.shape[0], truth.shape[0]), min(sigma.shape[1], truth.shape[1])
        elif isinstance(dataset, SyndofDataset):
            sigma, truth = source.sigma_pair(sample.stem, truth)
            mse, mae = regression_metrics.normalized_errors(sigma, truth, dataset.sigma_max)
            height, width = truth.shape
        else:
            raise TypeError(f"{dataset.name} is not a regression dataset")
        rows.append({"stem": sample.stem, "mse": mse, "mae": mae, "height": height, "width": width})
    metrics = {
        "mse": float(np.mean([row["mse"] for row in rows])),
        "mae": float(np.mean([row["mae"] for row in rows])),
        "median_mse": float(np.median([row["mse"] for row in rows])),
        "median_mae": float(np.median([row["mae"] for row in rows])),
    }
    protocol = {**dataset.protocol(), **source.describe()}
    protocol.pop("binary_score", None)
    protocol.pop("inverted", None)
    return RunResult(source.label, "regression", protocol, metrics, rows)


def evaluate(dataset, source, **options):
    """Check that every image has a usable map (all problems listed at once), then score."""
    source.check(dataset.samples, None if dataset.allows_size_mismatch else dataset.truth_size)
    if dataset.task == "binary":
        return evaluate_binary(dataset, source, **options)
    return evaluate_regression(dataset, source, progress=options.get("progress", True))
