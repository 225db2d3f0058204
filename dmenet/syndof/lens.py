"""Thin-lens camera: circle of confusion per depth, the aperture that yields a chosen maximum CoC,
and random camera draws with the official SYNDOF distributions (but seeded).

All formulas follow the official generator operation by operation, because the CoC is rounded to
0.1 px and a different floating-point evaluation order can move a value across a rounding edge.
"""
import dataclasses

import numpy as np

from dmenet.units import round_half_away

EPSILON = 1e-4
SENSOR_WIDTH_MM = 36.0
FOCAL_LENGTHS_MM = (50.0, 70.0, 85.0)
FOCAL_LENGTH_WEIGHTS = (0.1, 0.4, 0.4)
NEAR_SHIFT_FACTOR = 5.0  # the nearest depth is moved to 5·f when it is nearer
FOCUS_SAMPLES = 10000


@dataclasses.dataclass(frozen=True)
class ThinLens:
    """One camera: focal length f, focused depth z_focal (mm), f-number N, for an image `width` px wide."""

    f_mm: float
    z_focal: float
    n_number: float
    width: int

    @property
    def aperture_mm(self):
        return self.f_mm / self.n_number

    @property
    def pixels_per_mm(self):
        return self.width / SENSOR_WIDTH_MM

    @property
    def z_view(self):
        """Image distance of the focused plane (thin-lens equation)."""
        return (self.f_mm * self.z_focal) / (self.z_focal - self.f_mm + EPSILON)

    def coc(self, depths):
        """CoC diameter in pixels for depths in mm, rounded to 0.1 px (half away from zero)."""
        return coc_from_aperture(depths, self.z_focal, self.aperture_mm, self.pixels_per_mm, self.z_view / self.z_focal)


def coc_from_aperture(depths, z_focal, aperture_mm, pixels_per_mm, magnification):
    """CoC = m·(z_view/z_f)·A·|z − z_f|/(z + ε), rounded to 0.1 px, in the official operation order."""
    depths = np.asarray(depths, np.float64)
    on_sensor = aperture_mm * (np.abs(depths - z_focal) / (depths + EPSILON))
    coc = (pixels_per_mm * magnification) * on_sensor
    return round_half_away(coc * 10.0) / 10.0


def lens_for_max_coc(f_mm, z_focal, z_near, z_far, width, max_coc):
    """The camera whose most defocused extreme depth (nearest or farthest) gets exactly `max_coc`."""
    pixels_per_mm = width / SENSOR_WIDTH_MM
    z_view = (f_mm * z_focal) / (z_focal - f_mm + EPSILON)
    magnification = z_view / z_focal
    coc_far = coc_from_aperture(z_far, z_focal, f_mm, pixels_per_mm, magnification)
    coc_near = coc_from_aperture(z_near, z_focal, f_mm, pixels_per_mm, magnification)
    extreme = z_far if coc_far > coc_near else z_near
    n_number = (f_mm**2 / (z_focal - f_mm)) * (pixels_per_mm / max_coc) * (abs(extreme - z_focal) / extreme)
    if not np.isfinite(n_number) or n_number <= 0:
        raise ValueError(
            f"cannot defocus a scene whose depths all equal the focus depth ({z_focal:g} mm): "
            "the depth map needs at least two distinct depths"
        )
    return ThinLens(float(f_mm), float(z_focal), float(n_number), int(width))


def shift_near_depth(depth, f_mm):
    """Move the depth so its minimum is 5·f when it is nearer (the thin-lens model breaks near f)."""
    near = float(depth.min())
    limit = NEAR_SHIFT_FACTOR * f_mm
    if near < limit:
        return depth - near + limit, limit - near
    return depth, 0.0


def draw_focal_length(rng):
    weights = np.asarray(FOCAL_LENGTH_WEIGHTS) / np.sum(FOCAL_LENGTH_WEIGHTS)
    return float(rng.choice(FOCAL_LENGTHS_MM, p=weights))


def focus_weights(count, rng):
    """Official focus-depth prior over `count` depths sorted far → near: a histogram of N(n, n/2)
    draws over 2n bins, of which the first n are kept, so the weight rises toward the near end."""
    samples = rng.normal(count, count / 2.0, FOCUS_SAMPLES)
    histogram, _ = np.histogram(samples, bins=2 * count)
    weights = histogram[:count].astype(np.float64)
    if weights.sum() == 0:
        weights[:] = 1.0
    return weights / weights.sum()


def draw_focus_depth(depths_far_to_near, rng):
    weights = focus_weights(len(depths_far_to_near), rng)
    return float(rng.choice(depths_far_to_near, p=weights))
