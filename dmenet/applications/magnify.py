"""Defocus magnification (Bae & Durand 2007): blur what is already blurred, as a wider aperture would.

A k× wider aperture scales every pixel's circle of confusion, hence its σ, by k. Gaussians compose by
variance, so each pixel needs σ_add = σ·√(k² − 1) more blur. Mixing whole-frame blurs per pixel
would spread a sharp subject's colour into the blurred background around it (halos), so the photo is
cut into layers of equal σ_add and composited back to front with blurred premultiplied colour and
blurred coverage: exactly SYNDOF's compositor (`dmenet.syndof.compositing.composite`), to which the
layers are handed as a SYNDOF layer stack whose circles of confusion are c = 4·σ_add + 1 (SYNDOF's
σ = (c − 1)/4), so that c ≤ 1 marks the layers drawn sharp.

Which layer is in front is not in the map: by default blur grows with distance (a near subject in
focus, the usual photo), so the most blurred layer is drawn first; `side="near"` draws it last, over
the sharper ones, with SYNDOF's occlusion fill behind its soft edge.
"""
import math

import numpy as np

from dmenet.applications.inputs import photo_and_sigma, positive_number

SIDES = ("far", "near")
MAX_EXACT_LEVELS = 256  # maps with at most this many distinct σ (a label map) keep every value as a layer
LEVEL_STEP_PX = 0.025  # σ_add levels: 0.025 px apart (SYNDOF's 0.1 px CoC step) …
LEVEL_STEP_RELATIVE = 0.01  # … or 1 % of σ_add where that is wider: no visible bands (docs/applications.md)
KERNEL_REACH = 5.0  # kernels reach 5 σ_add: the Gaussian mass cut off is < 6e-7


def added_sigma(sigma, factor):
    """σ_add = σ·√(factor² − 1): the Gaussian that turns blur σ into blur factor·σ."""
    return np.asarray(sigma, np.float64) * math.sqrt(factor * factor - 1.0)


def blur_levels(sigma_add):
    """(levels ascending, index of each pixel's level): the distinct values when they are few,
    else σ_add rounded on a grid whose step is LEVEL_STEP_PX, widening to LEVEL_STEP_RELATIVE·σ_add."""
    values, inverse = np.unique(sigma_add, return_inverse=True)
    if len(values) <= MAX_EXACT_LEVELS:
        return values, inverse.reshape(sigma_add.shape)
    # A warp whose unit step is the level spacing: linear up to the knee, logarithmic beyond it.
    knee = LEVEL_STEP_PX / LEVEL_STEP_RELATIVE
    warped = np.where(sigma_add <= knee, sigma_add / LEVEL_STEP_PX,
                      knee / LEVEL_STEP_PX + np.log(np.maximum(sigma_add, knee) / knee) / LEVEL_STEP_RELATIVE)
    steps = np.rint(warped).astype(np.int64)
    used, inverse = np.unique(steps, return_inverse=True)
    levels = np.where(used <= knee / LEVEL_STEP_PX, used * LEVEL_STEP_PX,
                      knee * np.exp((used - knee / LEVEL_STEP_PX) * LEVEL_STEP_RELATIVE))
    return levels, inverse.reshape(sigma_add.shape)


def layer_stack(sigma_add, side="far"):
    """The σ_add layers as a SYNDOF `LayerStack` (far → near) for `composite`: CoC 4·σ_add + 1 per
    layer; its depths are the layers' ranks (the compositor reads only the index map and the CoCs)."""
    from dmenet.syndof.layers import LayerStack

    levels, level_index = blur_levels(sigma_add)
    if side == "far":  # most blurred = farthest = layer 0
        levels, level_index = levels[::-1], len(levels) - 1 - level_index
    cocs = 4.0 * levels + 1.0
    ranks = np.arange(len(levels), dtype=np.float64)
    return LayerStack(index_map=level_index.astype(np.int32), depths=ranks, cocs=cocs, unique_depths=ranks, unique_cocs=cocs)


def magnify_defocus(image, sigma, factor=2.0, *, side="far", progress=None):
    """The photo as if shot with a `factor`× wider aperture: each pixel's blur σ becomes factor·σ.

    Args:
        image: the photo: a path, or an H×W×3 array (uint8, uint16 or float in [0, 1]).
        sigma: its H×W defocus map, Gaussian σ in pixels (any method's; ``dmenet.estimate_defocus``).
            A map smaller than the photo uses the photo's top-left region (with a warning).
        factor: aperture scale k ≥ 1 (k = 2: twice the aperture diameter, every σ doubled).
        side: "far" (default: blur grows with distance, the most blurred layer is drawn first) or
            "near" (blur grows toward the camera: blurred layers are drawn over sharper ones).
        progress: optional callable(done_layers, total_layers).

    Returns:
        H×W×3 float64 image in [0, 1]. ``factor == 1`` or a map that is 0 everywhere returns the photo
        unchanged.

    Examples:
        >>> import dmenet
        >>> sigma = dmenet.estimate_defocus("photo.jpg", method="park17")
        >>> wider = dmenet.magnify_defocus("photo.jpg", sigma, factor=2.0)
    """
    from dmenet.syndof.compositing import composite

    factor = positive_number(factor, "the magnification factor", minimum=1.0, inclusive=True)
    if side not in SIDES:
        raise ValueError(f"unknown side {side!r}; expected one of {', '.join(SIDES)}")
    photo, sigma = photo_and_sigma(image, sigma)
    if factor == 1.0 or not sigma.any():
        return photo.copy()
    sigma_add = added_sigma(sigma, factor)
    stack = layer_stack(sigma_add, side)
    # composite() sizes every kernel from one "max_coc" (the kernel's support, odd): here 2·⌈5·σ_add,max⌉ + 1.
    support = 2 * math.ceil(KERNEL_REACH * float(sigma_add.max())) + 1
    magnified = composite(photo, stack, support, progress=progress)
    # A lone pixel whose blurred coverage fell below the compositor's cut-off has nothing drawn on it.
    empty = ~np.all(np.isfinite(magnified), axis=2)
    if empty.any():
        magnified[empty] = photo[empty]
    return np.clip(magnified, 0.0, 1.0)
