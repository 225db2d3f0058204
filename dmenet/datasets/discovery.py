"""Finding image/label files, pairing them by file stem, and checking their sizes from headers.

Sizes are the ones `dmenet.files.images.read_array` returns, i.e. with the EXIF orientation applied:
a portrait photo stored as landscape pixels plus a rotation tag is portrait here too, so a mask
drawn on the raw (unrotated) pixel grid is reported instead of being stretched onto the rotated
photo during training.
"""
import pathlib

from PIL import Image, UnidentifiedImageError

from dmenet.files.images import IMAGE_SUFFIXES, ImageReadError

# Label files may carry one of these after the image's stem (photo.jpg ↔ photo_mask.png).
LABEL_STEM_SUFFIXES = ("_mask", "_gt", "_binary")
EXIF_ORIENTATION_TAG = 0x0112
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # the EXIF orientations that swap width and height


class DatasetError(ValueError):
    """A data set that cannot be used as it is; the message lists every offending file.

    Args:
        message: one line, or the title of the list when `problems` is given.
        problems: one line per problem (kept in `.problems`).
    """

    def __init__(self, message, problems=()):
        self.problems = list(problems)
        super().__init__(problem_list(message, self.problems) if self.problems else message)


def problem_list(title, items, limit=30):
    """'title (n):' followed by up to `limit` indented lines and a count of the rest."""
    items = list(items)
    shown = "\n  ".join(str(item) for item in items[:limit])
    more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"{title} ({len(items)}):\n  {shown}{more}"


def exif_orientation(image):
    return image.getexif().get(EXIF_ORIENTATION_TAG, 1)


def displayed_size(path):
    """(height, width) of an image as it will be read (EXIF rotation applied), from the header.

    Raises:
        ImageReadError: the file is missing or not an image.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = exif_orientation(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise ImageReadError(f"{path}: not a readable image ({error})") from error
    return (width, height) if orientation in TRANSPOSING_ORIENTATIONS else (height, width)


def size_problem(image, label, what):
    """A line describing why `label` does not fit `image` (unreadable, or another displayed size),
    or None when they pair."""
    try:
        image_size, label_size = displayed_size(image), displayed_size(label)
    except ImageReadError as error:
        return str(error)
    if image_size == label_size:
        return None
    note = ""
    with Image.open(image) as opened:
        orientation = exif_orientation(opened)
    if orientation in TRANSPOSING_ORIENTATIONS:
        note = f" as displayed (its EXIF orientation {orientation} rotates the stored pixels; draw the {what} on the rotated photo)"
    return (f"{label}: {what} is {label_size[1]}x{label_size[0]} but its image {pathlib.Path(image).name} "
            f"is {image_size[1]}x{image_size[0]}{note}")


def label_stem(path, suffixes=LABEL_STEM_SUFFIXES):
    stem = pathlib.Path(path).stem
    for suffix in suffixes:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def files_by_stem(folder, suffixes=IMAGE_SUFFIXES, stem_of=lambda path: path.stem):
    """{stem: path} of the files directly in `folder` with one of `suffixes` (hidden files skipped).

    Raises:
        DatasetError: the folder does not exist, or two files share a stem (which one to use?).
    """
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"folder {folder} does not exist")
    found, duplicates = {}, []
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes and not path.name.startswith("."):
            stem = stem_of(path)
            if stem in found:
                duplicates.append(f"{found[stem].name} / {path.name}")
            found[stem] = path
    if duplicates:
        raise DatasetError(f"{folder} holds several files per image", duplicates)
    return found


def pair_by_stem(images_dir, labels_dir, what, problems, label_suffixes=IMAGE_SUFFIXES):
    """[(image, label)] matched by stem (labels may end in _mask/_gt/_binary), sorted by stem, with
    sizes checked; unpaired files and mismatches are appended to `problems`."""
    try:
        images = files_by_stem(images_dir)
        labels = files_by_stem(labels_dir, label_suffixes, stem_of=label_stem)
    except DatasetError as error:
        problems.extend(error.problems or [str(error)])
        return []
    for stem in sorted(set(images) - set(labels)):
        problems.append(f"{images[stem]}: no {what} for it in {labels_dir}")
    for stem in sorted(set(labels) - set(images)):
        problems.append(f"{labels[stem]}: {what} without an image in {images_dir}")
    pairs = []
    for stem in sorted(set(images) & set(labels)):
        problem = size_problem(images[stem], labels[stem], what)
        if problem:
            problems.append(problem)
        else:
            pairs.append((images[stem], labels[stem]))
    return pairs
