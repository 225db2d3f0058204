"""Back-to-front compositing of blurred depth layers with SYNDOF's occlusion fill.

Each layer contributes its blurred premultiplied colour and blurred coverage (alpha). Before drawing
a layer nearer than the first sharp one, the accumulated image is renormalised and the band where
the layer's kernel reaches past everything drawn so far is filled by Laplace interpolation
(`regionfill`), so blurred foreground edges do not pick up black.
"""
import numpy as np

from dmenet.syndof.blur import blur_window
from dmenet.syndof.kernels import separable_gaussian
from dmenet.syndof.regionfill import regionfill

ALPHA_CUTOFF = 1e-4  # blurred coverage below this is dropped
BAND_CUTOFF = 1e-3  # blurred farther-coverage below this does not count as reached


def composite_reference(image, stack, max_coc):
    """Straightforward full-frame version (one layer at a time); the readable specification."""
    height, width = image.shape[:2]
    merged = np.zeros((height, width, 3))
    coverage = np.zeros((height, width))
    farther = np.zeros((height, width), bool)
    first_sharp = stack.first_sharp_layer
    full = ((0, height), (0, width))
    for index, coc in enumerate(stack.cocs):
        mask = stack.index_map == index
        layer = np.concatenate([mask[..., None], image * mask[..., None]], axis=2)
        taps = separable_gaussian(float(coc), max_coc) if coc > 1 else None
        if taps is not None:
            layer = blur_window(layer, taps, *full)
        alpha = layer[..., 0]
        alpha[alpha < ALPHA_CUTOFF] = 0
        if index > first_sharp:
            merged, coverage = fill_occlusion(merged, coverage, farther, taps)
        merged = (1 - alpha[..., None]) * merged + layer[..., 1:]
        coverage = (1 - alpha) * coverage + alpha
        farther |= mask
    return merged / coverage[..., None]


def fill_occlusion(merged, coverage, farther, taps):
    """Renormalise the accumulator and Laplace-fill the band the next kernel reaches beyond `farther`."""
    divisor = np.where(coverage == 0, 1.0, coverage)
    merged = merged / divisor[..., None]
    coverage = coverage / divisor
    if taps is None:
        return merged, coverage
    height, width = farther.shape
    reach = blur_window(farther.astype(np.float64), taps, (0, height), (0, width))
    band = (reach >= BAND_CUTOFF) & ~farther
    if band.any():
        colour = np.where(farther[..., None], merged, 0.0)
        stacked = np.concatenate([colour, farther[..., None].astype(np.float64)], axis=2)
        filled = regionfill(stacked, band)
        merged[band] = filled[band][:, :3]
        coverage[band] = filled[band][:, 3]
    return merged, coverage
