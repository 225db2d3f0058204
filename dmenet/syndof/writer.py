"""Writing SYNDOF datasets in the official on-disk layout, in parallel, resumably and atomically.

Layout under the output folder, per sample <stem>:
  image/<stem>.png                               defocused image, 8-bit RGB
  blur_map/<stem>.png                            σ·10 as 16-bit grey (σ in px; value 70 = 7 px)
  blur_map_norm/<stem>_norm.png                  σ / max σ of the image, 8-bit
  blur_map_binary/<stem>_binary.png              255 where CoC > 1 px (defocused), else 0
  depth_decomposed/<stem>_depth_decomposed.png   the merged layer depths, 8-bit preview
  params/<stem>.json                             camera and generator parameters (written last)
  manifest.json                                  every sample the command makes, and its settings
A sample whose files all exist is finished; re-running skips it. Stems are <name>_<k:03d>, and
sample k of an image is drawn from a generator seeded by (seed, name, k), so any subset can be
(re)made alone and the same seed always gives the same bytes. That is also what makes sharding
exact: shard K of N makes every N-th sample of the full list (`shard=(K, N)`), and the shards'
folders merged equal one unsharded run byte for byte (every shard writes the same manifest).

A sample that fails (unreadable file, constant depth, …) is skipped and reported, and the others are
still made; `strict=True` stops at the first failure instead.
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

from dmenet.files.images import ImageReadError, atomic_path, read_image, write_png
from dmenet.syndof.depth_io import DepthConversion, DepthError
from dmenet.syndof.generator import CAMERA_DRAWS, DEFAULT_MAX_COC, LAYER_RANGE, synthesize
from dmenet.syndof.labels import to_uint8

FOLDERS = ("image", "blur_map", "blur_map_norm", "blur_map_binary", "depth_decomposed", "params")
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "dmenet-syndof-manifest-1"


class SyndofJobError(ValueError):
    """A sample that could not be made (raised only in strict mode; otherwise it is reported)."""


def parse_shard(text):
    """'K/N' → (K, N) with 0 ≤ K < N: this job's share of the samples (K counts from 0, as
    Kubernetes' JOB_COMPLETION_INDEX and SLURM's --array=0-(N-1) do).

    Example:
        >>> parse_shard("2/4")
        (2, 4)
    """
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise SyndofJobError(f"shard {text!r} is not of the form K/N (e.g. 0/4 for the first of four jobs)") from None
    if count < 1 or not 0 <= index < count:
        raise SyndofJobError(f"shard {text!r}: need 0 ≤ K < N (shards count from 0: 0/{max(count, 1)} … {max(count, 1) - 1}/{max(count, 1)})")
    return index, count


def shard_jobs(jobs, shard):
    """The jobs of shard (K, N): every N-th of the full, deterministic job list, from the K-th."""
    if shard is None:
        return list(jobs)
    index, count = shard
    return list(jobs)[index::count]


@dataclasses.dataclass(frozen=True)
class JobResult:
    """What happened to one sample: made now, found finished (`made` False), or failed (`error`)."""

    stem: str
    source: str
    error: str = None
    made: bool = False
    layers: int = None
    layers_in_range: bool = True


@dataclasses.dataclass
class WriteReport:
    """The outcome of writing (a shard of) a dataset.

    results: one JobResult per sample of this shard, in job order.
    total: samples in the whole dataset (all shards).
    """

    out_dir: str
    results: list
    total: int
    shard: tuple = None
    layer_range: tuple = LAYER_RANGE

    @property
    def stems(self):
        """Samples that exist now (made in this run or already finished)."""
        return [result.stem for result in self.results if result.error is None]

    @property
    def failures(self):
        return [result for result in self.results if result.error is not None]

    @property
    def out_of_range(self):
        """Samples made in this run whose layer count stayed outside `layer_range` after every draw."""
        return [result for result in self.results if result.error is None and result.made and not result.layers_in_range]

    def failure_lines(self):
        """One line per distinct failure (a bad pair fails all its samples the same way)."""
        grouped = {}
        for failure in self.failures:
            grouped.setdefault(failure.error, []).append(failure.stem)
        lines = []
        for error, stems in grouped.items():
            which = stems[0] if len(stems) == 1 else f"{len(stems)} samples {stems[0]} … {stems[-1]}"
            lines.append(f"{error} [skipped {which}]")
        return lines

    def layer_warning(self):
        """One line about samples outside the official layer range, or None."""
        outside = self.out_of_range
        if not outside:
            return None
        examples = ", ".join(f"{result.stem} ({result.layers} layers)" for result in outside[:5])
        more = f" and {len(outside) - 5} more" if len(outside) > 5 else ""
        low, high = self.layer_range
        return (
            f"{len(outside)} sample{'s' if len(outside) > 1 else ''} kept a layer count outside {low}–{high} after "
            f"{CAMERA_DRAWS} camera draws, as the official generator does: {examples}{more}; their params say "
            "\"layers_in_range\": false (scenes with few distinct depths cannot reach the range; leave them out if it matters)"
        )


def write_manifest(out_dir, stems, settings):
    """The list of every sample of the dataset (all shards) and the settings that make them; each
    shard writes the same bytes, so merged folders agree and `verify` knows what should exist."""
    manifest = {"format": MANIFEST_FORMAT, "samples": list(stems), "settings": settings}
    path = pathlib.Path(out_dir) / MANIFEST
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    if path.is_file() and path.read_text() == text:
        return path
    with atomic_path(path) as temporary:
        temporary.write_text(text)
    return path


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

    @property
    def stem(self):
        return sample_stem(self.name, self.index)

    @property
    def source(self):
        return f"{self.image_path} + {self.depth_path}"

    @property
    def paths(self):
        return (str(self.image_path), str(self.depth_path))


def load_pair(image_path, depth_path, conversion, max_side=None):
    """Image (float64 RGB) and depth (mm), same size, optionally downscaled so the longer side is
    at most `max_side` (image with anti-aliasing; depth by nearest sampling, so no new depths)."""
    image = read_image(image_path).astype(np.float64)
    from dmenet.syndof.depth_io import read_depth_raw

    raw = read_depth_raw(depth_path)
    if raw.shape != image.shape[:2]:
        raise DepthError(
            f"{depth_path}: depth is {raw.shape[1]}×{raw.shape[0]} but {image_path} is {image.shape[1]}×{image.shape[0]}; "
            "pair the right files or resize one to the other"
        )
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
    if is_complete(out_dir, job.stem):
        return JobResult(job.stem, job.source)
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
    write_sample(out_dir, job.stem, sample, extra)
    return JobResult(job.stem, job.source, made=True, layers=int(sample.stack.count), layers_in_range=sample.camera.layers_in_range)


def _describe_failure(job, error):
    """One line naming the file at fault. Our error classes already start with the file; the
    generator's input errors (constant depth, …) are about the depth map, so they name it."""
    if not isinstance(error, (DepthError, ImageReadError, ValueError)):
        return f"{job.source}: unexpected {type(error).__name__}: {error} (please report this with the files)"
    message = str(error).strip()
    paths = getattr(job, "paths", ())
    if any(message.startswith(path) for path in paths):
        return message
    return f"{paths[-1] if paths else job.source}: {message}"


