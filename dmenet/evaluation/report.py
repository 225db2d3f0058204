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


def summary(results, command=None):
    return _plain({
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "paper_reference": {
            "cuhk": "DMENet_BDCS: accuracy 0.878, mAP 0.987",
            "rtf": "DMENet_BDCS: MSE 0.009, MAE 0.077",
            "syndof": "DMENet_BDCS: MSE 0.013, MAE 0.084",
        },
        "runs": [
            {"label": result.label, "task": result.task, "metrics": result.metrics,
             "protocol": result.protocol, "warnings": result.warnings}
            for result in results
        ],
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


def format_result(result):
    """A few human lines for the terminal."""
    m = result.metrics
    if result.task == "binary":
        lines = [
            f"[{result.label}] {result.protocol['dataset']} split={result.protocol['split']} "
            f"images={result.protocol['images']}",
            f"  accuracy {m['accuracy_at_best_threshold']:.4f} at the best threshold {m['best_threshold']:.4g} "
            f"(chosen on this data); {m['accuracy_at_fixed_threshold']:.4f} at the fixed threshold {m['fixed_threshold']:g}",
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
