"""Separable Gaussian blur with MATLAB imfilter semantics ('same', 'conv', 'symmetric' border),
evaluated only over a requested output window, so a small layer costs little."""
import numpy as np
from scipy import ndimage

from dmenet.syndof.kernels import symmetric_index, tap_offsets


def source_indices(start, stop, taps_length, size):
    """Input positions (after the symmetric fold) that outputs start:stop read, in tap order."""
    offsets = tap_offsets(taps_length)
    return symmetric_index(np.arange(start + int(offsets.min()), stop + int(offsets.max())), size)


def blur_padded(block, taps):
    """'Valid' separable blur of a block already gathered with `source_indices` on both axes."""
    weights = np.ascontiguousarray(taps[::-1])
    origin = -(len(weights) // 2)
    out = ndimage.correlate1d(block, weights, axis=0, mode="constant", origin=origin)
    out = ndimage.correlate1d(out, weights, axis=1, mode="constant", origin=origin)
    trim = len(weights) - 1
    return out[: block.shape[0] - trim, : block.shape[1] - trim]


def blur_window(image, taps, rows, cols):
    """imfilter(image, taps ⊗ taps, 'same', 'conv', 'symmetric')[rows, cols] of an H×W(×C) array;
    `rows`, `cols` are (start, stop) pairs."""
    height, width = image.shape[:2]
    row_source = source_indices(rows[0], rows[1], len(taps), height)
    col_source = source_indices(cols[0], cols[1], len(taps), width)
    return blur_padded(image[np.ix_(row_source, col_source)], taps)
