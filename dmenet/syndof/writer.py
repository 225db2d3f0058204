"""Writing SYNDOF datasets in the official on-disk layout, in parallel, resumably and atomically.

Layout under the output folder, per sample <stem>:
  image/<stem>.png                               defocused image, 8-bit RGB
  blur_map/<stem>.png                            σ·10 as 16-bit grey (σ in px; value 70 = 7 px)
  blur_map_norm/<stem>_norm.png                  σ / max σ of the image, 8-bit
  blur_map_binary/<stem>_binary.png              255 where CoC > 1 px (defocused), else 0
  depth_decomposed/<stem>_depth_decomposed.png   the merged layer depths, 8-bit preview
  params/<stem>.json                             camera and generator parameters (written last)
A sample whose JSON exists is finished; re-running skips it. Stems are <name>_<k:03d>, and sample k
of an image is drawn from a generator seeded by (seed, name, k), so any subset can be (re)made alone
and the same seed always gives the same bytes.
"""
import contextlib
import dataclasses
import json
import multiprocessing
import os
import pathlib
import sys
import zlib

import numpy as np

from dmenet.image_io import atomic_path, read_image, write_png
from dmenet.syndof.depth_io import DepthConversion, DepthError
from dmenet.syndof.generator import DEFAULT_MAX_COC, LAYER_RANGE, synthesize
from dmenet.syndof.labels import to_uint8

FOLDERS = ("image", "blur_map", "blur_map_norm", "blur_map_binary", "depth_decomposed", "params")


def sample_files(out_dir, stem):
    out_dir = pathlib.Path(out_dir)
    return {
        "image": out_dir / "image" / f"{stem}.png",
        "blur_map": out_dir / "blur_map" / f"{stem}.png",
        "blur_map_norm": out_dir / "blur_map_norm" / f"{stem}_norm.png",
        "blur_map_binary": out_dir / "blur_map_binary" / f"{stem}_binary.png",
        "depth_decomposed": out_dir / "depth_decomposed" / f"{stem}_depth_decomposed.png",
        "params": out_dir / "params" / f"{stem}.json",
    }


def is_complete(out_dir, stem):
    return all(path.is_file() for path in sample_files(out_dir, stem).values())


def sample_stem(name, index):
    return f"{name}_{index:03d}"


