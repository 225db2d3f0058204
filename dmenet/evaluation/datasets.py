"""Benchmark datasets as lists of (stem, image, ground truth) with the protocol facts they imply.

- CUHK (Shi et al. 2014): `image/` + `gt/`, masks 255 = blurred. Splits: DMENet 504/200 (numbers
  0001–0504 / 0505–0704, generated here), BTBNet 604/100 or any other via a list file.
- DUT (Zhao et al. 2018): the same layout, masks 255 = sharp.
- any folder of images with masks: polarity given by the user.
- RTF (22 images): ground truth is a MATLAB `.mat` holding `blurMap` (disk-PSF radius), v5 or v7.3.
- SYNDOF test: the official generator's layout, `blur_map/<stem>.png` = uint16(σ·10).
Pairing is by file stem; anything unpaired, missing or of the wrong size is reported all at once.
"""
import dataclasses
import pathlib
import re

import numpy as np
from PIL import Image

from dmenet import image_io
from dmenet.encoding import DEFAULT_MAX_COC, sigma_max_for

# The DMENet split of CUHK's 704 defocused images (its released test maps are 0505–0704).
DMENET_SPLITS = {"dmenet-train": (1, 504), "dmenet-test": (505, 704)}
SPLITS = ("all", *DMENET_SPLITS)
POLARITIES = ("blurred-white", "sharp-white")  # which class the mask's bright value marks


class DatasetError(ValueError):
    """Ground truth that is missing, unpaired, unreadable or of the wrong size; lists the files."""


def problem_list(title, items, limit=20):
    items = list(items)
    shown = "\n  ".join(str(item) for item in items[:limit])
    more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"{title} ({len(items)}):\n  {shown}{more}"


@dataclasses.dataclass(frozen=True)
class Sample:
    stem: str
    image: pathlib.Path | None  # None when scoring predictions without the photos
    truth: pathlib.Path


def _stem_number(stem):
    match = re.search(r"(\d+)$", stem)
    return int(match.group(1)) if match else None


def read_split_file(path):
    """Stems, one per line; blank lines and '#' comments ignored; extensions tolerated."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DatasetError(f"split file {path} does not exist")
    stems = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            stems.append(pathlib.Path(line).stem if pathlib.Path(line).suffix.lower() in image_io.IMAGE_SUFFIXES else line)
    if not stems:
        raise DatasetError(f"split file {path} lists no images")
    return stems


def select_split(stems, split="all", split_file=None):
    """The stems of a named split (or a list file) among `stems`; missing ones are an error."""
    if split_file is not None:
        wanted = read_split_file(split_file)
        missing = sorted(set(wanted) - set(stems))
        if missing:
            raise DatasetError(problem_list(f"split file {split_file} names images without ground truth", missing))
        return wanted
    if split == "all":
        return sorted(stems)
    if split not in DMENET_SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)} or pass a split file")
    low, high = DMENET_SPLITS[split]
    # CUHK's full release mixes out_of_focusNNNN with motionNNNN; the splits number the defocus part.
    defocus = [stem for stem in stems if stem.lower().startswith("out_of_focus")]
    by_number = {}
    for stem in defocus or stems:
        number = _stem_number(stem)
        if number is not None and low <= number <= high:
            if number in by_number:
                raise DatasetError(f"split {split}: {by_number[number]} and {stem} share the number {number}; "
                                   "pass --split-file to say which images to use")
            by_number[number] = stem
    missing = [number for number in range(low, high + 1) if number not in by_number]
    if missing:
        raise DatasetError(
            problem_list(
                f"split {split} needs images numbered {low:04d}-{high:04d}; ground truth is missing for numbers",
                [f"{number:04d}" for number in missing],
            )
            + "\n(the CUHK test split is distributed separately; use --split all or --split-file for other folders)"
        )
    return [by_number[number] for number in range(low, high + 1)]


def displayed_size(path):
    """(height, width) of an image as read_array will return it (EXIF rotation applied), from the header."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except (OSError, ValueError, SyntaxError) as error:
        raise image_io.ImageReadError(f"{path}: not a readable image ({error})") from error
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def _files_by_stem(folder, suffixes):
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"folder {folder} does not exist")
    found, duplicates = {}, []
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes and not path.name.startswith("."):
            if path.stem in found:
                duplicates.append(f"{found[path.stem].name} / {path.name}")
            found[path.stem] = path
    if duplicates:
        raise DatasetError(problem_list(f"{folder} holds several files per image", duplicates))
    return found


