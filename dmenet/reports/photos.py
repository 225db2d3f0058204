"""report.html for a folder of infer.py outputs: per photo the photo, its σ map (and a compared
method's), the focus mask and the application outputs present (all-in-focus, magnified, depth), so a
photographer can look at a batch at once instead of opening files one by one. A ``--sigma-maps`` run
(applications.json, no network) gets the same page, its maps read again from where they were made.
"""
import dataclasses
import json
import pathlib

import numpy as np

from dmenet.evaluation.predictions import PredictionFolder, read_sigma_map
from dmenet.inference.batch import MAPS_SUMMARY
from dmenet.reports import html

SUMMARY = "summary.json"
# Pictures other tools may add beside NAME_sigma.png, shown when present: (file suffix, caption).
APPLICATION_OUTPUTS = (("_allinfocus.png", "all-in-focus (deblurred)"), ("_magnified.png", "defocus magnified"),
                       ("_depth.png", "relative depth"))
MASK_SUFFIX = "_mask.png"
REPORT_NAME = "report.html"
GIVEN_MAP_LABEL = "given"  # a --sigma-maps map whose method its summary does not name


@dataclasses.dataclass
class PhotoRow:
    """One photo of a report: its summary record, its output name, its σ maps ({label: H×W σ px}), the
    masks to show ((label, output name) → NAME_mask.png) and a line shown instead of a map that is gone."""

    record: dict
    stem: str
    maps: dict
    masks: list
    problem: str | None = None


def stem_of(record):
    """The output name of a summary.json or applications.json image record (batch.py records it; older
    summaries: from its files)."""
    if record.get("stem"):
        return record["stem"]
    names = record.get("files", [])
    for suffixes in (("_sigma.npy", "_sigma.png"), (MASK_SUFFIX, *(suffix for suffix, _ in APPLICATION_OUTPUTS))):
        stems = [name[: -len(suffix)] for name in names for suffix in suffixes if name.endswith(suffix)]
        if stems:
            return min(stems, key=len)
    return None


def sigma_file(folder, name):
    """NAME_sigma.npy (lossless) or NAME_sigma.png in `folder`, or None."""
    for suffix in (".npy", ".png"):
        path = folder / f"{name}_sigma{suffix}"
        if path.is_file():
            return path
    return None


