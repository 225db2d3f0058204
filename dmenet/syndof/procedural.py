"""Procedural RGB-D scenes, so a fresh clone has SYNDOF training data without any download.

A scene is a textured background (a far wall, optionally with a receding ground plane) and a few
textured shapes (rectangles, discs, polygons) at distinct depths, painted far to near. Textures are
crops of scikit-image's bundled photos, tinted, or multi-scale noise. Depths are quantised to a few
dozen values, which keeps the layer count (and the generation time) small.
"""
import dataclasses
import functools
import pathlib
import zlib

import numpy as np
from skimage import data as skdata
from skimage import draw

from dmenet.syndof import blas_threads
from dmenet.syndof.generator import DEFAULT_MAX_COC, synthesize
from dmenet.syndof.writer import JobResult, is_complete, run_jobs, sample_stem, shard_jobs, write_manifest, write_sample

# Photos shipped inside scikit-image (no download needed).
TEXTURE_IMAGES = (
    "astronaut", "brick", "camera", "cat", "chelsea", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "moon", "rocket", "text", "colorwheel", "clock",
)
DEPTH_LEVELS = 24  # quantisation steps of the ground plane


@functools.cache
def _texture_image(name):
    image = np.asarray(getattr(skdata, name)(), np.float64)
    if image.dtype.kind != "f" or image.max() > 1:
        image = image / 255.0
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return image[..., :3]


def _interpolation_matrix(size_out, size_in):
    """Linear interpolation from size_in samples to size_out (align-corners), as a matrix."""
    position = np.linspace(0, size_in - 1, size_out)
    low = np.minimum(np.floor(position).astype(int), size_in - 2) if size_in > 1 else np.zeros(size_out, int)
    weight = position - low
    matrix = np.zeros((size_out, size_in))
    matrix[np.arange(size_out), low] = 1 - weight
    if size_in > 1:
        matrix[np.arange(size_out), low + 1] += weight
    return matrix


def resize_linear(image, shape):
    """Bilinear resize of an H×W×C array by two small matrix products (fast, no anti-aliasing)."""
    rows = _interpolation_matrix(shape[0], image.shape[0])
    cols = _interpolation_matrix(shape[1], image.shape[1])
    with blas_threads.limited():  # tiny products: BLAS threads only add overhead
        return np.stack([rows @ image[..., c] @ cols.T for c in range(image.shape[2])], axis=2)


