"""A comparison's numbers in the papers' layout — one row per method; CUHK-style sets: accuracy, AP and
best-threshold accuracy; RTF and SYNDOF: MSE and MAE; seconds per photo — as Markdown, CSV and JSON,
plus the per-image CSVs and one precision–recall plot per binary benchmark.
"""
import csv
import io
import json

from dmenet.evaluation import plots
from dmenet.evaluation.compare import one_line, safe_name
from dmenet.evaluation.report import _plain, describe_threshold, paper_reference, write_per_image_csv
from dmenet.files.images import atomic_path

BINARY_COLUMNS = (("accuracy_at_fixed_threshold", "accuracy"), ("average_precision", "AP"),
                  ("accuracy_at_best_threshold", "best-threshold accuracy"))
REGRESSION_COLUMNS = (("mse", "MSE"), ("mae", "MAE"))
SECONDS_COLUMN = "s/photo"
FAILED = "failed"


def benchmark_columns(comparison, benchmark):
    """(metric key, heading) of a benchmark's columns; seconds come last (key None)."""
    dataset = comparison.datasets.get(benchmark.label)
    task = dataset.task if dataset is not None else ("regression" if benchmark.kind in ("rtf", "syndof") else "binary")
    return list(BINARY_COLUMNS if task == "binary" else REGRESSION_COLUMNS) + [(None, SECONDS_COLUMN)]


def table(comparison):
    """(groups, rows): groups = [(benchmark label, [headings])]; rows = [(method label, [cells])] where a
    cell is a number, None (not timed: maps read from a folder) or "failed"."""
    groups = [(benchmark.label, [heading for _, heading in benchmark_columns(comparison, benchmark)])
              for benchmark in comparison.benchmarks]
    rows = []
    for spec in comparison.methods:
        cells = []
        for benchmark in comparison.benchmarks:
            entry = comparison.entry(benchmark.label, spec.label)
            for key, _ in benchmark_columns(comparison, benchmark):
                if entry is None or not entry.ok:
                    cells.append(FAILED)
                elif key is None:
                    cells.append(entry.seconds["mean"] if entry.seconds else None)
                else:
                    cells.append(entry.result.metrics[key])
        rows.append((spec.label, cells))
    return groups, rows


def format_cell(cell, heading):
    if cell is None:
        return "—"
    if isinstance(cell, str):
        return cell
    if heading == SECONDS_COLUMN:
        return f"{cell:.3g}" if cell < 100 else f"{cell:.0f}"
    return f"{cell:.4f}"


def flat_headings(groups):
    return [f"{benchmark} {heading}" for benchmark, headings in groups for heading in headings]


def threshold_notes(comparison):
    """One line per binary result: its best threshold with unit and σ, and the fixed one."""
    lines = []
    for entry in comparison.entries:
        if entry.ok and entry.result.task == "binary":
            lines.append(f"{entry.method} on {entry.benchmark}: best threshold {describe_threshold(entry.result, 'best')}; "
                         f"accuracy column at the fixed threshold {describe_threshold(entry.result, 'fixed')}")
    return lines


def benchmark_notes(comparison):
    lines = []
    for benchmark in comparison.benchmarks:
        dataset = comparison.datasets.get(benchmark.label)
        if dataset is not None:
            lines.append(f"{benchmark.label}: {dataset.name}, split {dataset.split}, {len(dataset.samples)} images, "
                         f"root {benchmark.root}")
    return lines


def markdown(comparison):
    groups, rows = table(comparison)
    headings = [heading for _, group in groups for heading in group]
    lines = ["| method | " + " | ".join(flat_headings(groups)) + " |",
             "|---|" + "---:|" * len(headings)]
    for label, cells in rows:
        lines.append(f"| {label} | " + " | ".join(format_cell(cell, heading) for cell, heading in zip(cells, headings)) + " |")
    lines += ["", "Accuracy: pixels right at the fixed threshold on each method's score; best-threshold accuracy: at the one "
              "threshold that maximises it on this data; AP: pooled over all pixels. MSE/MAE: the protocol's normalised "
              "maps, mean over images. s/photo: mean wall-clock seconds of the method per photo on this machine "
              "(— for maps read from a folder)."]
    lines += ["", "Benchmarks:"] + [f"- {line}" for line in benchmark_notes(comparison)]
    notes = threshold_notes(comparison)
    if notes:
        lines += ["", "Thresholds:"] + [f"- {line}" for line in notes]
    failures = comparison.failures
    if failures:
        lines += ["", "Failed:"] + [f"- {entry.method} on {entry.benchmark}: {one_line(entry.error)}" for entry in failures]
    return "\n".join(lines) + "\n"


def csv_text(comparison):
    groups, rows = table(comparison)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", *flat_headings(groups)])
    for label, cells in rows:
        writer.writerow([label, *["" if cell is None else cell for cell in cells]])
    return buffer.getvalue()


def json_record(comparison):
    groups, rows = table(comparison)
    results = []
    for entry in comparison.entries:
        record = {"benchmark": entry.benchmark, "method": entry.method, "status": "ok" if entry.ok else FAILED,
                  "error": entry.error, "seconds_per_photo": entry.seconds}
        if entry.ok:
            dataset = comparison.datasets[entry.benchmark]
            record.update(metrics=entry.result.metrics, protocol=entry.result.protocol, warnings=entry.result.warnings,
                          paper_reference=paper_reference(entry.result.protocol.get("method"), dataset.name))
        results.append(record)
    return _plain({
        "created_utc": comparison.created_utc,
        "command": comparison.command,
        "device": comparison.device,
        "benchmarks": [{"label": b.label, "kind": b.kind, "root": str(b.root),
                        "protocol": comparison.datasets[b.label].protocol() if b.label in comparison.datasets else None}
                       for b in comparison.benchmarks],
        "methods": [{"label": m.label, "method": m.method, "weights": m.weights,
                     "maps": None if m.folder is None else str(m.folder), "unit": m.unit} for m in comparison.methods],
        "table": {"columns": ["method", *flat_headings(groups)], "rows": [[label, *cells] for label, cells in rows]},
        "results": results,
    })


def _write_text(path, text):
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def pr_curve_path(out, benchmark_label):
    return out / f"pr_curve_{safe_name(benchmark_label)}.png"


def write_tables(comparison, out):
    """comparison.md/.csv/.json, per-image CSVs and PR plots in `out`; returns the paths written."""
    written = []
    for name, text in (("comparison.md", markdown(comparison)), ("comparison.csv", csv_text(comparison)),
                       ("comparison.json", json.dumps(json_record(comparison), indent=2) + "\n")):
        _write_text(out / name, text)
        written.append(out / name)
    for entry in comparison.entries:
        if entry.ok:
            path = out / safe_name(entry.benchmark) / f"per_image_{safe_name(entry.method)}.csv"
            write_per_image_csv(path, entry.result)
            written.append(path)
    for benchmark in comparison.benchmarks:
        results = [entry.result for entry in comparison.entries
                   if entry.benchmark == benchmark.label and entry.ok and entry.result.task == "binary"]
        if results:
            path = pr_curve_path(out, benchmark.label)
            plots.plot_pr_curves(path, results, title=f"{benchmark.label}: precision–recall (pooled pixels, positive = blurred)")
            written.append(path)
    return written