def _read_summary(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable infer.py summary ({error}); rerun infer.py with --output {path.parent}") from None


def write_photo_report(output_dir, title=None, ground_truth=None, notes=()):
    """Write OUTPUT_DIR/report.html from the summary.json and files infer.py wrote there (from its
    applications.json when the folder holds only a ``--sigma-maps`` run: see write_sigma_maps_report).

    Args:
        output_dir: an infer.py output folder (summary.json, NAME_sigma.png|npy, NAME_mask.png, ...).
        title: the page title (default: "Defocus maps: <folder name>").
        ground_truth: optional {NAME: H×W σ in px} shown beside the maps on the same colour scale.
        notes: lines shown under the title (e.g. what a demo did).

    Returns:
        The path of report.html.

    Example:
        >>> write_photo_report("outputs/infer")      # after python infer.py photos/ -o outputs/infer
    """
    folder = pathlib.Path(output_dir)
    summary_path = folder / SUMMARY
    if not summary_path.is_file():
        if (folder / MAPS_SUMMARY).is_file():
            return write_sigma_maps_report(folder, title, ground_truth, notes)
        raise ValueError(f"{folder} holds no summary.json (nor a --sigma-maps run's {MAPS_SUMMARY}); "
                         f"run infer.py with --output {folder} first")
    summary = _read_summary(summary_path)
    method = summary.get("method", "?")
    other = (summary.get("compared_with") or {}).get("method")
    names = [(label, name) for label, name in ((method, ""), (other, f"_{other}")) if label]
    rows = []
    for record in summary.get("images", []):
        stem = stem_of(record)
        if stem is None:
            continue
        maps = {}
        for label, suffix in names:
            path = sigma_file(folder, stem + suffix)
            if path is not None:
                maps[label] = read_sigma_map(path)
        rows.append(PhotoRow(record, stem, maps, [(label, stem + suffix) for label, suffix in names]))
    intro = (f"Method: {method}" + (f", compared with {other}" if other else "")
             + f"; {summary.get('encoding_description', '')}; precision {summary.get('precision')}.")
    return _write_report(folder, title, intro, rows, summary, ground_truth, notes)


def write_sigma_maps_report(output_dir, title=None, ground_truth=None, notes=()):
    """Write OUTPUT_DIR/report.html for ``infer.py PHOTOS --sigma-maps DIR -o OUTPUT_DIR`` (its applications.json).

    Each photo's σ map is read from the path its record names (in DIR, not in OUTPUT_DIR) with the unit
    and scale applications.json states; a map gone since is one line in that photo's row.

    Args:
        output_dir: the folder holding applications.json, the masks and the application outputs.
        title: the page title (default: "Defocus maps: <folder name>").
        ground_truth: optional {NAME: H×W σ in px} shown beside the maps on the same colour scale.
        notes: lines shown under the title.

    Returns:
        The path of report.html.

    Example:
        >>> write_sigma_maps_report("outputs/apps")  # after python infer.py photos/ --sigma-maps outputs/infer -o outputs/apps
    """
    folder = pathlib.Path(output_dir)
    summary_path = folder / MAPS_SUMMARY
    if not summary_path.is_file():
        raise ValueError(f"{folder} holds no {MAPS_SUMMARY}; run infer.py PHOTOS --sigma-maps DIR --output {folder} first")
    summary = _read_summary(summary_path)
    description = summary.get("sigma_maps") or {}
    label = description.get("method") or GIVEN_MAP_LABEL
    readers, rows = {}, []
    for record in summary.get("images", []):
        stem = stem_of(record)
        if stem is None:
            continue
        maps, problem = {}, None
        try:
            maps[label] = _recorded_sigma_map(record, description, readers)
        except (ValueError, OSError) as error:
            problem = str(error)
        rows.append(PhotoRow(record, stem, maps, [("", stem)], problem))
    intro = f"σ maps made earlier, read from {description.get('predictions', '?')} ({_unit_text(description)}); no network ran."
    return _write_report(folder, title, intro, rows, summary, ground_truth, notes)


def _recorded_sigma_map(record, description, readers):
    """σ px of the map a --sigma-maps record names, read as that run read it (`readers`: one per folder)."""
    if not record.get("sigma_map"):
        raise ValueError("σ map not recorded in applications.json (written by an older infer.py); rerun it with --report")
    path = pathlib.Path(record["sigma_map"])
    if not path.is_file():
        raise ValueError(f"σ map {path} is gone (moved or deleted since the masks and applications were made from it)")
    if path.parent not in readers:
        readers[path.parent] = PredictionFolder.from_description(description, path.parent)
    return readers[path.parent].sigma_at(path)


def _unit_text(description):
    unit, scale = description.get("unit"), description.get("scale")
    if description.get("scale_given") and isinstance(scale, (int, float)):
        return f"unit {unit}, σ = value / {scale:g}" if unit == "sigma" else f"unit {unit}, scale {scale:g}"
    if unit == "sigma":
        return "σ in px: .npy as stored, each PNG by the scale its dmenet:unit text states"
    return f"unit {unit}, scale {scale}"


def _write_report(folder, title, intro, rows, summary, ground_truth, notes):
    """The page both kinds of summary share: notes, one intro line, the colour bar, failures, a row per photo."""
    ground_truth = ground_truth or {}
    for row in rows:
        if row.stem in ground_truth:
            row.maps = {"ground truth": np.asarray(ground_truth[row.stem], np.float64), **row.maps}
    # the largest σ shown (99.5th percentile, so one outlier does not wash out the rest)
    vmax = max([1e-6] + [float(np.percentile(sigma, 99.5)) for row in rows for sigma in row.maps.values()])
    failures = summary.get("failures", [])
    parts = [f'<p class="note">{html.escape(line)}</p>' for line in notes]
    parts.append(f'<p class="note">{html.escape(intro)} {len(rows)} photos' + (f", {len(failures)} failed" if failures else "")
                 + f". Mask: {html.escape(summary.get('mask_rule') or 'not written (infer.py --mask-threshold SIGMA)')}.</p>")
    parts.append(html.image_tag(html.colorbar_uri(vmax, "defocus blur σ (pixels)"), "colour scale σ (pixels)",
                                f"every σ map on one scale, 0 to {vmax:.2f} px (brighter = more out of focus)"))
    for failure in failures:
        parts.append(f'<p class="error">failed: {html.escape(failure.get("error", failure))}</p>')
    for row in rows:
        parts.append(f"<h3>{html.escape(row.stem)}</h3>")
        if row.problem:
            parts.append(f'<p class="error">{html.escape(row.problem)}</p>')
        parts.append(f'<div class="row">{"".join(_figures(folder, row, vmax))}</div>')
    return html.write_page(folder / REPORT_NAME, title or f"Defocus maps: {folder.name}", "\n".join(parts))


def _figures(folder, row, vmax):
    """The photo, its maps on the common scale, its masks and the application outputs present."""
    stem, record, figures = row.stem, row.record, []
    photo = pathlib.Path(record["input"])
    if photo.is_file():
        figures.append(html.image_tag(html.file_uri(photo), f"photo {stem}", f"{photo.name} ({record['size'][0]}×{record['size'][1]})"))
    for label, sigma in row.maps.items():
        caption = f"{label}: σ mean {float(np.mean(sigma)):.2f}, max {float(np.max(sigma)):.2f} px"
        figures.append(html.image_tag(html.map_uri(sigma, vmax), f"{label} σ map of {stem}", caption))
    for label, name in row.masks:
        mask = folder / f"{name}{MASK_SUFFIX}"
        if mask.is_file():
            figures.append(html.image_tag(html.file_uri(mask), f"{label} mask of {stem}".lstrip(),
                                          f"{label}: out of focus (white)" if label else "out of focus (white)"))
    for suffix, caption in APPLICATION_OUTPUTS:
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            figures.append(html.image_tag(html.file_uri(path), f"{caption} {stem}", caption))
    return figures
