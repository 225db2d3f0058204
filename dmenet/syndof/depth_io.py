"""Reading depth for SYNDOF: PNG/TIFF 8/16-bit (first channel), Sintel .dpt, .npy, .pfm; a scale to
millimetres; disparity → depth with focal length and baseline; invalid pixels handled explicitly;
and pairing image and depth files by name."""
import dataclasses
import os
import pathlib

import numpy as np
from scipy import ndimage

from dmenet.files.images import IMAGE_SUFFIXES, ImageReadError, read_array

DEPTH_SUFFIXES = (".png", ".tif", ".tiff", ".pgm", ".ppm", ".dpt", ".npy", ".pfm", ".exr")
SINTEL_TAG = 202021.25
INVALID_POLICIES = ("nearest", "farthest", "error")


class DepthError(ValueError):
    """A depth file or depth map that cannot be used; the message says why and what to do."""


def read_dpt(path):
    """MPI Sintel .dpt: float32 tag 202021.25, int32 width, int32 height, then float32 depth rows."""
    path = pathlib.Path(path)
    data = path.read_bytes()
    if len(data) < 12:
        raise DepthError(f"{path}: too short for a Sintel .dpt header")
    tag = np.frombuffer(data, "<f4", 1, 0)[0]
    width, height = (int(v) for v in np.frombuffer(data, "<i4", 2, 4))
    if tag != np.float32(SINTEL_TAG):
        raise DepthError(f"{path}: not a Sintel .dpt file (tag {tag!r}, expected {SINTEL_TAG})")
    if width <= 0 or height <= 0 or len(data) != 12 + 4 * width * height:
        raise DepthError(f"{path}: .dpt size {width}×{height} does not match the file length {len(data)}")
    return np.frombuffer(data, "<f4", width * height, 12).reshape(height, width).astype(np.float64)


def read_pfm(path):
    """Portable float map ('PF' colour / 'Pf' grey; negative scale = little-endian; rows bottom-up)."""
    path = pathlib.Path(path)
    with open(path, "rb") as f:
        kind = f.readline().strip()
        if kind not in (b"PF", b"Pf"):
            raise DepthError(f"{path}: not a PFM file (header {kind[:10]!r})")
        try:
            width, height = (int(v) for v in f.readline().split())
            scale = float(f.readline().strip())
        except ValueError as error:
            raise DepthError(f"{path}: damaged PFM header ({error})") from error
        channels = 3 if kind == b"PF" else 1
        values = np.frombuffer(f.read(), "<f4" if scale < 0 else ">f4")
    if values.size != width * height * channels:
        raise DepthError(f"{path}: PFM holds {values.size} values, expected {width}×{height}×{channels}")
    values = values.reshape(height, width, channels)[::-1, :, 0]
    return values.astype(np.float64)


