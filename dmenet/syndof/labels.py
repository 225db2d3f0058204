"""Label maps from the per-pixel CoC, as SYNDOF stores them: σ (px), σ·10 as uint16, σ normalised
to [0, 1] by its maximum in the image, and the binary 'defocused' map (CoC > 1)."""
import dataclasses

import numpy as np

from dmenet.units import round_half_away, sigma_to_uint16


@dataclasses.dataclass
class DefocusLabels:
    coc: np.ndarray  # H×W CoC in px (0.1 px steps)
    sigma: np.ndarray  # H×W Gaussian σ in px, (max(coc, 1) − 1)/4
    sigma_uint16: np.ndarray  # uint16(σ·10), MATLAB rounding: the official 16-bit blur_map
    sigma_norm: np.ndarray  # (σ − min σ)/(max σ − min σ)
    binary: np.ndarray  # float 1 where coc > 1, else 0


def labels_from_coc(coc_map):
    clamped = np.maximum(coc_map, 1.0)
    sigma = (clamped - 1.0) / 4.0
    shifted = sigma - sigma.min()
    span = shifted.max()
    if span <= 0:
        raise ValueError("every pixel is in focus: the normalised σ map is undefined (need depth variation)")
    return DefocusLabels(
        coc=coc_map,
        sigma=sigma,
        sigma_uint16=sigma_to_uint16(sigma),
        sigma_norm=shifted / span,
        binary=(clamped > 1.0).astype(np.float64),
    )


def to_uint8(unit):
    """MATLAB im2uint8 of a [0, 1] double image: clip, ×255, round half away."""
    return round_half_away(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)


def depth_preview(depth_map):
    """The 'depth_decomposed' image: merged depth scaled to [0, 255] (uint8, grey)."""
    shifted = depth_map - depth_map.min()
    span = shifted.max()
    return to_uint8(shifted / span if span > 0 else shifted)
