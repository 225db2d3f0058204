"""The applications' files for one photo and its σ map, as infer.py writes them beside the map.

    NAME_allinfocus.png  the deconvolved, all-in-focus photo (8-bit RGB)
    NAME_magnified.png   the photo with every σ scaled by the magnification factor (8-bit RGB)
    NAME_depth.png       16-bit depth: relative inverse depth · 65535 (larger = nearer), or depth in mm
                         with a camera (0 = unresolved); its dmenet:unit text says which
    NAME_depth.npy       float32 depth (--npy): relative inverse depth, or mm with NaN / inf kept
"""
import dataclasses
import time

import numpy as np

from dmenet.applications.depth import SIDES, as_lens
from dmenet.applications.inputs import positive_number
from dmenet.files.images import save_npy, write_png

UINT16_MAX = 65535


@dataclasses.dataclass
class ApplicationOptions:
    """What to make from each σ map; checked on creation, so a bad value fails before any work."""

    all_in_focus: float | None = None  # λ, the deconvolution's data weight
    all_in_focus_preset: str | None = None  # the preset λ came from, if any
    magnify: float | None = None  # aperture factor k ≥ 1
    depth: bool = False
    side: str = "far"  # which side of the focal plane blur lies on (depth, magnification order)
    camera: dict | None = None  # f_mm, z_focal, n_number: depth in mm (the width is each photo's)

    def __post_init__(self):
        if self.all_in_focus is not None:
            self.all_in_focus = positive_number(self.all_in_focus, "the all-in-focus λ")
        if self.magnify is not None:
            self.magnify = positive_number(self.magnify, "the magnification factor", minimum=1.0, inclusive=True)
        if self.side not in SIDES:
            raise ValueError(f"unknown side {self.side!r}; expected one of {', '.join(SIDES)}")
        if self.camera is not None:
            as_lens(dict(self.camera), width=1)  # the fields' checks; the width comes with each photo

    @property
    def any(self):
        return self.all_in_focus is not None or self.magnify is not None or self.depth

    def describe(self):
        """The applications' parameters, as summary.json records them."""
        described = {}
        if self.all_in_focus is not None:
            described["all_in_focus"] = {"lambda": self.all_in_focus, "preset": self.all_in_focus_preset,
                                         "files": "NAME_allinfocus.png (8-bit RGB)"}
        if self.magnify is not None:
            described["magnify"] = {"factor": self.magnify, "side": self.side, "added_sigma": f"sigma * sqrt({self.magnify:g}^2 - 1)",
                                    "files": "NAME_magnified.png (8-bit RGB)"}
        if self.depth:
            described["depth"] = {"side": self.side, "camera": self.camera, "png_unit": self.depth_unit,
                                  "files": "NAME_depth.png (16-bit), NAME_depth.npy with --npy (float32)"}
        return described

    @property
    def depth_unit(self):
        if self.camera is None:
            return f"relative inverse depth = value / {UINT16_MAX} (larger = nearer; blur on the {self.side} side of focus)"
        return "depth_mm = value (0 = unresolved: inside the depth of field, or beyond the camera's far limit)"


def as_rgb8(image):
    """[0, 1] float image → uint8, rounded to nearest."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def depth_as_uint16(depth, camera):
    """(stored uint16, note or None): relative inverse depth · 65535, or mm with 0 where unresolved."""
    if camera is None:
        return np.round(np.clip(depth, 0.0, 1.0) * UINT16_MAX).astype(np.uint16), None
    resolved = np.isfinite(depth)
    stored = np.where(resolved, np.clip(np.round(depth), 1, UINT16_MAX), 0).astype(np.uint16)
    clipped = int(np.sum(resolved & (depth > UINT16_MAX)))
    note = f"{clipped} pixels beyond {UINT16_MAX} mm stored as {UINT16_MAX} (the .npy keeps them)" if clipped else None
    return stored, note


def write_applications(output_dir, stem, photo, sigma, options, write_npy=False, layer_progress=None):
    """Run the requested applications on one photo and write their files.

    Args:
        output_dir: folder (pathlib.Path) to write into.
        stem: NAME of the outputs.
        photo: H×W×3 float in [0, 1].
        sigma: its H×W σ map in pixels.
        options: ApplicationOptions.
        write_npy: also write NAME_depth.npy.
        layer_progress: optional callable(description) → callback(done_layers, total_layers) or None.

    Returns:
        (files written, figure panels {title: (array, imshow options)}, notes, record for summary.json).
    """
    files, panels, notes, record = [], {}, [], {}

    def progress(description):
        return layer_progress(description) if layer_progress is not None else None

    if options.all_in_focus is not None:
        from dmenet.applications.deblur import deblur

        started = time.perf_counter()
        sharp = deblur(photo, sigma, options.all_in_focus, progress=progress("all-in-focus layers"))
        write_png(output_dir / f"{stem}_allinfocus.png", as_rgb8(sharp))
        files.append(f"{stem}_allinfocus.png")
        panels[f"all-in-focus (λ {options.all_in_focus:g})"] = (sharp, {})
        record["all_in_focus_seconds"] = round(time.perf_counter() - started, 3)
    if options.magnify is not None:
        from dmenet.applications.magnify import magnify_defocus

        started = time.perf_counter()
        wider = magnify_defocus(photo, sigma, options.magnify, side=options.side, progress=progress("magnification layers"))
        write_png(output_dir / f"{stem}_magnified.png", as_rgb8(wider))
        files.append(f"{stem}_magnified.png")
        panels[f"defocus × {options.magnify:g}"] = (wider, {})
        record["magnify_seconds"] = round(time.perf_counter() - started, 3)
    if options.depth:
        from dmenet.applications.depth import depth_from_defocus

        camera = None if options.camera is None else {**options.camera, "width": photo.shape[1]}
        depth = depth_from_defocus(sigma, camera, side=options.side)
        stored, note = depth_as_uint16(depth, options.camera)
        write_png(output_dir / f"{stem}_depth.png", stored, text={"dmenet:unit": options.depth_unit})
        files.append(f"{stem}_depth.png")
        if note:
            notes.append(f"{output_dir / stem}_depth.png: {note}")
        if write_npy:
            save_npy(output_dir / f"{stem}_depth.npy", depth.astype(np.float32))
            files.append(f"{stem}_depth.npy")
        if options.camera is None:
            panels["inverse depth (bright = near)"] = (depth, {"cmap": "gray", "vmin": 0.0, "vmax": 1.0})
        else:
            panels["depth (mm)"] = (depth, {"cmap": "viridis"})
            resolved = depth[np.isfinite(depth)]
            record["depth_mm"] = ({"min": float(resolved.min()), "median": float(np.median(resolved)), "max": float(resolved.max()),
                                   "unresolved_fraction": float(1 - resolved.size / depth.size)} if resolved.size else None)
    return files, panels, notes, record
