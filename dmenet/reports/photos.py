"""report.html for a folder of infer.py outputs: per photo the photo, its σ map (and a compared
method's), the focus mask and the application outputs present (all-in-focus, magnified, depth), so a
photographer can look at a batch at once instead of opening files one by one.
"""
import json
import pathlib

import numpy as np

from dmenet.evaluation.predictions import read_sigma_map
from dmenet.reports import html

# Pictures other tools may add beside NAME_sigma.png, shown when present: (file suffix, caption).
APPLICATION_OUTPUTS = (("_allinfocus.png", "all-in-focus (deblurred)"), ("_magnified.png", "defocus magnified"),
                       ("_depth.png", "relative depth"))
REPORT_NAME = "report.html"


def stem_of(record):
    """The output name of a summary.json image record (batch.py records it; older summaries: from its files)."""
    if record.get("stem"):
        return record["stem"]
    names = [name for name in record.get("files", []) if name.endswith(("_sigma.npy", "_sigma.png"))]
    if not names:
        return None
    return min(names, key=len).rsplit("_sigma.", 1)[0]


def sigma_file(folder, name):
    """NAME_sigma.npy (lossless) or NAME_sigma.png in `folder`, or None."""
    for suffix in (".npy", ".png"):
        path = folder / f"{name}_sigma{suffix}"
        if path.is_file():
            return path
    return None


def write_photo_report(output_dir, title=None, ground_truth=None, notes=()):
    """Write OUTPUT_DIR/report.html from the summary.json and files infer.py wrote there.

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
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        raise ValueError(f"{folder} holds no summary.json; run infer.py with --output {folder} first")
    summary = json.loads(summary_path.read_text())
    ground_truth = ground_truth or {}
    method = summary.get("method", "?")
    other = (summary.get("compared_with") or {}).get("method")
    rows, top = [], 0.0
    for record in summary.get("images", []):
        stem = stem_of(record)
        if stem is None:
            continue
        maps = {}
        for label, name in ((method, stem), (other, f"{stem}_{other}")):
            path = sigma_file(folder, name) if label else None
            if path is not None:
                maps[label] = read_sigma_map(path)
        if stem in ground_truth:
            maps = {"ground truth": np.asarray(ground_truth[stem], np.float64), **maps}
        top = max([top] + [float(np.percentile(sigma, 99.5)) for sigma in maps.values()])
        rows.append((record, stem, maps))
    vmax = max(top, 1e-6)  # the largest σ shown (99.5th percentile, so one outlier does not wash out the rest)
    parts = [f'<p class="note">{html.escape(line)}</p>' for line in notes]
    parts.append(f'<p class="note">Method: {html.escape(method)}' + (f", compared with {html.escape(other)}" if other else "")
                 + f"; {html.escape(summary.get('encoding_description', ''))}; precision {html.escape(summary.get('precision'))}. "
                 f"{len(rows)} photos" + (f", {len(summary.get('failures', []))} failed" if summary.get("failures") else "")
                 + f". Mask: {html.escape(summary.get('mask_rule') or 'not written (infer.py --mask-threshold SIGMA)')}.</p>")
    parts.append(html.image_tag(html.colorbar_uri(vmax, "defocus blur σ (pixels)"), "colour scale σ (pixels)",
                                f"every σ map on one scale, 0 to {vmax:.2f} px (brighter = more out of focus)"))
    for failure in summary.get("failures", []):
        parts.append(f'<p class="error">failed: {html.escape(failure.get("error", failure))}</p>')
    for record, stem, maps in rows:
        parts.append(f"<h3>{html.escape(stem)}</h3>")
        figures = []
        photo = pathlib.Path(record["input"])
        if photo.is_file():
            figures.append(html.image_tag(html.file_uri(photo), f"photo {stem}", f"{photo.name} ({record['size'][0]}×{record['size'][1]})"))
        for label, sigma in maps.items():
            caption = f"{label}: σ mean {float(np.mean(sigma)):.2f}, max {float(np.max(sigma)):.2f} px"
            figures.append(html.image_tag(html.map_uri(sigma, vmax), f"{label} σ map of {stem}", caption))
        for label, name in ((method, stem), (other, f"{stem}_{other}")):
            mask = folder / f"{name}_mask.png"
            if label and mask.is_file():
                figures.append(html.image_tag(html.file_uri(mask), f"{label} mask of {stem}", f"{label}: out of focus (white)"))
        for suffix, caption in APPLICATION_OUTPUTS:
            path = folder / f"{stem}{suffix}"
            if path.is_file():
                figures.append(html.image_tag(html.file_uri(path), f"{caption} {stem}", caption))
        parts.append(f'<div class="row">{"".join(figures)}</div>')
    return html.write_page(folder / REPORT_NAME, title or f"Defocus maps: {folder.name}", "\n".join(parts))
