"""The three training sets, found and checked before training starts.

A bad file found in the middle of epoch 37 costs a day; here every file is paired by stem and its
header read up front (sizes as the images will be read, EXIF rotation applied: dmenet.datasets),
and every problem is collected into one `DatasetError` that lists them all.
"""
import dataclasses
import pathlib

from dmenet.datasets import DatasetError, canonical_polarity, displayed_size, pair_by_stem
from dmenet.files.images import IMAGE_SUFFIXES, ImageReadError, _png_bit_depth, list_images

# SYNDOF label formats (DESIGN §5): the maps store σ·10 in 16 bit; the older dataset behind the
# official checkpoint stored a CoC-like value·10 that the original code divided by 15.
LABEL_FORMATS = ("sigma10", "coc15")
MIN_SIDE = 16  # smaller images cannot hold even one 16-pixel network input


@dataclasses.dataclass(frozen=True)
class SyndofSet:
    """Synthetic crops with defocus maps: parallel lists of image and σ-map files."""

    images: tuple
    maps: tuple
    label_format: str = "sigma10"
    map_bit_depths: tuple = ()  # 8 or 16 per map; the stream decodes each natively


@dataclasses.dataclass(frozen=True)
class RealLabelledSet:
    """Real photos with binary blur masks (CUHK layout)."""

    images: tuple
    masks: tuple
    mask_polarity: str = "blurred-white"


@dataclasses.dataclass(frozen=True)
class RealUnlabelledSet:
    images: tuple


def _too_small(paths, problems):
    for path in paths:
        try:
            height, width = displayed_size(path)
        except ImageReadError as error:
            problems.append(str(error))
            continue
        if min(height, width) < MIN_SIDE:
            problems.append(f"{path}: {width}x{height} is too small (each side must be ≥ {MIN_SIDE})")


def syndof_set(root, label_format="sigma10"):
    """A SYNDOF folder in the official layout: root/image/<stem>.png and root/blur_map/<stem>.png."""
    if label_format not in LABEL_FORMATS:
        raise ValueError(f"label_format must be one of {LABEL_FORMATS}, not {label_format!r}")
    problems = []
    root = pathlib.Path(root)
    pairs = pair_by_stem(root / "image", root / "blur_map", "blur map", problems)
    _too_small([image for image, _ in pairs], problems)
    depths = []
    for _, blur_map in pairs:
        depth = _png_bit_depth(blur_map)
        if depth not in (8, 16):
            problems.append(f"{blur_map}: a blur map must be an 8- or 16-bit PNG holding σ·10 (found {depth or 'not a PNG'})")
        depths.append(depth)
    if not pairs and not problems:
        problems.append(f"{root}: no image/blur_map pairs")
    if problems:
        raise DatasetError(f"SYNDOF set {root}", problems)
    return SyndofSet(tuple(p for p, _ in pairs), tuple(m for _, m in pairs), label_format, tuple(depths))


def real_labelled_set(images_dir, masks_dir, mask_polarity="blurred-white"):
    """Photos with binary masks paired by file stem (CUHK: image/<stem>.jpg, gt/<stem>.png)."""
    mask_polarity = canonical_polarity(mask_polarity)
    problems = []
    pairs = pair_by_stem(images_dir, masks_dir, "mask", problems)
    _too_small([image for image, _ in pairs], problems)
    if not pairs and not problems:
        problems.append(f"{images_dir}: no image/mask pairs")
    if problems:
        raise DatasetError(f"real labelled set {images_dir}", problems)
    return RealLabelledSet(tuple(p for p, _ in pairs), tuple(m for _, m in pairs), mask_polarity)


def real_unlabelled_set(folder):
    """Every image directly in `folder` (Flickr in the paper)."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"unlabelled set {folder}", [f"{folder}: folder does not exist"])
    images = list_images(folder)
    problems = []
    _too_small(images, problems)
    if not images:
        problems.append(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    if problems:
        raise DatasetError(f"unlabelled set {folder}", problems)
    return RealUnlabelledSet(tuple(images))


def cuhk_set(root, mask_polarity="blurred-white"):
    """The CUHK layout: root/image and root/gt."""
    root = pathlib.Path(root)
    return real_labelled_set(root / "image", root / "gt", mask_polarity)