def read_depth_raw(path):
    """The stored depth/disparity values (float64, H×W), before any scaling; first channel only."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DepthError(f"{path}: no such depth file")
    suffix = path.suffix.lower()
    if suffix == ".dpt":
        return read_dpt(path)
    if suffix == ".pfm":
        return read_pfm(path)
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise DepthError(f"{path}: not a readable .npy array ({error})") from error
        if array.ndim == 3:
            array = array[..., 0]
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
            raise DepthError(f"{path}: expected a 2-D numeric array, got {array.dtype} {array.shape}")
        return array.astype(np.float64)
    try:
        array = read_array(path)
    except ImageReadError as error:
        raise DepthError(str(error)) from error
    if array.ndim == 3:
        array = array[..., 0]
    return array.astype(np.float64)


@dataclasses.dataclass(frozen=True)
class DepthConversion:
    """How stored values become depth in mm.

    scale: multiply stored values by this to get mm (depth) — e.g. 10 for cm, 1000 for m.
    disparity: values are disparities (px, after `scale`); depth = focal_px · baseline_mm / disparity.
    invalid_values: stored values that mean "no depth" (e.g. 65535 sky, 0 unknown); 0, NaN and ±inf
      are always invalid, as are values above max_depth_mm after conversion.
    invalid_policy: 'nearest' (take the nearest valid pixel's depth), 'farthest' (put them at the
      farthest valid depth: right for sky), or 'error'.
    """

    scale: float = 1.0
    disparity: bool = False
    focal_px: float = None
    baseline_mm: float = None
    invalid_values: tuple = ()
    max_depth_mm: float = None
    invalid_policy: str = "nearest"

    def __post_init__(self):
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise DepthError(f"depth scale must be a positive number, got {self.scale}")
        if self.invalid_policy not in INVALID_POLICIES:
            raise DepthError(f"invalid_policy must be one of {INVALID_POLICIES}, got {self.invalid_policy!r}")
        if self.disparity and not (self.focal_px and self.baseline_mm and self.focal_px > 0 and self.baseline_mm > 0):
            raise DepthError("disparity input needs a positive focal length (px) and baseline (mm)")

    def to_mm(self, raw, name="depth"):
        """Stored values → depth in mm with every invalid pixel resolved by the policy."""
        raw = np.asarray(raw, np.float64)
        invalid = ~np.isfinite(raw) | (raw <= 0)
        for value in self.invalid_values:
            invalid |= raw == value
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            values = raw * self.scale
            depth = self.focal_px * self.baseline_mm / values if self.disparity else values
        invalid |= ~np.isfinite(depth) | (depth <= 0)
        if self.max_depth_mm is not None:
            invalid |= depth > self.max_depth_mm
        return resolve_invalid(depth, invalid, self.invalid_policy, name)


def resolve_invalid(depth, invalid, policy, name="depth"):
    if not invalid.any():
        return depth
    if invalid.all():
        raise DepthError(
            f"{name}: no valid depth at all (every pixel is 0, NaN, inf or marked invalid); check that this is the "
            "right depth file and its values (--depth-scale, --invalid-value, --max-depth-mm), or leave the pair out"
        )
    if policy == "error":
        raise DepthError(
            f"{name}: {int(invalid.sum())} of {invalid.size} pixels have no valid depth; "
            "choose an invalid-pixel policy ('nearest' or 'farthest') to fill them"
        )
    depth = depth.copy()
    if policy == "farthest":
        depth[invalid] = depth[~invalid].max()
    else:
        _, (rows, cols) = ndimage.distance_transform_edt(invalid, return_indices=True)
        depth[invalid] = depth[rows[invalid], cols[invalid]]
    return depth


def _relative_stem(path, root):
    relative = pathlib.Path(path).relative_to(root)
    return str(relative.with_suffix("")).replace("\\", "/")


def _collect(root, suffixes):
    root = pathlib.Path(root)
    if root.is_file():
        return {root.stem: root}
    if not root.is_dir():
        raise DepthError(f"{root}: no such file or folder")
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in suffixes and not path.name.startswith("."):
            found[_relative_stem(path, root)] = path
    return found


def pair_files(images, depths):
    """Match image and depth files by relative path without extension (folders searched
    recursively), or a single image with a single depth file. Every file must find its partner;
    otherwise a DepthError lists the unmatched ones."""
    image_files = _collect(images, IMAGE_SUFFIXES)
    depth_files = _collect(depths, DEPTH_SUFFIXES)
    if pathlib.Path(images).is_file() and pathlib.Path(depths).is_file():
        return [(pathlib.Path(images), pathlib.Path(depths))]
    if not image_files:
        raise DepthError(f"{images}: no image files found")
    if not depth_files:
        raise DepthError(f"{depths}: no depth files found")
    unmatched_images = sorted(set(image_files) - set(depth_files))
    unmatched_depths = sorted(set(depth_files) - set(image_files))
    if unmatched_images or unmatched_depths:
        lines = ["image and depth files must pair up by name (relative path without extension):"]
        if unmatched_images:
            lines.append(f"  images without depth ({len(unmatched_images)}): " + ", ".join(unmatched_images[:20]))
        if unmatched_depths:
            lines.append(f"  depths without image ({len(unmatched_depths)}): " + ", ".join(unmatched_depths[:20]))
        lines.append("  (rename them, or list explicit pairs in a --pairs file: 'image_path depth_path' per line)")
        raise DepthError("\n".join(lines))
    return [(image_files[key], depth_files[key]) for key in sorted(image_files)]


def pair_names(image_paths):
    """Unique, filesystem-safe names for images: their paths relative to the common folder, with
    separators replaced by '_' (so 'a/im0.png' and 'b/im0.png' stay distinct)."""
    paths = [pathlib.Path(p).resolve() for p in image_paths]
    if len(paths) == 1:
        return [paths[0].stem]
    root = pathlib.Path(os.path.commonpath([str(p.parent) for p in paths]))
    names = ["_".join(p.relative_to(root).with_suffix("").parts) for p in paths]
    names = ["".join(c if c.isalnum() or c in "-_." else "_" for c in n) for n in names]
    if len(set(names)) != len(names):
        raise DepthError("two images map to the same output name; give them distinct file names")
    return names


def read_pairs_file(path):
    """A text file of 'image_path depth_path [scale]' lines (paths relative to the file, '#'
    comments). Returns (image, depth, scale or None) triples; scale overrides the global one."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DepthError(f"{path}: no such pairs file")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) not in (2, 3):
            raise DepthError(f"{path}:{number}: expected 'image_path depth_path [scale]', got {line!r}")
        image, depth = (path.parent / p for p in parts[:2])
        for item in (image, depth):
            if not item.is_file():
                raise DepthError(f"{path}:{number}: {item} does not exist")
        try:
            scale = float(parts[2]) if len(parts) == 3 else None
        except ValueError:
            raise DepthError(f"{path}:{number}: scale {parts[2]!r} is not a number") from None
        pairs.append((image, depth, scale))
    if not pairs:
        raise DepthError(f"{path}: lists no pairs")
    return pairs
