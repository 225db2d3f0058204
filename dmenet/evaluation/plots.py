"""Pictures of a result: overlaid precision–recall curves, and a sheet of the best and worst images."""
import math

import numpy as np

from dmenet.files import images as image_io
from dmenet.files.figures import new_figure, save_figure

SHEET_SIDE = 256  # longest side of each thumbnail, so a sheet stays small for any image size


def _save(figure, path):
    save_figure(figure, path, dpi=110, bbox_inches="tight")


def plot_pr_curves(path, results, title="Precision–recall (pooled pixels, positive = blurred)"):
    """One curve per run, labelled with its AP; a dot marks each curve's max-F_β point (named in the legend)."""
    figure, axis = new_figure(figsize=(5.5, 5))
    dotted = False
    for result in results:
        curve, metrics = result.curve, result.metrics
        recall, precision = curve["recall"], curve["precision"]
        line, = axis.step(recall, precision, where="post",
                          label=f"{result.label} (AP {metrics['average_precision']:.3f}, "
                                f"acc {metrics['accuracy_at_best_threshold']:.3f})")
        index = int(np.searchsorted(curve["thresholds"], metrics["max_f_measure_threshold"]))
        if index < recall.size:
            axis.plot(recall[index], precision[index], "o", color=line.get_color())
            dotted = True
    if dotted:  # one legend entry explains every dot
        axis.plot([], [], "o", color="black", label=f"max F_β point (β² = {results[0].protocol['beta_squared']:g})")
    base = results[0].metrics["blurred_fraction"]
    axis.axhline(base, color="grey", linestyle=":", linewidth=1, label=f"chance ({base:.3f})")
    axis.set(xlabel="recall", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.01), title=title)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower left", fontsize=8)
    _save(figure, path)


def _thumbnail(array):
    step = max(1, math.ceil(max(array.shape[:2]) / SHEET_SIDE))
    return array[::step, ::step]


def protocol_view(dataset, source, stem, truth=None):
    """(ground truth, map, colour-scale top, unit) of one image as the protocol compares them.

    Binary sets: the mask (1 = blurred) and the score map, both on [0, 1] (an --invert map is shown as
    1 − value so that bright = blurred either way). RTF: both σ in px, clipped and cropped as its
    protocol does, top 3.275. SYNDOF: both σ in px, the prediction clipped to [0, σ_max].
    """
    sample = next(sample for sample in dataset.samples if sample.stem == stem)
    truth = dataset.load_truth(sample) if truth is None else truth
    if dataset.task == "binary":
        score, truth = source.scored_pair(stem, truth)
        shown = 1.0 + score if source.invert else score
        return truth.astype(float), np.clip(shown, 0.0, 1.0), 1.0, "blur score (1 = blurred)"
    if dataset.name == "rtf":
        from dmenet.evaluation.regression_metrics import RTF_SIGMA_MAX, crop_to_common, rtf_radius_to_sigma

        sigma, truth = crop_to_common(np.clip(source.sigma(stem), 0, RTF_SIGMA_MAX), rtf_radius_to_sigma(truth))
        return truth, sigma, RTF_SIGMA_MAX, "σ (px)"
    sigma, truth = source.sigma_pair(stem, truth)
    return truth, np.clip(sigma, 0, dataset.sigma_max), dataset.sigma_max, "σ (px)"


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
    if result.task == "binary":
        best, best_sigma = result.metrics["best_threshold"], result.metrics.get("best_threshold_sigma_px")
        score = result.protocol.get("binary_score", "score").replace("sigma", "σ")
        columns = ["image", "ground truth (blurred = white)", f"score map (score = {score})",
                   f"blurred where score ≥ {best:.4g}\n(the best threshold" + (f"; σ ≥ {best_sigma:.3g} px)" if best_sigma is not None else ")")]
    else:
        columns = ["image", "ground truth σ (px)", "predicted σ (px)", "|error| σ (px)"]
    figure, axes = new_figure(len(chosen), 4, figsize=(12, 2.4 * len(chosen) + 0.6), squeeze=False,
                                layout="constrained")
    for axes_row, (kind, row) in zip(axes, chosen):
        sample = samples[row["stem"]]
        panels = [image_io.read_image(sample.image) if sample.image is not None else None]
        if result.task == "binary":
            score, truth = source.scored_pair(sample.stem, dataset.load_truth(sample))
            threshold = result.metrics["best_threshold"]
            panels += [truth.astype(float), score, (score >= threshold).astype(float)]
            style = [{}, {"cmap": "gray", "vmin": 0, "vmax": 1}, {"cmap": "magma"}, {"cmap": "gray", "vmin": 0, "vmax": 1}]
        else:
            truth, sigma, limit, _ = protocol_view(dataset, source, sample.stem)
            panels += [truth, sigma, np.abs(sigma - truth)]
            style = [{}] + [{"cmap": "viridis", "vmin": 0, "vmax": limit}] * 3
        for column, (axis, panel, options) in enumerate(zip(axes_row, panels, style)):
            axis.set_xticks([])
            axis.set_yticks([])
            if panel is None:
                axis.text(0.5, 0.5, "no image", ha="center", va="center")
            else:
                shown = axis.imshow(_thumbnail(panel), **options)
                if column == 2 or (column == 3 and result.task == "regression"):
                    bar = figure.colorbar(shown, ax=axis, fraction=0.046)
                    bar.set_label("score" if result.task == "binary" else "σ (px)", fontsize=7)
        stem = row["stem"] if len(row["stem"]) <= 24 else row["stem"][:11] + "…" + row["stem"][-12:]
        label = f"{kind}: {stem}\n{key} {row[key]:.3f}"
        axes_row[0].set_ylabel(label, fontsize=8)
    for axis, title in zip(axes[0], columns):
        axis.set_title(title, fontsize=9)
    figure.suptitle(f"{result.label}: best and worst images by {key}", fontsize=10)
    _save(figure, path)
    return True
