"""``python infer.py --demo``: real defocus maps with nothing to download, ending in report.html.

Photos: two that scikit-image bundles with real shallow depth of field (``chelsea``: a cat before a
blurred room; ``coffee``: a cup whose table recedes out of focus) and Middlebury's motorcycle
(scikit-image's ``stereo_motorcycle``) defocused by the project's SYNDOF generator from its measured
disparity, so that one photo has a ground-truth σ map. Methods: Zhuo & Sim 2011 (no weights), plus
Park'17 when its official weights are already here ($DMENET_PARK17_WEIGHTS or Keras' cache; never
downloaded). Each photo also gets what its map is for, made by infer.py's own application step
(``dmenet.applications``): an all-in-focus version (the official deconvolution, CUHK's λ), a 2×
magnified defocus and a relative depth map.
"""
import os
import pathlib

import numpy as np

DEMO_METHODS = ("zhuo11", "park17")  # Park'17 only when its weights are at hand; no DMENet (no download)
DEMO_PHOTOS = ("chelsea", "coffee")  # scikit-image photos with real shallow depth of field
DEMO_SIDE = 400  # long side of the demo photos: a minute or two on a laptop CPU
MASK_THRESHOLD = 1.0  # σ px above which the demo's mask calls a pixel out of focus
MAGNIFY_FACTOR = 2.0
ALL_IN_FOCUS_PRESET = "cuhk"  # the official deconvolution's λ for CUHK-like photos (420)
SYNTHETIC_NAME = "motorcycle_syndof"
SYNTHETIC_MAX_COC = 13  # σ up to 3 px: within Zhuo & Sim's range (maxBlur 3)
# Middlebury 2014 "Motorcycle" calibration (full size, 2964 px wide); scikit-image's copy is a quarter of it.
MOTORCYCLE_FOCAL_PX, MOTORCYCLE_BASELINE_MM, MOTORCYCLE_DOFFS_PX, MOTORCYCLE_SCALE = 3979.911, 193.001, 124.343, 0.25


def _shrink(image, side):
    from skimage.transform import resize

    height, width = image.shape[:2]
    scale = min(1.0, side / max(height, width))
    if scale == 1.0:
        return image
    return resize(image, (round(height * scale), round(width * scale)), anti_aliasing=True, preserve_range=True)


def write_demo_photos(folder, side=DEMO_SIDE):
    """The bundled photos as PNGs in `folder` → [paths]."""
    import skimage.data

    from dmenet.files.images import write_png

    folder = pathlib.Path(folder)
    paths = []
    for name in DEMO_PHOTOS:
        path = folder / f"{name}.png"
        photo = _shrink(np.asarray(getattr(skimage.data, name)(), np.float64) / 255.0, side)
        write_png(path, np.round(np.clip(photo, 0, 1) * 255).astype(np.uint8))
        paths.append(path)
    return paths


def motorcycle_depth_mm():
    """(photo float [0, 1], depth in mm) of scikit-image's Middlebury motorcycle; pixels without a
    disparity take their nearest measured neighbour's."""
    import skimage.data
    from scipy import ndimage

    left, _, disparity = skimage.data.stereo_motorcycle()
    valid = np.isfinite(disparity) & (disparity > 0)
    nearest = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    disparity = disparity[tuple(nearest)].astype(np.float64)
    focal, offset = MOTORCYCLE_FOCAL_PX * MOTORCYCLE_SCALE, MOTORCYCLE_DOFFS_PX * MOTORCYCLE_SCALE
    return np.asarray(left, np.float64) / 255.0, focal * MOTORCYCLE_BASELINE_MM / (disparity + offset)


