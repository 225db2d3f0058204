"""Checking a SYNDOF dataset folder for completeness and integrity, and saying what to remake.

Every sample the manifest lists must have all six files, each readable, with the expected pixel
types and sizes and labels in range: σ·10 at most 10·σ_max, the normalised map spanning 0–255, the
binary map only 0/255 and 255 wherever σ > 0, and the parameters JSON naming the sample. Without a
manifest (a folder written before manifests existed) the samples found in any folder are checked,
so a sample whose every file is gone goes unnoticed.
"""
import concurrent.futures
import dataclasses
import json
import os
import pathlib

import numpy as np

from dmenet.files.images import ImageReadError, read_array
from dmenet.syndof.writer import FOLDERS, MANIFEST, MANIFEST_FORMAT, SyndofJobError, sample_files
from dmenet.units import round_half_away


@dataclasses.dataclass
class VerifyReport:
    """What `verify_dataset` found.

    expected: stems the manifest lists (or those found, without a manifest), in manifest order.
    problems: stem → list of problems (a missing or unreadable file, a label out of range, …).
    unlisted: stems with files in the folder that the manifest does not list (not an error).
    """

    out_dir: str
    expected: list
    problems: dict
    unlisted: list
    has_manifest: bool

    @property
    def ok(self):
        return not self.problems

    @property
    def broken(self):
        """Stems to remake, in manifest order."""
        return [stem for stem in self.expected if stem in self.problems]


def stems_in_folder(out_dir):
    """Every stem with at least one file of the layout in `out_dir`."""
    out_dir = pathlib.Path(out_dir)
    suffixes = {"blur_map_norm": "_norm.png", "blur_map_binary": "_binary.png",
                "depth_decomposed": "_depth_decomposed.png", "params": ".json"}
    stems = set()
    for folder in FOLDERS:
        suffix = suffixes.get(folder, ".png")
        directory = out_dir / folder
        if directory.is_dir():
            stems.update(path.name[: -len(suffix)] for path in directory.iterdir()
                         if path.name.endswith(suffix) and not path.name.startswith("."))
    return stems


def read_manifest(out_dir):
    """The manifest dict, or None when the folder has none. A damaged manifest raises SyndofJobError."""
    path = pathlib.Path(out_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, OSError) as error:
        raise SyndofJobError(f"{path}: not a readable manifest ({error}); re-run the command that made the dataset "
                             "(finished samples are skipped) to rewrite it") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT or not isinstance(manifest.get("samples"), list):
        raise SyndofJobError(f"{path}: not a SYNDOF manifest of format {MANIFEST_FORMAT}; re-run the command that made the dataset to rewrite it")
    return manifest


def check_sample(out_dir, stem):
    """The problems of one sample (an empty list when it is complete and sound)."""
    files = sample_files(out_dir, stem)
    missing = [name for name, path in files.items() if not path.is_file()]
    if missing:
        return ["missing " + ", ".join(str(files[name].relative_to(out_dir)) for name in missing)]
    problems = []
    try:
        params = json.loads(files["params"].read_text())
        if not isinstance(params, dict):
            raise ValueError("not a JSON object")
    except (ValueError, OSError) as error:
        return [f"{files['params'].relative_to(out_dir)}: unreadable ({error})"]
    if params.get("stem") != stem:
        problems.append(f"params/{stem}.json names stem {params.get('stem')!r}")
    arrays = {}
    for name in ("image", "blur_map", "blur_map_norm", "blur_map_binary", "depth_decomposed"):
        try:
            arrays[name] = read_array(files[name])
        except ImageReadError as error:
            problems.append(f"{files[name].relative_to(out_dir)}: unreadable ({str(error).split(': ', 1)[-1]})")
    if problems:
        return problems
    image = arrays["image"]
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        problems.append(f"image/{stem}.png is not 8-bit RGB ({image.dtype}, shape {image.shape})")
    expected_dtype = {"blur_map": np.uint16, "blur_map_norm": np.uint8, "blur_map_binary": np.uint8, "depth_decomposed": np.uint8}
    for name, dtype in expected_dtype.items():
        array = arrays[name]
        if array.dtype != dtype or array.ndim != 2:
            problems.append(f"{files[name].relative_to(out_dir)} is not {np.dtype(dtype).itemsize * 8}-bit grey ({array.dtype}, shape {array.shape})")
        elif array.shape != image.shape[:2]:
            problems.append(f"{files[name].relative_to(out_dir)} is {array.shape[1]}×{array.shape[0]}, the image {image.shape[1]}×{image.shape[0]}")
    if problems:
        return problems
    if "image_height" in params and (params.get("image_height"), params.get("image_width")) != image.shape[:2]:
        problems.append(f"params/{stem}.json says {params.get('image_width')}×{params.get('image_height')}, the image is {image.shape[1]}×{image.shape[0]}")
    sigma10, norm, binary = arrays["blur_map"], arrays["blur_map_norm"], arrays["blur_map_binary"]
    max_coc = params.get("max_coc_px")
    if not isinstance(max_coc, (int, float)) or max_coc < 1:
        problems.append(f"params/{stem}.json has no valid max_coc_px")
    else:
        limit = int(round_half_away((max_coc - 1) / 4.0 * 10.0))
        if sigma10.max() > limit:
            problems.append(f"blur_map/{stem}.png reaches σ·10 = {sigma10.max()}, above {limit} for max_coc {max_coc:g}")
    if norm.min() != 0 or norm.max() != 255:
        problems.append(f"blur_map_norm/{stem}_norm.png spans {norm.min()}–{norm.max()}, not 0–255")
    if not np.isin(binary, (0, 255)).all():
        problems.append(f"blur_map_binary/{stem}_binary.png holds values other than 0 and 255")
    elif np.any((sigma10 > 0) & (binary != 255)):
        problems.append(f"blur_map_binary/{stem}_binary.png is 0 where blur_map has σ > 0")
    return problems


def verify_dataset(out_dir, workers=None, shard=None):
    """Check every sample of the dataset in `out_dir`.

    Args:
        out_dir: a folder written by `write_dataset` / `write_procedural_dataset` / make_syndof.py.
        workers: threads reading files (default: the number of cores).
        shard: (K, N) to check only the samples shard K of N makes (a shard's own folder before merging).

    Returns:
        VerifyReport.

    Example:
        >>> report = verify_dataset("datasets/syndof")
        >>> report.ok, report.broken
        (True, [])
    """
    out_dir = pathlib.Path(out_dir)
    if not out_dir.is_dir():
        raise SyndofJobError(f"{out_dir}: no such folder; give the --out folder of the dataset to verify")
    manifest = read_manifest(out_dir)
    found = stems_in_folder(out_dir)
    if manifest is not None:
        expected = list(manifest["samples"])
        unlisted = sorted(found - set(expected))
    else:
        expected, unlisted = sorted(found), []
    if shard is not None:
        if manifest is None:
            raise SyndofJobError(f"{out_dir}: no {MANIFEST}, so its shards are unknown; verify without --shard")
        expected = expected[shard[0] :: shard[1]]
        unlisted = []
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:  # PNG decoding releases the GIL
        checked = list(pool.map(lambda stem: check_sample(out_dir, stem), expected))
    problems = {stem: found_problems for stem, found_problems in zip(expected, checked) if found_problems}
    return VerifyReport(str(out_dir), expected, problems, unlisted, manifest is not None)


def remove_samples(out_dir, stems):
    """Delete every file of these samples, so re-running the command that made them remakes them."""
    for stem in stems:
        for path in sample_files(out_dir, stem).values():
            path.unlink(missing_ok=True)
