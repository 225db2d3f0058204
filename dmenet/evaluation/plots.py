"""Pictures of a result: overlaid precision–recall curves, and a sheet of the best and worst images."""
import math

import numpy as np

from dmenet.files import images as image_io
from dmenet.files.figures import new_figure, save_figure

SHEET_SIDE = 256  # longest side of each thumbnail, so a sheet stays small for any image size


def _save(figure, path):
    save_figure(figure, path, dpi=110, bbox_inches="tight")


def plot_pr_curves(path, results, title="Precision–recall (pooled pixels, positive = blurred)"):
    """One curve per run, labelled with its AP; the dot marks the max-F_β point."""
    figure, axis = new_figure(figsize=(5.5, 5))
    for result in results:
        curve, metrics = result.curve, result.metrics
        recall, precision = curve["recall"], curve["precision"]
        line, = axis.step(recall, precision, where="post",
                          label=f"{result.label} (AP {metrics['average_precision']:.3f}, "
                                f"acc {metrics['accuracy_at_best_threshold']:.3f})")
        index = int(np.searchsorted(curve["thresholds"], metrics["max_f_measure_threshold"]))
        if index < recall.size:
            axis.plot(recall[index], precision[index], "o", color=line.get_color())
    base = results[0].metrics["blurred_fraction"]
    axis.axhline(base, color="grey", linestyle=":", linewidth=1, label=f"chance ({base:.3f})")
    axis.set(xlabel="recall", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.01), title=title)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower left", fontsize=8)
    _save(figure, path)


def _thumbnail(array):
    step = max(1, math.ceil(max(array.shape[:2]) / SHEET_SIDE))
    return array[::step, ::step]


def plot_sheet(path, result, dataset, source, count=3):
    """Rows: the `count` best then the `count` worst images by the run's main per-image metric."""
    if count <= 0:
        return False
    if result.task == "binary":
        key, higher_is_better = "average_precision", True
        ranked = [row for row in result.per_image if row[key] is not None and np.isfinite(row[key])]
    else:
        key, higher_is_better = "mse", False
        ranked = list(result.per_image)
    ranked.sort(key=lambda row: row[key], reverse=higher_is_better)
    if len(ranked) <= 2 * count:  # a small set: every image once, best first
        chosen = [(f"#{rank + 1}", row) for rank, row in enumerate(ranked)]
    else:
        chosen = [("best", row) for row in ranked[:count]] + [("worst", row) for row in ranked[-count:][::-1]]
    if not chosen:
        return False
    samples = {sample.stem: sample for sample in dataset.samples}
    columns = (["image", "ground truth (blurred = white)", "score map", "thresholded"] if result.task == "binary"
               else ["image", "ground truth σ (px)", "predicted σ (px)", "|error| σ (px)"])
    figure, axes = new_figure(len(chosen), 4, figsize=(12, 2.4 * len(chosen) + 0.6), squeeze=False,
                                layout="constrained")
    for axes_row, (kind, row) in zip(axes, chosen):
        sample = samples[row["stem"]]
        truth = dataset.load_truth(sample)
        panels = [image_io.read_image(sample.image) if sample.image is not None else None]
        if result.task == "binary":
            score, truth = source.scored_pair(sample.stem, truth)
            threshold = result.metrics["best_threshold"]
            panels += [truth.astype(float), score, (score >= threshold).astype(float)]
            style = [{}, {"cmap": "gray", "vmin": 0, "vmax": 1}, {"cmap": "magma"}, {"cmap": "gray", "vmin": 0, "vmax": 1}]
        else:
            if dataset.name == "rtf":
                sigma = source.sigma(sample.stem)
                from dmenet.evaluation.regression_metrics import RTF_SIGMA_MAX, crop_to_common, rtf_radius_to_sigma

                sigma, truth = crop_to_common(np.clip(sigma, 0, RTF_SIGMA_MAX), rtf_radius_to_sigma(truth))
                limit = RTF_SIGMA_MAX
            else:
                sigma, truth = source.sigma_pair(sample.stem, truth)
                sigma, limit = np.clip(sigma, 0, dataset.sigma_max), dataset.sigma_max
            panels += [truth, sigma, np.abs(sigma - truth)]
            style = [{}] + [{"cmap": "viridis", "vmin": 0, "vmax": limit}] * 3
        for column, (axis, panel, options) in enumerate(zip(axes_row, panels, style)):
            axis.set_xticks([])
            axis.set_yticks([])
            if panel is None:
                axis.text(0.5, 0.5, "no image", ha="center", va="center")
            else:
                shown = axis.imshow(_thumbnail(panel), **options)
                if column == 3 and result.task == "regression":
                    figure.colorbar(shown, ax=axis, fraction=0.046)
        stem = row["stem"] if len(row["stem"]) <= 24 else row["stem"][:11] + "…" + row["stem"][-12:]
        label = f"{kind}: {stem}\n{key} {row[key]:.3f}"
        axes_row[0].set_ylabel(label, fontsize=8)
    for axis, title in zip(axes[0], columns):
        axis.set_title(title, fontsize=9)
    figure.suptitle(f"{result.label}: best and worst images by {key}", fontsize=10)
    _save(figure, path)
    return True
