"""Finding and checking the three training sets before training starts.

A bad file found in the middle of epoch 37 costs a day; here every file is paired and its header
read up front, and every problem is collected into one `DatasetError` that lists them all.
"""
import dataclasses
import pathlib

from PIL import Image, UnidentifiedImageError

from dmenet.image_io import IMAGE_SUFFIXES, _png_bit_depth, list_images

# SYNDOF label formats (DESIGN §5): the maps store σ·10 in 16 bit; the older dataset behind the
# official checkpoint stored a CoC-like value·10 that the original code divided by 15.
LABEL_FORMATS = ("sigma10", "coc15")
MASK_POLARITIES = ("255-blurred", "255-sharp")
MIN_SIDE = 16  # smaller images cannot hold even one 16-pixel network input


class DatasetError(ValueError):
    """One report of every problem found in a training set."""

    def __init__(self, name, problems):
        self.problems = list(problems)
        shown = self.problems[:30]
        more = len(self.problems) - len(shown)
        text = f"{name}: {len(self.problems)} problem(s):\n  " + "\n  ".join(shown)
        if more:
            text += f"\n  … and {more} more"
        super().__init__(text)


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
    mask_polarity: str = "255-blurred"


@dataclasses.dataclass(frozen=True)
class RealUnlabelledSet:
    images: tuple


def _image_size(path, problems):
    """(width, height) from the header, or None with a problem recorded."""
    try:
        with Image.open(path) as image:
            size = image.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        problems.append(f"{path}: not a readable image ({error})")
        return None
    if min(size) < MIN_SIDE:
        problems.append(f"{path}: {size[0]}×{size[1]} is too small (each side must be ≥ {MIN_SIDE})")
        return None
    return size


def _folder(path, what, problems):
    path = pathlib.Path(path)
    if not path.is_dir():
        problems.append(f"{path}: {what} folder does not exist")
        return None
    return path


def _pair_by_stem(images_dir, labels_dir, label_suffixes, problems, what):
    """Match image/<stem>.* with labels/<stem><suffix>.* for any suffix in `label_suffixes`."""
    images = {p.stem: p for p in list_images(images_dir)}
    labels = {}
    for p in list_images(labels_dir):
        stem = p.stem
        for suffix in label_suffixes:
            if suffix and stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        labels[stem] = p
    for stem in sorted(set(images) - set(labels)):
        problems.append(f"{images[stem]}: no {what} for it in {labels_dir}")
    for stem in sorted(set(labels) - set(images)):
        problems.append(f"{labels[stem]}: {what} without an image in {images_dir}")
    return [(images[s], labels[s]) for s in sorted(set(images) & set(labels))]


def _check_pairs(pairs, problems, what):
    for image, label in pairs:
        image_size = _image_size(image, problems)
        label_size = _image_size(label, problems)
        if image_size and label_size and image_size != label_size:
            problems.append(
                f"{label}: {what} is {label_size[0]}×{label_size[1]} but its image is {image_size[0]}×{image_size[1]}"
            )


def syndof_set(root, label_format="sigma10"):
    """A SYNDOF folder in the official layout: root/image/<stem>.png and root/blur_map/<stem>.png."""
    if label_format not in LABEL_FORMATS:
        raise ValueError(f"label_format must be one of {LABEL_FORMATS}, not {label_format!r}")
    problems = []
    root = pathlib.Path(root)
    images_dir = _folder(root / "image", "SYNDOF image", problems)
    maps_dir = _folder(root / "blur_map", "SYNDOF blur_map", problems)
    pairs = _pair_by_stem(images_dir, maps_dir, ("",), problems, "blur map") if images_dir and maps_dir else []
    _check_pairs(pairs, problems, "blur map")
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


def real_labelled_set(images_dir, masks_dir, mask_polarity="255-blurred"):
    """Photos with binary masks paired by file stem (CUHK: image/<stem>.jpg, gt/<stem>.png)."""
    if mask_polarity not in MASK_POLARITIES:
        raise ValueError(f"mask_polarity must be one of {MASK_POLARITIES}, not {mask_polarity!r}")
    problems = []
    images_dir = _folder(images_dir, "real image", problems)
    masks_dir = _folder(masks_dir, "mask", problems)
    pairs = _pair_by_stem(images_dir, masks_dir, ("_mask", "_gt", "_binary", ""), problems, "mask") if images_dir and masks_dir else []
    _check_pairs(pairs, problems, "mask")
    if not pairs and not problems:
        problems.append(f"{images_dir}: no image/mask pairs")
    if problems:
        raise DatasetError(f"real labelled set {images_dir}", problems)
    return RealLabelledSet(tuple(p for p, _ in pairs), tuple(m for _, m in pairs), mask_polarity)


def real_unlabelled_set(folder):
    """Every image directly in `folder` (Flickr in the paper)."""
    problems = []
    folder_path = _folder(folder, "unlabelled image", problems)
    images = list_images(folder_path) if folder_path else []
    for image in images:
        _image_size(image, problems)
    if folder_path and not images:
        problems.append(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    if problems:
        raise DatasetError(f"unlabelled set {folder}", problems)
    return RealUnlabelledSet(tuple(images))


def cuhk_set(root, mask_polarity="255-blurred"):
    """The CUHK layout: root/image and root/gt."""
    root = pathlib.Path(root)
    return real_labelled_set(root / "image", root / "gt", mask_polarity)
