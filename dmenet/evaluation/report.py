"""Writing results: a JSON summary with the protocol beside every number, and a per-image CSV."""
import csv
import datetime
import io
import json
import math

from dmenet.files import images as image_io


def _plain(value):
    """JSON-safe: numpy scalars → Python, ±inf → "inf"/"-inf", NaN → null."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


# What each method's own paper reports under these protocols. Only DMENet's numbers are confirmed
# (DESIGN.md); Park et al. 2017 and Zhuo & Sim 2011 published none on CUHK, RTF or SYNDOF, and the
# values other papers list for them are not confirmed here, so none are quoted.
PAPER_REFERENCE = {
    "dmenet": {
        "cuhk": "DMENet_BDCS (Lee et al., CVPR 2019): accuracy 0.878, mAP 0.987",
        "rtf": "DMENet_BDCS (Lee et al., CVPR 2019): MSE 0.009, MAE 0.077",
        "syndof": "DMENet_BDCS (Lee et al., CVPR 2019): MSE 0.013, MAE 0.084",
    },
}


def paper_reference(method, dataset):
    """The published numbers of `method` on `dataset` (e.g. "dmenet", "cuhk"), or None where there are none."""
    return PAPER_REFERENCE.get(method or "", {}).get(dataset)


def run_record(result):
    """One run as summary.json stores it: label, task, metrics, protocol, its own paper's numbers, warnings."""
    return {"label": result.label, "task": result.task, "metrics": result.metrics, "protocol": result.protocol,
            "paper_reference": paper_reference(result.protocol.get("method"), result.protocol.get("dataset")),
            "warnings": result.warnings}


def summary(results, command=None):
    return _plain({
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "runs": [run_record(result) for result in results],
    })


def write_summary(path, results, command=None):
    with image_io.atomic_path(path) as temporary:
        temporary.write_text(json.dumps(summary(results, command), indent=2) + "\n")


def write_per_image_csv(path, result):
    buffer = io.StringIO()
    rows = [_plain(row) for row in result.per_image]
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with image_io.atomic_path(path) as temporary:
        temporary.write_text(buffer.getvalue())


def describe_threshold(result, which="best"):
    """'0.2607 on the score σ / 2 (σ ≈ 0.52 px)': a binary threshold with its unit and the σ it means."""
    value = result.metrics[f"{which}_threshold"]
    sigma = result.metrics.get(f"{which}_threshold_sigma_px")
    score = result.protocol.get("binary_score", "score")
    text = f"{value:.4g} on the score ({score.replace('sigma', 'σ')})"
    return text + (f" (σ ≈ {sigma:.3g} px)" if sigma is not None else "")


def format_result(result):
    """A few human lines for the terminal."""
    m = result.metrics
    if result.task == "binary":
        lines = [
            f"[{result.label}] {result.protocol['dataset']} split={result.protocol['split']} "
            f"images={result.protocol['images']}",
            f"  accuracy {m['accuracy_at_best_threshold']:.4f} at the best threshold {describe_threshold(result, 'best')} "
            f"(chosen on this data); {m['accuracy_at_fixed_threshold']:.4f} at the fixed threshold "
            f"{describe_threshold(result, 'fixed')}",
            f"  AP (pooled pixels) {m['average_precision']:.4f}; mean per-image AP "
            + (f"{m['mean_image_average_precision']:.4f}" if m["mean_image_average_precision"] is not None else "n/a"),
            f"  max F(beta^2=0.3) {m['max_f_measure']:.4f}; MAE {m['mean_mae']:.4f}; blurred fraction {m['blurred_fraction']:.3f}",
        ]
    else:
        lines = [
            f"[{result.label}] {result.protocol['dataset']} split={result.protocol['split']} "
            f"images={result.protocol['images']}",
            f"  MSE {m['mse']:.4f}  MAE {m['mae']:.4f}  ({result.protocol['conversion']})",
        ]
    return "\n".join(lines + [f"  WARNING: {warning}" for warning in result.warnings])
