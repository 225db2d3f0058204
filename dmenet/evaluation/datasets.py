"""Benchmark datasets as lists of (stem, image, ground truth) with the protocol facts they imply.

- CUHK (Shi et al. 2014): `image/` + `gt/`, masks 255 = blurred. Splits: DMENet 504/200 (numbers
  0001–0504 / 0505–0704, generated here), BTBNet 604/100 or any other via a list file.
- DUT (Zhao et al. 2018): the same layout, masks 255 = sharp.
- any folder of images with masks: polarity given by the user.
- RTF (22 images): ground truth is a MATLAB `.mat` holding `blurMap` (disk-PSF radius), v5 or v7.3.
- SYNDOF test: the official generator's layout, `blur_map/<stem>.png` = uint16(σ·10).
Finding, pairing, size checks and label reading come from the data layer shared with training
(`dmenet.datasets`); anything unpaired, missing or of the wrong size is reported all at once.
"""
import dataclasses
import pathlib
import re

import numpy as np

from dmenet.datasets import (  # noqa: F401  (displayed_size, problem_list: used by predictions.py)
    POLARITIES,
    SIGMA_STORAGE_SCALE,
    DatasetError,
    canonical_polarity,
    displayed_size,
    files_by_stem,
    problem_list,
    read_binary_mask,
    read_stored_sigma,
    size_problem,
)
from dmenet.datasets import (
    label_stem as label_stem_of,
)
from dmenet.files import images as image_io
from dmenet.units import DEFAULT_MAX_COC, sigma_max_for

# The DMENet split of CUHK's 704 defocused images (its released test maps are 0505–0704).
DMENET_SPLITS = {"dmenet-train": (1, 504), "dmenet-test": (505, 704)}
SPLITS = ("all", *DMENET_SPLITS)

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


def _resolve_split_line(line, stems, split_file):
    """A split-file line → a stem: the stem itself, or a bare number such as `0020` naming the one image
    whose stem ends in that number (`out_of_focus0020`; the defocus image when CUHK's motion one shares it)."""
    if line in stems or not line.isdigit():
        return line
    matches = [stem for stem in stems if _stem_number(stem) == int(line)]
    if len(matches) > 1:
        matches = [stem for stem in matches if stem.lower().startswith("out_of_focus")] or matches
    if len(matches) > 1:
        raise DatasetError(f"split file {split_file}: the number {line} fits several images ({', '.join(sorted(matches))}); "
                           "write the image stems (file names without extension) instead")
    return matches[0] if matches else line


def select_split(stems, split="all", split_file=None):
    """The stems of a named split (or a list file) among `stems`; missing ones are an error."""
    if split_file is not None:
        wanted = [_resolve_split_line(line, stems, split_file) for line in read_split_file(split_file)]
        missing = sorted(set(wanted) - set(stems))
        if missing:
            raise DatasetError(f"split file {split_file} names images without ground truth (lines are image stems, "
                               f"the file names without extension, e.g. {min(stems)})", missing)
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


class Dataset:
    """Shared behaviour: a sorted sample list, pairing checks, and the protocol description."""

    name = "dataset"
    task = "binary"  # or "regression"
    truth_suffixes = image_io.IMAGE_SUFFIXES
    allows_size_mismatch = False  # True where the protocol itself compares a common crop (RTF)

    def __init__(self, truth_dir, image_dir=None, split="all", split_file=None, require_images=False):
        self.truth_dir = pathlib.Path(truth_dir)
        self.image_dir = pathlib.Path(image_dir) if image_dir is not None else None
        truths = files_by_stem(self.truth_dir, self.truth_suffixes, stem_of=label_stem_of)
        if not truths:
            raise DatasetError(f"no ground-truth files in {self.truth_dir}")
        self.split = split if split_file is None else f"file:{pathlib.Path(split_file).name}"
        stems = select_split(list(truths), split, split_file)
        images = {}
        if self.image_dir is not None and (require_images or self.image_dir.is_dir()):
            images = files_by_stem(self.image_dir, image_io.IMAGE_SUFFIXES)
            without_image = [truths[stem].name for stem in stems if stem not in images]
            if without_image:
                raise DatasetError(f"ground truth without an image in {self.image_dir}", without_image)
            if split == "all" and split_file is None:
                without_truth = sorted(set(images) - set(truths))
                if without_truth:
                    raise DatasetError(f"images without ground truth in {self.truth_dir}",
                                       [images[s].name for s in without_truth])
        elif require_images:
            raise DatasetError(f"image folder {self.image_dir} is needed to run a network but does not exist")
        self.samples = [Sample(stem, images.get(stem), truths[stem]) for stem in stems]
        self.check_sizes()

    def truth_size(self, sample):
        return displayed_size(sample.truth)

    def check_sizes(self):
        """Every image must have its ground truth's size as read (EXIF rotation applied), checked
        from headers before any work."""
        problems = []
        for sample in self.samples:
            if sample.image is None:
                continue
            if not self.allows_size_mismatch:
                problem = size_problem(sample.image, sample.truth, "ground truth")
            else:
                try:
                    displayed_size(sample.image), self.truth_size(sample)
                    problem = None
                except (image_io.ImageReadError, DatasetError) as error:
                    problem = str(error)
            if problem:
                problems.append(problem)
        if problems:
            raise DatasetError("images and ground truth that do not pair", problems)

    def load_truth(self, sample):
        raise NotImplementedError

    def protocol(self):
        raise NotImplementedError


