"""Checks shared by the applications: a photo, a σ map, and the two of them together.

Every bad input becomes one ValueError whose message says what is wrong and what to pass instead,
before any numpy arithmetic can fail on it.
"""
import pathlib
import warnings

import numpy as np


def as_photo(image):
    """A path or an H×W×3 (or H×W grey) array → float64 H×W×3 in [0, 1].

    uint8 and uint16 arrays are scaled to [0, 1] in float64; float arrays are taken as they are and must be finite.
    """
    from dmenet.files.images import read_image

    if isinstance(image, str | pathlib.Path):
        return read_image(image).astype(np.float64)
    array = np.asarray(image)
    if array.dtype.kind not in "uif" or array.dtype == np.bool_:
        raise ValueError(f"a photo must be a numeric array, got dtype {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or min(array.shape[:2]) == 0:
        raise ValueError(f"a photo must be an H×W×3 array, got shape {array.shape}")
    photo = array[..., :3].astype(np.float64)
    if array.dtype in (np.uint8, np.uint16):  # in float64 directly, as MATLAB's im2double (exact for deblur)
        photo /= np.iinfo(array.dtype).max
    if not np.all(np.isfinite(photo)):
        raise ValueError("the photo holds NaN or infinite values")
    return photo


def as_sigma(sigma):
    """A σ map (H×W, Gaussian σ in pixels) as float64, or a ValueError saying what is wrong with it."""
    array = np.asarray(sigma)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.dtype.kind not in "uif" or array.dtype == np.bool_:
        raise ValueError(f"a σ map must be a numeric array of σ in pixels, got dtype {array.dtype}")
    if array.ndim != 2 or min(array.shape) == 0:
        raise ValueError(f"a σ map must be a 2-D H×W array, got shape {array.shape}")
    array = array.astype(np.float64)
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(f"the σ map holds {int(bad.sum())} NaN or infinite values; σ must be a finite number of pixels everywhere")
    if array.min() < 0:
        raise ValueError(f"the σ map holds negative values (down to {array.min():.3g}); σ is a blur width in pixels, ≥ 0")
    return array


class SigmaCropWarning(UserWarning):
    """A σ map smaller than its photo: the photo's top-left region of the map's size is used."""


def photo_and_sigma(image, sigma):
    """(photo, σ) of one size, checked (``as_photo``, ``as_sigma``).

    A map smaller than the photo in both sides crops the photo to their common top-left region, with a
    ``SigmaCropWarning`` (DMENet crops its input to multiples of 16, and the official deconvolution
    does this); any other size mismatch is a ValueError.
    """
    photo, sigma = as_photo(image), as_sigma(sigma)
    (height, width), (map_height, map_width) = photo.shape[:2], sigma.shape
    if (map_height, map_width) == (height, width):
        return photo, sigma
    if map_height <= height and map_width <= width:
        warnings.warn(f"the σ map ({map_width}×{map_height}) is smaller than the photo ({width}×{height}): the photo is "
                      f"cropped to its top-left {map_width}×{map_height}, as the official code does", SigmaCropWarning, stacklevel=3)
        return photo[:map_height, :map_width], sigma
    raise ValueError(f"the σ map is {map_width}×{map_height} but the photo is {width}×{height}; pass the map computed "
                     "for this photo (a map may be smaller, then the photo's top-left region is used, never larger)")


def positive_number(value, name, minimum=0.0, inclusive=False):
    """float(value), or a ValueError naming `name` when it is not a finite number above `minimum`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(number) or number < minimum or (number == minimum and not inclusive):
        relation = "≥" if inclusive else ">"
        raise ValueError(f"{name} must be a finite number {relation} {minimum:g}, got {value!r}")
    return number
