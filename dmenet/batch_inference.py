"""Run B over many photos and write every output a user may want, file by file, never all-or-nothing.

A file that cannot be read is reported and skipped; the summary (summary.json) lists what was
written, what failed and why, and the unit of every stored map.
"""
import dataclasses
import glob
import json
import pathlib
import time

import numpy as np

from dmenet.image_io import IMAGE_SUFFIXES, ImageReadError, atomic_path, list_images, read_image, save_npy, write_png
from dmenet.inference import ImageTooSmallError
from dmenet.visualize import save_side_by_side, save_sigma_colormap

DEFAULT_PNG_SCALE = 1000.0  # σ · 1000 in uint16: 0.001 px steps up to 65.5 px


@dataclasses.dataclass
class OutputOptions:
    png_scale: float = DEFAULT_PNG_SCALE
    write_npy: bool = False
    write_colormap: bool = True
    mask_threshold: float | None = None  # σ in pixels; pixels above it are "blurred"
    write_figure: bool = False
    vmax: float | None = None  # colour scale top in σ px; None = the encoding's σ_max


def collect_inputs(arguments):
    """Files, folders and glob patterns → (unique existing paths in order, [messages for the rest])."""
    paths, problems, seen = [], [], set()
    for argument in arguments:
        candidate = pathlib.Path(argument)
        if candidate.is_dir():
            found = list_images(candidate)
            if not found:
                problems.append(f"{argument}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        elif candidate.is_file():
            found = [candidate]
        else:
            found = [pathlib.Path(p) for p in sorted(glob.glob(argument)) if pathlib.Path(p).is_file()]
            if not found:
                problems.append(f"{argument}: no such file, folder or matching pattern")
        for path in found:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                paths.append(path)
    return paths, problems


def _output_stems(paths):
    """Output name per input: its stem, disambiguated with the parent folder when stems collide."""
    counts = {}
    for path in paths:
        counts[path.stem] = counts.get(path.stem, 0) + 1
    return [f"{p.parent.name}_{p.stem}" if counts[p.stem] > 1 else p.stem for p in paths]


def write_outputs(output_dir, stem, image, sigma, encoding, options):
    """All requested files for one photo; returns their names."""
    written = []
    if sigma.max() * options.png_scale > 65535:
        raise ValueError(f"σ up to {sigma.max():.1f} px does not fit 16 bits at --png-scale {options.png_scale:g}")
    stored = np.round(sigma.astype(np.float64) * options.png_scale).astype(np.uint16)
    unit = f"sigma_px = value / {options.png_scale:g}"
    write_png(output_dir / f"{stem}_sigma.png", stored, text={"dmenet:unit": unit, "dmenet:encoding": encoding.description})
    written.append(f"{stem}_sigma.png")
    if options.write_npy:
        save_npy(output_dir / f"{stem}_sigma.npy", sigma.astype(np.float32))
        written.append(f"{stem}_sigma.npy")
    vmax = options.vmax if options.vmax is not None else encoding.to_sigma(1.0).item()
    if options.write_colormap:
        save_sigma_colormap(output_dir / f"{stem}_defocus.png", sigma, vmax=vmax)
        written.append(f"{stem}_defocus.png")
    mask = None
    if options.mask_threshold is not None:
        mask = sigma > options.mask_threshold
        write_png(output_dir / f"{stem}_mask.png", mask.astype(np.uint8) * 255, text={"dmenet:unit": f"255 = sigma_px > {options.mask_threshold:g}"})
        written.append(f"{stem}_mask.png")
    if options.write_figure:
        save_side_by_side(output_dir / f"{stem}_figure.png", image, sigma, mask, vmax=vmax, title=stem)
        written.append(f"{stem}_figure.png")
    return written


def run_inference(paths, predictor, output_dir, options, progress=True):
    """Predict and write every photo; returns the summary dict (also saved as summary.json)."""
    from tqdm import tqdm

    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    results, failures = [], []
    bar = tqdm(list(zip(paths, _output_stems(paths))), desc="defocus maps", unit="image", disable=not progress)
    for path, stem in bar:
        bar.set_postfix_str(path.name[-30:])
        started = time.perf_counter()
        try:
            image = read_image(path)
            sigma = predictor.predict_sigma(image)
            files = write_outputs(output_dir, stem, image, sigma, predictor.encoding, options)
        except (ImageReadError, ImageTooSmallError, ValueError) as error:
            failures.append({"input": str(path), "error": str(error)})
            bar.write(f"skipped: {error}")
            continue
        results.append({
            "input": str(path),
            "size": [int(image.shape[1]), int(image.shape[0])],
            "files": files,
            "sigma_px": {"mean": float(sigma.mean()), "median": float(np.median(sigma)), "max": float(sigma.max())},
            "seconds": round(time.perf_counter() - started, 3),
        })
    summary = {
        "encoding": predictor.encoding.to_dict(),
        "encoding_description": predictor.encoding.description,
        "sigma_png_unit": f"sigma_px = uint16 value / {options.png_scale:g}",
        "mask_rule": None if options.mask_threshold is None else f"255 where sigma_px > {options.mask_threshold:g}",
        "max_side": predictor.max_side,
        "tile": predictor.tile,
        "images": results,
        "failures": failures,
    }
    with atomic_path(output_dir / "summary.json") as temporary:
        temporary.write_text(json.dumps(summary, indent=2))
    return summary