def noise_texture(rng, shape):
    """Coloured multi-scale noise: white noise at 1/1, 1/3, 1/9 and 1/27 resolution, each smoothly
    upsampled, with random weights."""
    height, width = shape
    texture = np.zeros((height, width, 3))
    for scale in (1, 3, 9, 27):
        small = rng.standard_normal((-(-height // scale) + 1, -(-width // scale) + 1, 3))
        layer = resize_linear(small, (height, width)) if scale > 1 else small[:height, :width]
        texture += layer / (layer.std() + 1e-12) * rng.uniform(0.2, 1.0)
    texture -= texture.min()
    return texture / max(texture.max(), 1e-12)


def photo_texture(rng, shape):
    """A random crop of a bundled photo, randomly rescaled, flipped and colour-tinted."""
    source = _texture_image(TEXTURE_IMAGES[rng.integers(len(TEXTURE_IMAGES))])
    height, width = shape
    zoom = rng.uniform(0.5, 1.5)
    crop_h = min(source.shape[0], max(8, int(height / zoom)))
    crop_w = min(source.shape[1], max(8, int(width / zoom)))
    top = rng.integers(0, source.shape[0] - crop_h + 1)
    left = rng.integers(0, source.shape[1] - crop_w + 1)
    crop = resize_linear(source[top : top + crop_h, left : left + crop_w], (height, width))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    tint = rng.uniform(0.6, 1.2, 3)
    return np.clip(crop * tint, 0, 1)


def random_texture(rng, shape):
    return photo_texture(rng, shape) if rng.random() < 0.7 else noise_texture(rng, shape)


def random_shape_mask(rng, shape):
    height, width = shape
    mask = np.zeros(shape, bool)
    kind = rng.integers(3)
    centre_r, centre_c = rng.uniform(0, height), rng.uniform(0, width)
    size = rng.uniform(0.12, 0.45) * min(height, width)
    if kind == 0:
        r0, c0 = int(centre_r - size / 2), int(centre_c - size * rng.uniform(0.3, 1.0))
        rr, cc = draw.rectangle((r0, c0), extent=(int(size), int(size * rng.uniform(0.6, 2.0))), shape=shape)
    elif kind == 1:
        rr, cc = draw.ellipse(centre_r, centre_c, size / 2, size * rng.uniform(0.3, 0.8), shape=shape, rotation=rng.uniform(0, np.pi))
    else:
        corners = rng.integers(3, 8)
        angles = np.sort(rng.uniform(0, 2 * np.pi, corners))
        radii = size * rng.uniform(0.4, 0.8, corners)
        rr, cc = draw.polygon(centre_r + radii * np.sin(angles), centre_c + radii * np.cos(angles), shape=shape)
    mask[rr, cc] = True
    return mask


def make_scene(rng, image_size=(256, 320), objects=(3, 8)):
    """A random RGB-D scene: (image H×W×3 in [0, 1], depth H×W in mm)."""
    height, width = image_size
    if height < 16 or width < 16:
        raise ValueError(f"procedural scenes need at least 16×16 pixels, got {width}×{height}")
    far = rng.uniform(6000, 30000)
    image = random_texture(rng, (height, width))
    depth = np.full((height, width), far)
    if rng.random() < 0.6:  # a ground plane receding from the bottom edge up to the horizon
        horizon = int(rng.uniform(0.3, 0.7) * height)
        near_ground = rng.uniform(800, 2500)
        rows = np.arange(horizon, height)
        t = (rows - horizon + 1) / (height - horizon)
        ground = near_ground / np.maximum(t, near_ground / far)  # perspective: depth ∝ 1/row offset
        levels = np.geomspace(near_ground, far, DEPTH_LEVELS)
        ground = levels[np.abs(np.log(ground)[:, None] - np.log(levels)[None]).argmin(axis=1)]
        depth[horizon:] = ground[:, None]
        image[horizon:] = random_texture(rng, (height - horizon, width))
    count = rng.integers(objects[0], objects[1] + 1)
    object_depths = np.sort(np.round(rng.uniform(600, far * 0.8, count), -1))[::-1]  # painted far → near
    for object_depth in object_depths:
        mask = random_shape_mask(rng, (height, width))
        if not mask.any():
            continue
        image[mask] = random_texture(rng, (height, width))[mask]
        depth[mask] = object_depth
    return np.clip(image, 0, 1), depth


@dataclasses.dataclass(frozen=True)
class ProceduralJob:
    index: int
    seed: int
    image_size: tuple
    max_coc: int

    @property
    def stem(self):
        return procedural_stem(self.index)

    @property
    def source(self):
        return f"procedural scene {self.index} (seed {self.seed})"


def procedural_stem(index):
    return sample_stem("procedural", index)


def run_procedural_job(job, out_dir):
    if is_complete(out_dir, job.stem):
        return JobResult(job.stem, job.source)
    rng = np.random.default_rng(np.random.SeedSequence([int(job.seed), zlib.crc32(b"procedural"), int(job.index)]))
    image, depth = make_scene(rng, job.image_size)
    # Procedural scenes have few distinct depths by design: accept the first camera draw.
    sample = synthesize(image, depth, job.max_coc, rng=rng, layer_range=(1, np.iinfo(np.int64).max))
    extra = {"source": "procedural", "seed": job.seed, "sample_index": job.index,
             "image_height": job.image_size[0], "image_width": job.image_size[1]}
    write_sample(out_dir, job.stem, sample, extra)
    return JobResult(job.stem, job.source, made=True, layers=int(sample.stack.count))


def write_procedural_dataset(out_dir, count, seed=0, image_size=(256, 320), max_coc=DEFAULT_MAX_COC, workers=None,
                             progress=True, shard=None):
    """Write `count` procedural SYNDOF samples in the official layout.

    Args:
        out_dir: the dataset folder.
        count: number of scenes; stems are procedural_000, procedural_001, …
        seed: the same seed gives byte-identical files; re-running skips samples already written.
        image_size: (height, width) of every scene.
        max_coc: largest CoC in px.
        workers: processes (default: all cores).
        shard: (K, N) to make only shard K of N; None for all.

    Returns:
        list: the stems of this shard's samples.

    Example:
        >>> write_procedural_dataset("syndof_procedural", 2, image_size=(64, 80), workers=1, progress=False)
        ['procedural_000', 'procedural_001']
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    image_size = (int(image_size[0]), int(image_size[1]))
    jobs = [ProceduralJob(index, int(seed), image_size, int(max_coc)) for index in range(int(count))]
    settings = {"kind": "procedural", "seed": int(seed), "count": int(count), "image_size": list(image_size), "max_coc": int(max_coc)}
    pathlib.Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_manifest(out_dir, [job.stem for job in jobs], settings)
    results = run_jobs(run_procedural_job, shard_jobs(jobs, shard), out_dir, workers, progress,
                       description="SYNDOF procedural", strict=True)
    return [result.stem for result in results]
