"""report.html of a comparison: the table, the precision–recall curves, and for the best, median and
worst photos of each benchmark the photo, its ground truth and every method's map on one colour scale.
"""
import math

import numpy as np

from dmenet.evaluation import compare_tables
from dmenet.evaluation.plots import protocol_view
from dmenet.reports import html

RANKING = {"binary": ("average_precision", True, "per-image AP"), "regression": ("mse", False, "per-image MSE")}


def ranked_photos(comparison, benchmark_label, per_kind=1):
    """[(kind, stem, score)] — the best, median and worst photos by the mean over the methods that ran of
    the per-image AP (binary sets, higher is better) or MSE (regression sets, lower is better)."""
    entries = [entry for entry in comparison.entries if entry.benchmark == benchmark_label and entry.ok]
    if not entries:
        return []
    key, higher_is_better, _ = RANKING[entries[0].result.task]
    values = {}
    for entry in entries:
        for row in entry.result.per_image:
            value = row.get(key)
            if value is not None and math.isfinite(value):
                values.setdefault(row["stem"], []).append(value)
    means = sorted(((float(np.mean(v)), stem) for stem, v in values.items() if len(v) == len(entries)),
                   reverse=higher_is_better)
    ordered = [(stem, value) for value, stem in means]
    if not ordered:
        return []
    middle = len(ordered) // 2
    picks, seen = [], set()
    for kind, chosen in (("best", ordered[:per_kind]), ("median", ordered[max(0, middle - per_kind // 2):][:per_kind]),
                         ("worst", ordered[::-1][:per_kind])):
        for stem, value in chosen:
            if stem not in seen:
                seen.add(stem)
                picks.append((kind, stem, value))
    return picks


def _photo_row(comparison, benchmark_label, kind, stem, value, metric_name):
    dataset = comparison.datasets[benchmark_label]
    sample = next(sample for sample in dataset.samples if sample.stem == stem)
    entries = [entry for entry in comparison.entries if entry.benchmark == benchmark_label and entry.ok]
    figures = []
    if sample.image is not None:
        figures.append(html.image_tag(html.file_uri(sample.image), f"photo {stem}", f"{kind}: {stem} (mean {metric_name} {value:.3f})"))
    truth_shown = False
    for entry in entries:
        truth, shown, limit, _ = protocol_view(dataset, entry.source, stem)
        if not truth_shown:
            figures.append(html.image_tag(html.map_uri(truth, limit), f"ground truth {stem}", "ground truth"))
            truth_shown = True
        key = RANKING[entry.result.task][0]
        row = next(row for row in entry.result.per_image if row["stem"] == stem)
        figures.append(html.image_tag(html.map_uri(shown, limit), f"{entry.method} map of {stem}",
                                      f"{entry.method}: {key.replace('_', ' ')} {row[key]:.3f}"))
    return f'<div class="row">{"".join(figures)}</div>'


def photos_section(comparison, benchmark_label, per_kind=1):
    picks = ranked_photos(comparison, benchmark_label, per_kind)
    if not picks:
        return ""
    entry = next(e for e in comparison.entries if e.benchmark == benchmark_label and e.ok)
    dataset = comparison.datasets[benchmark_label]
    _, _, limit, unit = protocol_view(dataset, entry.source, picks[0][1])
    key, higher, metric_name = RANKING[entry.result.task]
    parts = [f"<h3>{html.escape(benchmark_label)}: best, median and worst photos</h3>",
             f'<p class="note">Ranked by the mean {metric_name} of the methods ({"higher" if higher else "lower"} is better). '
             "Each map as the protocol scores it"
             + (" (the blur score; ground truth 1 = blurred)" if entry.result.task == "binary" else "")
             + ", all on one colour scale:</p>",
             html.image_tag(html.colorbar_uri(limit, unit), f"colour scale {unit}")]
    parts += [_photo_row(comparison, benchmark_label, kind, stem, value, metric_name) for kind, stem, value in picks]
    return "\n".join(parts)


def table_html(comparison):
    groups, rows = compare_tables.table(comparison)
    headings = [heading for _, group in groups for heading in group]
    header = [[("", 1)] + [(label, len(group)) for label, group in groups], [("method", 1)] + [(h, 1) for h in headings]]
    body = [[label] + [(compare_tables.format_cell(cell, heading), "failed" if cell == compare_tables.FAILED else None)
                       for cell, heading in zip(cells, headings)] for label, cells in rows]
    return html.table(header, body)


def write_comparison_report(path, comparison, out, photos_per_kind=1):
    """Write report.html for a Comparison whose tables and PR plots are already in `out`.

    Args:
        path: the HTML file to write.
        comparison: ``dmenet.evaluation.compare.Comparison``.
        out: the folder ``write_tables`` wrote the PR curves to.
        photos_per_kind: how many best, median and worst photos to show per benchmark.

    Returns:
        The path written.
    """
    escape = html.escape
    parts = [f'<p class="note">Created {escape(comparison.created_utc)}'
             + (f"; {escape(comparison.device)}" if comparison.device else "")
             + (f"<br>Command: <code>{escape(comparison.command)}</code>" if comparison.command else "") + "</p>",
             "<h2>Results</h2>", table_html(comparison)]
    markdown_notes = compare_tables.markdown(comparison).split("\n\n", 1)[1]
    for block in markdown_notes.strip().split("\n\n"):
        lines = block.splitlines()
        if lines[0].endswith(":"):
            items = "".join(f"<li>{escape(line[2:])}</li>" for line in lines[1:])
            css = ' class="error"' if lines[0] == "Failed:" else ""
            parts.append(f"<p{css}>{escape(lines[0])}</p><ul{css}>{items}</ul>")
        else:
            parts.append(f'<p class="note">{escape(block)}</p>')
    curves = [(benchmark.label, compare_tables.pr_curve_path(out, benchmark.label)) for benchmark in comparison.benchmarks]
    curves = [(label, file) for label, file in curves if file.is_file()]
    if curves:
        parts.append("<h2>Precision–recall</h2>")
        parts.append('<div class="curves">' + "".join(
            html.image_tag(html.data_uri(file.read_bytes()), f"precision-recall curves on {label}", label) for label, file in curves)
            + "</div>")
    sections = [photos_section(comparison, benchmark.label, photos_per_kind) for benchmark in comparison.benchmarks
                if benchmark.label in comparison.datasets]
    if any(sections):
        parts.append("<h2>Photos</h2>")
        parts += sections
    return html.write_page(path, "Defocus map comparison", "\n".join(parts))