class MaskDataset(Dataset):
    """Binary blur masks; `polarity` says whether the bright value marks blurred or sharp pixels."""

    def __init__(self, truth_dir, image_dir=None, polarity="blurred-white", name="folder", **kwargs):
        self.polarity = canonical_polarity(polarity)
        self.name = name
        super().__init__(truth_dir, image_dir, **kwargs)

    def load_truth(self, sample):
        """Boolean H×W, True = blurred. Masks are binarised at half their bit depth's range."""
        return read_binary_mask(sample.truth, self.polarity)

    def protocol(self):
        bright = "blurred" if self.polarity == "blurred-white" else "sharp"
        return {
            "dataset": self.name,
            "split": self.split,
            "images": len(self.samples),
            "ground_truth": f"binary mask, bright (>= half range) = {bright}; positive class = blurred",
        }


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
        return read_stored_sigma(sample.truth)

    def protocol(self):
        return {
            "dataset": "syndof",
            "split": self.split,
            "images": len(self.samples),
            "ground_truth": f"blur_map/*.png = uint16(sigma*{SIGMA_STORAGE_SCALE})",
            "conversion": f"both maps divided by sigma_max = {self.sigma_max:g} (max_coc {self.max_coc}); "
                          "prediction clipped to [0, 1]",
            "averaging": "per-image MSE and MAE, then the mean over images",
        }


BENCHMARKS = ("cuhk", "dut", "folder", "rtf", "syndof")
DEFAULT_POLARITY = {"cuhk": "blurred-white", "dut": "sharp-white"}
DEFAULT_SPLIT = {"cuhk": "dmenet-test"}
TRUTH_FOLDER = {"syndof": "blur_map"}  # the others keep ground truth in gt/


def open_benchmark(name, root=None, image_dir=None, truth_dir=None, polarity=None, max_coc=DEFAULT_MAX_COC, **options):
    """A benchmark's Dataset from its root (image/ + gt/ or blur_map/) or explicit folders.

    Args:
        name: one of BENCHMARKS.
        root: the dataset folder; `image_dir` / `truth_dir` override its sub-folders.
        polarity: mask polarity; cuhk and dut have theirs, "folder" needs one.
        max_coc: syndof only: the set's maximum circle of confusion.
        **options: split, split_file, require_images.

    Returns:
        MaskDataset, RtfDataset or SyndofDataset.

    Example:
        >>> test = open_benchmark("cuhk", "CUHK")          # the DMENet test split, 0505-0704
    """
    if name not in BENCHMARKS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(BENCHMARKS)}")
    root = pathlib.Path(root) if root is not None else None
    image_dir = image_dir or (root / "image" if root is not None else None)
    truth_dir = truth_dir or root / TRUTH_FOLDER.get(name, "gt")
    options.setdefault("split", DEFAULT_SPLIT.get(name, "all"))
    if name == "rtf":
        return RtfDataset(truth_dir, image_dir, **options)
    if name == "syndof":
        return SyndofDataset(truth_dir, image_dir, max_coc=max_coc, **options)
    polarity = polarity or DEFAULT_POLARITY.get(name)
    if polarity is None:
        raise DatasetError("a folder of masks needs its polarity (blurred-white or sharp-white)")
    return MaskDataset(truth_dir, image_dir, polarity, name, **options)