def write_synthetic_photo(folder, side=DEMO_SIDE, seed=3):
    """The motorcycle defocused by the SYNDOF generator → (path, its σ map in px)."""
    from skimage.transform import resize

    from dmenet.api import synthesize_defocus
    from dmenet.files.images import write_png

    photo, depth = motorcycle_depth_mm()
    photo = _shrink(photo, side)
    depth = resize(depth, photo.shape[:2], order=0, anti_aliasing=False, preserve_range=True)
    sample = synthesize_defocus(photo, depth, max_coc=SYNTHETIC_MAX_COC, seed=seed)
    path = pathlib.Path(folder) / f"{SYNTHETIC_NAME}.png"
    write_png(path, sample.blurred_uint8)
    return path, np.asarray(sample.labels.sigma, np.float64)


def park17_weights_at_hand():
    """Park'17's weights if they are here without a download ($DMENET_PARK17_WEIGHTS or Keras' cache), else None."""
    from dmenet.weights.park17 import WEIGHTS_ENV, official_cache_path

    candidates = [os.environ.get(WEIGHTS_ENV), official_cache_path()]
    return next((pathlib.Path(path) for path in candidates if path and pathlib.Path(path).is_file()), None)


def run_demo(output_dir="outputs/demo", progress=True, log=print, side=DEMO_SIDE):
    """Write the demo photos, estimate their defocus maps and what they are for, write report.html.

    Args:
        output_dir: where everything goes (photos in OUTPUT/demo_photos/).
        progress: progress bars.
        log: called with each line for the user.
        side: long side of the demo photos in pixels.

    Returns:
        The path of report.html.

    Example:
        >>> run_demo("outputs/demo")
    """
    from dmenet.api import load_predictor
    from dmenet.applications.deblur import resolve_lambda
    from dmenet.applications.outputs import ApplicationOptions
    from dmenet.inference.batch import OutputOptions, run_inference
    from dmenet.reports.photos import write_photo_report

    try:
        predictor = load_predictor("zhuo11")
    except ValueError as error:
        raise ValueError(f"the demo runs Zhuo & Sim 2011 (method zhuo11), which this version cannot load: {error}") from error
    output_dir = pathlib.Path(output_dir)
    photos = output_dir / "demo_photos"
    paths = write_demo_photos(photos, side)
    synthetic, truth = write_synthetic_photo(photos, side)
    paths.append(synthetic)
    log(f"demo photos in {photos}: {', '.join(path.name for path in paths)} "
        f"({synthetic.name}: defocused by the SYNDOF generator from Middlebury's measured disparity)")
    weights = park17_weights_at_hand()
    companion = load_predictor("park17", str(weights)) if weights is not None else None
    if companion is None:
        log("note: Park'17 left out: its weights are not here (set $DMENET_PARK17_WEIGHTS; the demo downloads nothing)")
    applications = ApplicationOptions(all_in_focus=resolve_lambda(ALL_IN_FOCUS_PRESET), all_in_focus_preset=ALL_IN_FOCUS_PRESET,
                                      magnify=MAGNIFY_FACTOR, depth=True)
    options = OutputOptions(write_npy=True, mask_threshold=MASK_THRESHOLD, applications=applications)
    summary = run_inference(paths, predictor, output_dir, options, progress=progress, compare_with=companion)
    if summary["failures"]:
        raise RuntimeError("the demo failed on " + "; ".join(failure["error"] for failure in summary["failures"]))
    notes = [f"Demo: Zhuo & Sim 2011{' and Park et al. 2017' if companion else ''} on photos scikit-image bundles. "
             f"{synthetic.stem} was defocused by the project's SYNDOF generator (max CoC {SYNTHETIC_MAX_COC} px, σ ≤ "
             f"{(SYNTHETIC_MAX_COC - 1) / 4:g} px) from the Middlebury motorcycle's measured depth: its ground-truth σ is shown. "
             f"Masks: σ > {MASK_THRESHOLD:g} px. All-in-focus: the official deconvolution (λ {ALL_IN_FOCUS_PRESET}); "
             f"magnified: a {MAGNIFY_FACTOR:g}× wider aperture; depth: relative (bright = near)."]
    return write_photo_report(output_dir, "dmenet demo: defocus maps of bundled photos", {synthetic.stem: truth}, notes)
