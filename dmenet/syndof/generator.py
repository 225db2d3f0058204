"""One SYNDOF sample: image + metric depth → defocused image and its labels.

The camera is drawn as the official generator draws it (focal length, focus depth, aperture that
gives the chosen maximum CoC; redrawn up to 22 times until the scene has 200–350 layers), but from a
seeded NumPy generator, or it is given explicitly to reproduce a known output.
"""
import dataclasses

import numpy as np

from dmenet.syndof.compositing import composite
from dmenet.syndof.labels import DefocusLabels, depth_preview, labels_from_coc
from dmenet.syndof.layers import LayerStack, decompose
from dmenet.syndof.lens import (
    ThinLens,
    draw_focal_length,
    draw_focus_depth,
    lens_for_max_coc,
    shift_near_depth,
)
from dmenet.units import DEFAULT_MAX_COC


class SyndofInputError(ValueError):
    """An image or depth map the generator cannot defocus; the message says why and what to do."""


LAYER_RANGE = (200, 350)  # the official generator redraws the camera outside this many layers
CAMERA_DRAWS = 22  # the official loop makes at most this many draws, then keeps the last


@dataclasses.dataclass(frozen=True)
class CameraChoice:
    """What a camera draw decided: the lens, the near-depth shift applied, how many draws it took,
    and whether the last draw's layer count fell inside the requested range (the official loop keeps
    the last draw even when none did)."""

    lens: ThinLens
    depth_shift_mm: float
    draws: int
    layers_in_range: bool = True


@dataclasses.dataclass
class SyndofSample:
    """One synthetic defocus sample, as ``synthesize`` and ``dmenet.synthesize_defocus`` return it.

    Attributes:
        blurred: H×W×3 float64 defocused photo (``blurred_uint8`` is the 8-bit image the writer saves).
        labels: the per-pixel maps (``dmenet.syndof.labels.DefocusLabels``): ``coc`` and ``sigma`` in
            pixels, ``sigma_uint16`` (σ·10, the official blur_map), ``sigma_norm`` and ``binary``.
        stack: the depth layers the photo was decomposed into (``depth_preview`` pictures them).
        camera: the thin lens drawn or fixed for this sample; ``parameters()`` lists it as JSON.
        max_coc: the largest circle of confusion in pixels (σ_max = (max_coc − 1)/4).
    """

    blurred: np.ndarray  # H×W×3 float64, before clipping (values may exceed [0, 1] by rounding)
    labels: DefocusLabels
    stack: LayerStack
    camera: CameraChoice
    max_coc: int

    @property
    def blurred_uint8(self):
        from dmenet.syndof.labels import to_uint8

        return to_uint8(self.blurred)

    @property
    def depth_preview(self):
        return depth_preview(self.stack.depth_map)

    def parameters(self):
        """Everything needed to reproduce or interpret the sample (JSON-serialisable)."""
        lens = self.camera.lens
        return {
            "f_mm": lens.f_mm,
            "z_focal_mm": lens.z_focal,
            "f_number": lens.n_number,
            "aperture_mm": lens.aperture_mm,
            "sensor_width_mm": 36.0,
            "max_coc_px": self.max_coc,
            "sigma_max_px": (self.max_coc - 1) / 4.0,
            "num_layers": int(self.stack.count),
            "num_unique_depths": int(len(self.stack.unique_depths)),
            "focus_layer_far_to_near": int(self.stack.focus_layer),
            "focus_percent": 1.0 - (self.stack.focus_layer + 1) / self.stack.count,
            "depth_shift_mm": self.camera.depth_shift_mm,
            "camera_draws": self.camera.draws,
            "layers_in_range": bool(self.camera.layers_in_range),
            "blur_map_encoding": "blur_map/*.png: uint16 = round(sigma_px * 10); "
            "blur_map_norm: sigma / max sigma of this image (uint8 /255); blur_map_binary: 255 where CoC > 1 px",
        }


