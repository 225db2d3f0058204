"""Reading labels: binary blur masks in either polarity, and SYNDOF's stored σ maps."""
import numpy as np

from dmenet.datasets.discovery import DatasetError
from dmenet.files.images import read_mask

# Which class a mask's bright value marks. CUHK: blurred-white; DUT: sharp-white.
POLARITIES = ("blurred-white", "sharp-white")
_FORMER_NAMES = {"255-blurred": "blurred-white", "255-sharp": "sharp-white"}  # older train.py runs

# SYNDOF stores σ (pixels) as uint16(σ · 10) in blur_map/*.png (DESIGN §4).
SIGMA_STORAGE_SCALE = 10


def canonical_polarity(polarity):
    """One of POLARITIES (the names older runs stored are accepted).

    Raises:
        DatasetError: an unknown name.
    """
    polarity = _FORMER_NAMES.get(polarity, polarity)
    if polarity not in POLARITIES:
        raise DatasetError(f"unknown mask polarity {polarity!r}; choose {' or '.join(POLARITIES)}")
    return polarity


def read_binary_mask(path, polarity="blurred-white"):
    """A mask file → boolean H×W, True = blurred, whatever the file's polarity.

    Masks are binarised at half their bit depth's range (8- or 16-bit, grey or equal-channel RGB(A)).

    Example:
        >>> blurred = read_binary_mask("CUHK/gt/out_of_focus0001.png", "blurred-white")
    """
    mask = read_mask(path)
    bright = mask > (np.iinfo(mask.dtype).max // 2 if mask.dtype.kind in "ui" else 0.5)
    return bright if canonical_polarity(polarity) == "blurred-white" else ~bright


def read_stored_sigma(path):
    """σ in pixels from a SYNDOF blur_map PNG (uint16 σ·10)."""
    stored = read_mask(path)
    if stored.dtype != np.uint16:
        raise DatasetError(f"{path}: SYNDOF blur maps are 16-bit PNGs (σ·{SIGMA_STORAGE_SCALE}), this one is {stored.dtype}")
    return stored.astype(np.float64) / SIGMA_STORAGE_SCALE