def sample_rng(seed, name, index):
    """Independent, order-free stream per sample: the same (seed, name, k) always draws the same."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(name.encode()), int(index)]))


def write_sample(out_dir, stem, sample, extra_params=None):
    """All files of one sample, each atomically; the parameters JSON last, marking it finished."""
    files = sample_files(out_dir, stem)
    write_png(files["image"], sample.blurred_uint8)
    write_png(files["blur_map"], sample.labels.sigma_uint16)
    write_png(files["blur_map_norm"], to_uint8(sample.labels.sigma_norm))
    write_png(files["blur_map_binary"], to_uint8(sample.labels.binary))
    write_png(files["depth_decomposed"], sample.depth_preview)
    params = {"stem": stem, **sample.parameters(), **(extra_params or {})}
    with atomic_path(files["params"]) as temporary:
        temporary.write_text(json.dumps(params, indent=1, sort_keys=True) + "\n")


@dataclasses.dataclass(frozen=True)
class PairJob:
    """One sample to make from an image/depth file pair."""

    image_path: str
    depth_path: str
    name: str
    index: int
    seed: int
    max_coc: int
    conversion: DepthConversion
    max_side: int = None
    layer_range: tuple = LAYER_RANGE


def load_pair(image_path, depth_path, conversion, max_side=None):
    """Image (float64 RGB) and depth (mm), same size, optionally downscaled so the longer side is
    at most `max_side` (image with anti-aliasing; depth by nearest sampling, so no new depths)."""
    image = read_image(image_path).astype(np.float64)
    from dmenet.syndof.depth_io import read_depth_raw

    raw = read_depth_raw(depth_path)
    if raw.shape != image.shape[:2]:
        raise DepthError(f"{depth_path}: depth is {raw.shape[1]}×{raw.shape[0]} but {image_path} is {image.shape[1]}×{image.shape[0]}")
    depth = conversion.to_mm(raw, name=str(depth_path))
    if max_side and max(image.shape[:2]) > max_side:
        image, depth = downscale(image, depth, max_side)
    return image, depth


def downscale(image, depth, max_side):
    from skimage.transform import resize

    height, width = depth.shape
    factor = max_side / max(height, width)
    size = (max(3, round(height * factor)), max(3, round(width * factor)))
    image = resize(image, size + (3,), order=1, anti_aliasing=True, mode="edge")
    rows = np.minimum(((np.arange(size[0]) + 0.5) / factor).astype(int), height - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) / factor).astype(int), width - 1)
    return np.clip(image, 0, 1), depth[np.ix_(rows, cols)]


def run_pair_job(job, out_dir):
    stem = sample_stem(job.name, job.index)
    if is_complete(out_dir, stem):
        return stem
    image, depth = load_pair(job.image_path, job.depth_path, job.conversion, job.max_side)
    sample = synthesize(image, depth, job.max_coc, rng=sample_rng(job.seed, job.name, job.index), layer_range=job.layer_range)
    extra = {
        "source_image": str(job.image_path),
        "source_depth": str(job.depth_path),
        "depth_scale_to_mm": job.conversion.scale,
        "seed": job.seed,
        "sample_index": job.index,
        "image_height": int(image.shape[0]),
        "image_width": int(image.shape[1]),
    }
    write_sample(out_dir, stem, sample, extra)
    return stem


def _run_job(arguments):
    function, job, out_dir = arguments
    return function(job, out_dir)


def run_jobs(function, jobs, out_dir, workers=None, progress=True, description="SYNDOF"):
    """Run `function(job, out_dir)` for every job, on `workers` processes (default: all cores),
    with a progress bar; returns the stems in job order."""
    from tqdm import tqdm

    out_dir = pathlib.Path(out_dir)
    for folder in FOLDERS:
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    workers = min(workers, len(jobs)) if jobs else 1
    arguments = [(function, job, str(out_dir)) for job in jobs]
    bar = tqdm(total=len(jobs), desc=description, unit="img", disable=not progress)
    stems = []
    try:
        if workers <= 1:
            for argument in arguments:
                stems.append(_run_job(argument))
                bar.update()
        else:
            # 'spawn' keeps workers independent of whatever the parent initialised (e.g. TensorFlow);
            # one process per core, each single-threaded.
            with _environment(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1"), _main_script_hidden():
                pool = multiprocessing.get_context("spawn").Pool(workers)
            with pool:
                for stem in pool.imap(_run_job, arguments):
                    stems.append(stem)
                    bar.update()
    finally:
        bar.close()
    return stems


@contextlib.contextmanager
def _main_script_hidden():
    """Spawned workers re-run the parent's main *script* (e.g. train.py importing TensorFlow) before
    they start; the jobs only need dmenet.syndof, so the script path is hidden while they start."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


@contextlib.contextmanager
def _environment(**values):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def write_dataset(pairs, out_dir, per_image=1, seed=0, max_coc=DEFAULT_MAX_COC, conversion=DepthConversion(),
                  workers=None, max_side=None, names=None, scales=None, progress=True, layer_range=LAYER_RANGE):
    """Make `per_image` samples from each (image, depth) pair into `out_dir`; returns their stems."""
    from dmenet.syndof.depth_io import pair_names

    if per_image < 1:
        raise ValueError("per_image must be at least 1")
    names = names or pair_names([image for image, _ in pairs])
    jobs = []
    for (image, depth), name, scale in zip(pairs, names, scales or [None] * len(pairs)):
        pair_conversion = conversion if scale is None else dataclasses.replace(conversion, scale=float(scale))
        for index in range(per_image):
            jobs.append(PairJob(str(image), str(depth), name, index, int(seed), int(max_coc), pair_conversion, max_side, tuple(layer_range)))
    return run_jobs(run_pair_job, jobs, out_dir, workers, progress)
