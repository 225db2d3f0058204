"""Reading photos, masks and 16-bit maps the way users actually have them; writing files atomically.

Pillow handles EXIF orientation and most formats, but truncates 16-bit RGB PNGs to 8 bit without a
word; those go through pypng instead.
"""
import contextlib
import os
import pathlib
import tempfile

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".ppm", ".webp")


UNREADABLE_FIX = "re-export it as PNG or JPEG, or leave it out"
# zlib level of every PNG written: a third of PIL's default level 6's time for files 3–6 % larger
# (the σ PNG and colour picture of a 420×279 photo: 35 ms → 14 ms, 3 % of its whole Zhuo & Sim run)
PNG_COMPRESS_LEVEL = 4


class ImageReadError(ValueError):
    """A file that is missing, corrupt or not an image; the message names the file and the fix."""


def _first_line(error):
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def is_image_name(path):
    """True for the file suffixes read_image is meant for (``IMAGE_SUFFIXES``)."""
    return pathlib.Path(path).suffix.lower() in IMAGE_SUFFIXES


def list_images(folder):
    """Image files directly in `folder`, sorted by name."""
    folder = pathlib.Path(folder)
    return sorted(p for p in folder.iterdir() if is_image_name(p) and p.is_file())


def _png_bit_depth(path):
    with open(path, "rb") as f:
        header = f.read(26)
    if header[:8] != b"\x89PNG\r\n\x1a\n" or len(header) < 26:
        return None
    return header[24]


def _read_png16(path):
    import png

    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    array = np.vstack([np.asarray(row, np.uint16) for row in rows])
    return array.reshape(height, width, info["planes"])


def read_array(path):
    """The stored pixel values (uint8 or uint16, H×W or H×W×C), EXIF orientation applied."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file; check the path")
    try:
        if _png_bit_depth(path) == 16:
            array = _read_png16(path)
            return array[..., 0] if array.shape[2] == 1 else array
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                return np.asarray(image).astype(np.uint16)
            if image.mode not in ("L", "RGB", "RGBA", "LA"):
                image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
            return np.asarray(image).copy()
    except ImageReadError:
        raise
    except Exception as error:  # Pillow and pypng raise many types for damaged or foreign files
        raise ImageReadError(f"{path}: not a readable image ({_first_line(error)}); {UNREADABLE_FIX}") from error


def check_image_header(path):
    """Raise ImageReadError now for a file that cannot be an image, reading only its header.

    Lets a tool report a text file among the photos before it spends seconds loading a model; a
    file that passes can still turn out damaged further in, which ``read_image`` then reports.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file; check the path")
    try:
        with Image.open(path):
            pass
    except Exception as error:  # Pillow raises many types for foreign files
        raise ImageReadError(f"{path}: not a readable image ({_first_line(error)}); {UNREADABLE_FIX}") from error


def to_unit_float(array):
    """uint8/uint16 → float32 in [0, 1]."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    return array.astype(np.float32)


def to_official_input(image):
    """An image as the official MATLAB codes read a JPEG: uint8, when the float image came from 8-bit data.

    Our readers return float images in [0, 1]; an 8-bit photo comes back exactly to its bytes, which
    keeps thresholds (Canny) and uint8 network inputs identical to the official runs. Other images come
    back as float64 clipped to [0, 1].

    Args:
        image: H×W×C uint8, or float in [0, 1].

    Returns:
        uint8 or float64 array of the same shape.

    Example:
        >>> to_official_input(np.array([[[0.0, 128 / 255, 1.0]]], np.float32)).dtype
        dtype('uint8')
    """
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.float32:
        # the readers' images: float32 finds 8-bit data as surely (its error, ≤ 2e-5, is far below the
        # 1e-3 test) in a twentieth of float64's time (11 → 0.5 ms for a 420×279 photo)
        scaled = np.clip(image, np.float32(0.0), np.float32(1.0)) * np.float32(255.0)
    else:
        scaled = np.clip(image.astype(np.float64), 0.0, 1.0) * 255.0
    rounded = np.rint(scaled)
    if np.max(np.abs(scaled - rounded), initial=0.0) < 1e-3:
        return rounded.astype(np.uint8)
    return np.clip(image.astype(np.float64), 0.0, 1.0)


def read_image(path):
    """Any photo as float32 RGB in [0, 1], H×W×3: grey is replicated, alpha is dropped."""
    array = read_array(path)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    elif array.shape[2] == 2:  # grey + alpha
        array = np.repeat(array[..., :1], 3, axis=2)
    elif array.shape[2] == 4:
        array = array[..., :3]
    return to_unit_float(array)


def read_mask(path):
    """A single-channel label image as stored (uint8/uint16, H×W); RGB(A) with equal channels is reduced."""
    array = read_array(path)
    if array.ndim == 3:
        colour = array[..., :3] if array.shape[2] >= 3 else array[..., :1]
        if colour.shape[2] == 3 and not (
            np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2])
        ):
            raise ImageReadError(f"{path}: a label map must be grey, but its colour channels differ")
        array = colour[..., 0]
    return array


def current_umask():
    """The process umask, read without changing it where the kernel reports it (Linux ≥ 4.7)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    # Elsewhere the only way to read it is to set it; put it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; it replaces `path` only if the block finishes.

    The file ends up with the permissions a plain ``open(path, "w")`` would give it (0666 less the
    umask, so 0644 usually): mkstemp creates 0600 files, which other users could not read.

    Args:
        path: the file to (re)write.

    Returns:
        A context manager yielding the temporary ``pathlib.Path`` to write to.

    Example:
        >>> with atomic_path("out/summary.json") as temporary:
        ...     temporary.write_text("{}")
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(handle)
    try:
        yield pathlib.Path(temporary)
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_png(path, array, text=None):
    """Write uint8 (grey/RGB/RGBA) or uint16 (grey) pixels losslessly and atomically.

    `text` (a dict) goes into PNG tEXt chunks, e.g. the unit of a stored σ map.
    """
    from PIL import PngImagePlugin

    array = np.asarray(array)
    if array.dtype == np.uint16:
        if array.ndim != 2:
            raise ValueError("16-bit PNGs are written single-channel")
        image = Image.fromarray(array.astype("<u2"), mode=None)
    elif array.dtype == np.uint8:
        image = Image.fromarray(array)
    else:
        raise ValueError(f"write_png takes uint8 or uint16, not {array.dtype}")
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, str(value))
    with atomic_path(path) as temporary:
        image.save(temporary, format="PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)


def save_npy(path, array):
    """np.save, atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as f:
            np.save(f, array)
