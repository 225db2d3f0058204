"""Depth from a defocus map by inverting the thin lens (APPLICATIONS.md §3).

A pixel at depth z has a circle of confusion c = K·|z − z_f|/z px, K = m·(z_v/z_f)·A (m: pixels per
mm on the sensor, z_v: image distance, A = f/N), so 1/z = (1/z_f)·(1 ∓ c/K): minus behind the focal
plane, plus in front of it. The same c occurs once on each side (equal dioptres from the focal
plane), so the side is an input. σ → c by SYNDOF's convention c = 4σ + 1 (σ = (c − 1)/4 for c > 1);
σ = 0 means c ≤ 1, somewhere inside the depth of field: unresolved.
"""
import dataclasses

import numpy as np

from dmenet.applications.inputs import as_sigma, positive_number
from dmenet.syndof.lens import EPSILON, ThinLens

SIDES = ("far", "near")
LENS_FIELDS = ("f_mm", "z_focal", "n_number", "width")


def coc_from_sigma(sigma):
    """SYNDOF's circle of confusion (px) for a Gaussian σ (px): c = 4σ + 1 where σ > 0, NaN where
    σ = 0 (any c ≤ 1: inside the depth of field)."""
    sigma = np.asarray(sigma, np.float64)
    return np.where(sigma > 0, 4.0 * sigma + 1.0, np.nan)


def as_lens(lens, width):
    """A `ThinLens`, or a mapping of its fields (f_mm, z_focal, n_number, and width in px, which
    defaults to the map's width), checked."""
    if isinstance(lens, ThinLens):
        fields = dataclasses.asdict(lens)
    elif isinstance(lens, dict):
        unknown = sorted(set(lens) - set(LENS_FIELDS))
        if unknown:
            raise ValueError(f"unknown camera field(s) {', '.join(unknown)}; a camera has {', '.join(LENS_FIELDS)}")
        fields = {"width": width, **lens}
        missing = [name for name in LENS_FIELDS if fields.get(name) is None]
        if missing:
            raise ValueError(f"the camera lacks {', '.join(missing)} (focal length f_mm, focus distance z_focal in mm, f-number n_number)")
    else:
        raise ValueError(f"lens must be a dmenet.syndof.lens.ThinLens or a dict of {', '.join(LENS_FIELDS)}, got {type(lens).__name__}")
    f_mm = positive_number(fields["f_mm"], "the focal length f_mm")
    z_focal = positive_number(fields["z_focal"], "the focus distance z_focal (mm)")
    if z_focal <= f_mm:
        raise ValueError(f"the focus distance ({z_focal:g} mm) must exceed the focal length ({f_mm:g} mm)")
    n_number = positive_number(fields["n_number"], "the f-number n_number")
    width = positive_number(fields["width"], "the image width in pixels")
    return ThinLens(f_mm, z_focal, n_number, int(round(width)))


def defocus_constant(lens):
    """K = m·(z_v/z_f)·A in px: the CoC of a point at infinity, the scale of c per unit of |1 − z_f/z|."""
    return lens.pixels_per_mm * (lens.z_view / lens.z_focal) * lens.aperture_mm


def depth_from_defocus(sigma, lens=None, side="far"):
    """Depth (or relative inverse depth) per pixel from a defocus map, on one side of the focal plane.

    Args:
        sigma: H×W defocus map, Gaussian σ in pixels.
        lens: None for a relative result, or the camera: a ``dmenet.syndof.lens.ThinLens`` or a dict
            with f_mm (focal length), z_focal (focus distance, mm), n_number (f-number) and width
            (the photo's width in px; default the map's).
        side: "far" (default: everything blurred lies behind the focal plane, the usual photo of a
            near subject) or "near" (everything blurred lies in front of it).

    Returns:
        H×W float64. Without a camera: relative inverse depth in [0, 1], larger = nearer, affine in
        the true inverse depth (σ is affine in c, c in 1/z on one side): "far" gives 1 − σ/σ_max (the
        focal plane 1, the most blurred pixel 0), "near" σ/σ_max. With a camera: depth in mm, NaN where
        σ = 0 (inside the depth of field, unresolved), and on the far side +inf where c ≥ K (blur
        beyond what any finite depth gives this camera).

    Examples:
        >>> from dmenet.syndof.lens import ThinLens
        >>> depth_mm = dmenet.depth_from_defocus(sigma, ThinLens(50, 2000, 2.8, 640), side="far")
    """
    if side not in SIDES:
        raise ValueError(f"unknown side {side!r}; expected one of {', '.join(SIDES)}")
    sigma = as_sigma(sigma)
    if lens is None:
        top = float(sigma.max())
        relative = sigma / top if top > 0 else np.zeros_like(sigma)
        return 1.0 - relative if side == "far" else relative
    lens = as_lens(lens, sigma.shape[1])
    coc = coc_from_sigma(sigma)
    scale, z_focal = defocus_constant(lens), lens.z_focal
    # The lens's own c = K·|z − z_f|/(z + ε), solved for z (ε as in dmenet.syndof.lens, so a round trip is exact).
    with np.errstate(divide="ignore", invalid="ignore"):
        if side == "far":
            depth = (scale * z_focal + coc * EPSILON) / (scale - coc)
            depth = np.where(coc >= scale, np.inf, depth)
        else:
            depth = (scale * z_focal - coc * EPSILON) / (scale + coc)
    return np.where(np.isnan(coc), np.nan, depth)