class Dataset:
    """Shared behaviour: a sorted sample list, pairing checks, and the protocol description."""

    name = "dataset"
    task = "binary"  # or "regression"
    truth_suffixes = image_io.IMAGE_SUFFIXES
    allows_size_mismatch = False  # True where the protocol itself compares a common crop (RTF)

    def __init__(self, truth_dir, image_dir=None, split="all", split_file=None, require_images=False):
        self.truth_dir = pathlib.Path(truth_dir)
        self.image_dir = pathlib.Path(image_dir) if image_dir is not None else None
        truths = {self.stem_of_truth(path): path for path in _files_by_stem(self.truth_dir, self.truth_suffixes).values()}
        if not truths:
            raise DatasetError(f"no ground-truth files in {self.truth_dir}")
        self.split = split if split_file is None else f"file:{pathlib.Path(split_file).name}"
        stems = select_split(list(truths), split, split_file)
        images = {}
        if self.image_dir is not None and (require_images or self.image_dir.is_dir()):
            images = _files_by_stem(self.image_dir, image_io.IMAGE_SUFFIXES)
            without_image = [truths[stem].name for stem in stems if stem not in images]
            if without_image:
                raise DatasetError(problem_list(f"ground truth without an image in {self.image_dir}", without_image))
            if split == "all" and split_file is None:
                without_truth = sorted(set(images) - set(truths))
                if without_truth:
                    raise DatasetError(
                        problem_list(f"images without ground truth in {self.truth_dir}", [images[s].name for s in without_truth])
                    )
        elif require_images:
            raise DatasetError(f"image folder {self.image_dir} is needed to run a network but does not exist")
        self.samples = [Sample(stem, images.get(stem), truths[stem]) for stem in stems]
        self.check_sizes()

    def stem_of_truth(self, path):
        return path.stem

    def truth_size(self, sample):
        return displayed_size(sample.truth)

    def check_sizes(self):
        """Every image must have its ground truth's size (checked from headers, before any work)."""
        problems = []
        for sample in self.samples:
            if sample.image is None:
                continue
            try:
                image_size, truth_size = displayed_size(sample.image), self.truth_size(sample)
            except (image_io.ImageReadError, DatasetError) as error:
                problems.append(str(error))
                continue
            if image_size != truth_size and not self.allows_size_mismatch:
                problems.append(f"{sample.image.name} is {image_size[1]}x{image_size[0]} but "
                                f"{sample.truth.name} is {truth_size[1]}x{truth_size[0]}")
        if problems:
            raise DatasetError(problem_list("images and ground truth that do not pair", problems))

    def load_truth(self, sample):
        raise NotImplementedError

    def protocol(self):
        raise NotImplementedError