def _run_job(arguments):
    function, job, out_dir = arguments
    try:
        return function(job, out_dir)
    except Exception as error:  # one bad sample must not end the batch; the caller decides (strict)
        return JobResult(job.stem, job.source, error=_describe_failure(job, error))


def run_jobs(function, jobs, out_dir, workers=None, progress=True, description="SYNDOF", strict=False):
    """Run `function(job, out_dir)` → JobResult for every job, on `workers` processes (default: all
    cores), with a progress bar; returns the results in job order. A job that raises becomes a
    failed result, or, with `strict`, raises SyndofJobError at once."""
    from tqdm import tqdm

    out_dir = pathlib.Path(out_dir)
    for folder in FOLDERS:
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    workers = min(workers, len(jobs)) if jobs else 1
    arguments = [(function, job, str(out_dir)) for job in jobs]
    bar = tqdm(total=len(jobs), desc=description, unit="img", disable=not progress)
    results = []

    def collect(result):
        if strict and result.error is not None:
            raise SyndofJobError(result.error)
        results.append(result)
        bar.update()

    try:
        if workers <= 1:
            for argument in arguments:
                collect(_run_job(argument))
        else:
            # 'spawn' keeps workers independent of whatever the parent initialised (e.g. TensorFlow);
            # one process per core, each single-threaded.
            with _environment(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1"), _main_script_hidden():
                pool = multiprocessing.get_context("spawn").Pool(workers)
            with pool:  # leaving early (strict) terminates the workers
                for result in pool.imap(_run_job, arguments):
                    collect(result)
    finally:
        bar.close()
    return results


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
                  workers=None, max_side=None, names=None, scales=None, progress=True, layer_range=LAYER_RANGE,
                  strict=False, shard=None):
    """Make `per_image` samples from each (image, depth) pair into `out_dir`.

    Args:
        pairs: (image path, depth path) pairs.
        out_dir: the dataset folder (official layout, see the module docstring).
        per_image: samples (random cameras) per pair; sample k of a pair has stem `<name>_<k:03d>`.
        seed: the same seed gives byte-identical files.
        max_coc: largest CoC in px (σ_max = (max_coc − 1)/4).
        conversion: how stored depth values become mm (DepthConversion); `scales` overrides its
            scale per pair.
        workers: processes (default: all cores).
        max_side: downscale inputs so the longer side is at most this.
        names: output names per pair (default: from the image paths).
        layer_range: redraw the camera until the layer count is in this range (22 draws at most).
        strict: stop at the first failing sample (SyndofJobError) instead of skipping it.
        shard: (K, N) to make only shard K of N (every N-th sample from the K-th); None for all.

    Returns:
        WriteReport: `.stems` made or found finished, `.failures`, `.out_of_range`.

    Example:
        >>> report = write_dataset([("rgb/a.png", "depth/a.png")], "out", per_image=2)
        >>> report.stems
        ['a_000', 'a_001']
    """
    from dmenet.syndof.depth_io import pair_names

    if per_image < 1:
        raise ValueError("per_image must be at least 1")
    names = names or pair_names([image for image, _ in pairs])
    jobs = []
    for (image, depth), name, scale in zip(pairs, names, scales or [None] * len(pairs)):
        pair_conversion = conversion if scale is None else dataclasses.replace(conversion, scale=float(scale))
        for index in range(per_image):
            jobs.append(PairJob(str(image), str(depth), name, index, int(seed), int(max_coc), pair_conversion, max_side, tuple(layer_range)))
    settings = {"kind": "rgbd", "seed": int(seed), "max_coc": int(max_coc), "per_image": int(per_image),
                "max_side": max_side, "layer_range": list(layer_range), "depth_conversion": dataclasses.asdict(conversion)}
    pathlib.Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_manifest(out_dir, [job.stem for job in jobs], settings)
    results = run_jobs(run_pair_job, shard_jobs(jobs, shard), out_dir, workers, progress, strict=strict)
    return WriteReport(str(out_dir), results, len(jobs), shard, tuple(layer_range))