def validate_inputs(image, depth_mm):
    image = np.asarray(image, np.float64)
    depth_mm = np.asarray(depth_mm, np.float64)
    if image.ndim != 3 or image.shape[2] != 3:
        raise SyndofInputError(f"the image must be H×W×3 RGB, got shape {image.shape}")
    if depth_mm.shape != image.shape[:2]:
        raise SyndofInputError(f"depth {depth_mm.shape} and image {image.shape[:2]} differ in size; resize one to the other")
    if min(depth_mm.shape) < 3:
        raise SyndofInputError(f"the image is too small ({depth_mm.shape[1]}×{depth_mm.shape[0]}); need at least 3×3 pixels")
    if not np.all(np.isfinite(image)):
        raise SyndofInputError("the image contains NaN or infinite values; replace them before defocusing")
    if not np.all(np.isfinite(depth_mm)) or depth_mm.min() <= 0:
        raise SyndofInputError("depth must be finite and positive everywhere (resolve invalid pixels first: "
                               "dmenet.syndof.depth_io.DepthConversion)")
    if depth_mm.min() == depth_mm.max():
        raise SyndofInputError(
            f"the depth map is constant ({depth_mm.min():g} mm everywhere), and a single depth cannot be defocused; "
            "give a depth map with at least two depths (check the depth scale and the values marked invalid, which take "
            "the depth of their valid neighbours)"
        )
    return image, depth_mm


def draw_camera(depth_mm, width, max_coc, rng, layer_range=LAYER_RANGE, draws=CAMERA_DRAWS):
    """Official camera draw: f ∈ {50, 70, 85} mm (1:4:4), near depth moved to ≥ 5f, focus depth from
    the far-to-near prior, aperture for `max_coc`; redrawn until the layer count is in `layer_range`
    (at most `draws` draws, then the last is kept, flagged out of range). Returns (CameraChoice,
    shifted depth, LayerStack)."""
    depth_values = np.unique(depth_mm)  # sorted once; a shift maps values one to one
    for attempt in range(1, draws + 1):  # noqa: B007 (the count of draws is reported after the loop)
        f_mm = draw_focal_length(rng)
        shifted_values, shift = shift_near_depth(depth_values, f_mm)
        unique = np.unique(shifted_values)[::-1]  # same arithmetic as shifting every pixel
        z_focal = draw_focus_depth(unique, rng)
        lens = lens_for_max_coc(f_mm, z_focal, unique[-1], unique[0], width, max_coc)
        layers = _layer_count(lens, unique)
        in_range = layer_range[0] <= layers <= layer_range[1]
        if in_range:
            break
    shifted, _ = shift_near_depth(depth_mm, f_mm)
    return CameraChoice(lens, shift, attempt, in_range), shifted, decompose(shifted, lens)


def _layer_count(lens, unique_far_to_near):
    cocs = lens.coc(unique_far_to_near)
    return int(1 + np.count_nonzero(np.diff(cocs)))


def synthesize(image, depth_mm, max_coc=DEFAULT_MAX_COC, rng=None, f_mm=None, z_focal=None, layer_range=LAYER_RANGE, progress=None):
    """Defocus `image` (H×W×3 in [0, 1]) by `depth_mm` (H×W, mm). Give `f_mm` and `z_focal` to fix
    the camera (the aperture still follows from `max_coc`), or a seeded `rng` to draw it."""
    image, depth_mm = validate_inputs(image, depth_mm)
    width = image.shape[1]
    if (f_mm is None) != (z_focal is None):
        raise SyndofInputError("give both f_mm and z_focal to fix the camera, or neither to draw it")
    if f_mm is not None:
        shifted, shift = shift_near_depth(depth_mm, float(f_mm))
        if not np.any(shifted == z_focal):
            raise SyndofInputError(f"z_focal {z_focal} mm is not one of the (shifted) depths of the scene; pick one of them")
        lens = lens_for_max_coc(float(f_mm), float(z_focal), shifted.min(), shifted.max(), width, max_coc)
        camera, stack = CameraChoice(lens, shift, 0), decompose(shifted, lens)
    else:
        rng = rng if rng is not None else np.random.default_rng()
        camera, shifted, stack = draw_camera(depth_mm, width, max_coc, rng, layer_range)
    blurred = composite(image, stack, max_coc, progress=progress)
    return SyndofSample(blurred, labels_from_coc(stack.coc_map), stack, camera, int(max_coc))