class MaskDataset(Dataset):
    """Binary blur masks; `polarity` says whether the bright value marks blurred or sharp pixels."""

    def __init__(self, truth_dir, image_dir=None, polarity="blurred-white", name="folder", **kwargs):
        if polarity not in POLARITIES:
            raise DatasetError(f"unknown mask polarity {polarity!r}; choose {' or '.join(POLARITIES)}")
        self.polarity = polarity
        self.name = name
        super().__init__(truth_dir, image_dir, **kwargs)

    def load_truth(self, sample):
        """Boolean H×W, True = blurred. Masks are binarised at half their bit depth's range."""
        mask = image_io.read_mask(sample.truth)
        bright = mask > (np.iinfo(mask.dtype).max // 2 if mask.dtype.kind in "ui" else 0.5)
        return bright if self.polarity == "blurred-white" else ~bright

    def protocol(self):
        bright = "blurred" if self.polarity == "blurred-white" else "sharp"
        return {
            "dataset": self.name,
            "split": self.split,
            "images": len(self.samples),
            "ground_truth": f"binary mask, bright (>= half range) = {bright}; positive class = blurred",
        }


def cuhk(root, split="dmenet-test", split_file=None, require_images=False, image_dir=None, truth_dir=None):
    root = pathlib.Path(root)
    return MaskDataset(truth_dir or root / "gt", image_dir or root / "image", "blurred-white", "cuhk",
                       split=split, split_file=split_file, require_images=require_images)


def dut(root, split="all", split_file=None, require_images=False, image_dir=None, truth_dir=None):
    root = pathlib.Path(root)
    return MaskDataset(truth_dir or root / "gt", image_dir or root / "image", "sharp-white", "dut",
                       split=split, split_file=split_file, require_images=require_images)


def read_mat_blur_map(path, key="blurMap"):
    """The `key` matrix of a MATLAB file: v5 through scipy, v7.3 (HDF5, stored transposed) through h5py."""
    import h5py
    import scipy.io

    path = pathlib.Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as handle:
                if key not in handle:
                    raise DatasetError(f"{path}: no variable {key!r} (it holds {', '.join(handle.keys()) or 'nothing'})")
                array = np.asarray(handle[key]).T
        else:
            contents = scipy.io.loadmat(path)
            if key not in contents:
                variables = [name for name in contents if not name.startswith("__")]
                raise DatasetError(f"{path}: no variable {key!r} (it holds {', '.join(variables) or 'nothing'})")
            array = np.asarray(contents[key])
    except DatasetError:
        raise
    except Exception as error:  # scipy/h5py raise ValueError, TypeError, OSError... on damaged files
        raise DatasetError(f"{path}: not a readable MATLAB file ({error})") from error
    if array.ndim != 2 or array.size == 0 or array.dtype.kind not in "fiu":
        raise DatasetError(f"{path}: {key} must be a numeric 2-D matrix, got {array.dtype} {array.shape}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise DatasetError(f"{path}: {key} contains NaN or infinite values")
    return array


class RtfDataset(Dataset):
    """RTF: `.mat` files with the disk-PSF radius map `blurMap`; images paired by stem."""

    name = "rtf"
    task = "regression"
    truth_suffixes = (".mat",)
    allows_size_mismatch = True  # the protocol compares the common top-left crop

    def truth_size(self, sample):
        return self.load_truth(sample).shape

    def load_truth(self, sample):
        return read_mat_blur_map(sample.truth)

    def protocol(self):
        return {
            "dataset": "rtf",
            "split": self.split,
            "images": len(self.samples),
            "ground_truth": "disk-PSF radius (blurMap) -> Gaussian sigma by nearest radius in the 23-entry "
                            "table 0.5..6.0 (step 0.25), ties to the smaller radius",
            "conversion": "predicted sigma clipped to [0, 3.275]; both maps divided by 3.275",
            "crop": "common top-left region of prediction and ground truth",
            "averaging": "per-image MSE and MAE, then the mean over images",
        }


def rtf(root, split="all", split_file=None, require_images=False, image_dir=None, truth_dir=None):
    root = pathlib.Path(root)
    return RtfDataset(truth_dir or root / "gt", image_dir or root / "image",
                      split=split, split_file=split_file, require_images=require_images)


class SyndofDataset(Dataset):
    """SYNDOF test set in the official layout: `blur_map/<stem>.png` holds uint16(σ·10)."""

    name = "syndof"
    task = "regression"

    def __init__(self, truth_dir, image_dir=None, max_coc=DEFAULT_MAX_COC, **kwargs):
        self.sigma_max = sigma_max_for(max_coc)
        self.max_coc = max_coc
        super().__init__(truth_dir, image_dir, **kwargs)

    def load_truth(self, sample):
        """σ in pixels."""
        stored = image_io.read_mask(sample.truth)
        if stored.dtype != np.uint16:
            raise DatasetError(f"{sample.truth}: SYNDOF blur maps are 16-bit PNGs (σ·10), this one is {stored.dtype}")
        return stored.astype(np.float64) / 10.0

    def protocol(self):
        return {
            "dataset": "syndof",
            "split": self.split,
            "images": len(self.samples),
            "ground_truth": "blur_map/*.png = uint16(sigma*10)",
            "conversion": f"both maps divided by sigma_max = {self.sigma_max:g} (max_coc {self.max_coc}); "
                          "prediction clipped to [0, 1]",
            "averaging": "per-image MSE and MAE, then the mean over images",
        }


def syndof(root, split="all", split_file=None, require_images=False, image_dir=None, truth_dir=None,
           max_coc=DEFAULT_MAX_COC):
    root = pathlib.Path(root)
    return SyndofDataset(truth_dir or root / "blur_map", image_dir or root / "image", max_coc=max_coc,
                         split=split, split_file=split_file, require_images=require_images)
