"""The public Python API: defocus maps from photos, synthetic defocus from RGB-D, and scoring.

Everything here is re-exported by ``dmenet`` itself and imported lazily, so ``import dmenet`` stays
cheap and loads no TensorFlow until a model is needed.
"""
import pathlib

import numpy as np

METHODS = ("dmenet", "park17", "zhuo11")


def _as_photo(image):
    """A path or an array → H×W×3 float32 in [0, 1] (uint8 and uint16 arrays are scaled)."""
    from dmenet.files.images import read_image, to_unit_float

    if isinstance(image, str | pathlib.Path):
        return read_image(image)
    return to_unit_float(np.asarray(image))


def load_predictor(method="dmenet", weights=None, *, precision="auto", max_side=None, **options):
    """A predictor for many photos: load the weights once, then call ``predict_sigma`` per photo.

    Args:
        method: "dmenet" (network B), "park17" (Park et al. 2017) or "zhuo11" (Zhuo & Sim 2011; no network,
            no weights, no TensorFlow).
        weights: dmenet: our ``.weights.h5`` or the official ``DMENet_BDCS.npz`` (None: $DMENET_WEIGHTS);
            park17: ``DHDE_model.caffemodel`` or a converted ``.weights.h5`` (None: $DMENET_PARK17_WEIGHTS,
            else the official file, downloaded once with its checksum); zhuo11: must be None.
        precision: "auto" (``dmenet.inference.precision.resolve_precision``), "fp32" or "bf16": the network's
            arithmetic (Park'17: its classifier; the hand-crafted stages stay float64; zhuo11: float64 only).
        max_side: shrink photos whose long side exceeds this first; σ comes back in full-size pixels.
        **options: dmenet: tile, margin, tile_batch; park17: max_pixels, params; zhuo11: max_pixels, params,
            solver ("auto", "amg", "direct"), tolerance, and any ``Zhuo11Params`` field (edge_threshold,
            reblur_std, lam, max_blur, canny_sigma).

    Returns:
        An object with ``predict_sigma(image) -> H×W float32 σ in pixels`` and ``predict(image)``
        (σ plus the scale it was computed at).

    Examples:
        >>> predictor = dmenet.load_predictor("park17", "DHDE_model.caffemodel")
        >>> maps = [predictor.predict_sigma(dmenet.read_image(p)) for p in ["a.jpg", "b.jpg"]]
    """
    if method == "park17":
        from dmenet.park17.predictor import Park17Predictor

        return Park17Predictor.from_weights(weights, precision=precision, max_side=max_side, **options)
    if method == "zhuo11":
        from dmenet.zhuo11.predictor import Zhuo11Predictor

        return Zhuo11Predictor.from_weights(weights, precision=precision, max_side=max_side, **options)
    if method == "dmenet":
        from dmenet.inference.tiling import DefocusPredictor

        return DefocusPredictor.from_weights(weights, precision=precision, max_side=max_side, **options)
    raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")


def estimate_defocus(image, weights=None, method="dmenet", **options):
    """Defocus map of one photo: the Gaussian blur σ at every pixel, in pixels of the photo.

    Args:
        image: a file path, or an H×W×3 array (uint8, uint16, or float in [0, 1]).
        weights: see ``load_predictor``.
        method: "dmenet", "park17" or "zhuo11".
        **options: passed to ``load_predictor`` (precision, max_side, zhuo11's lam, max_blur, …).

    Returns:
        H×W float32 array of σ in pixels.

    Examples:
        >>> import dmenet
        >>> sigma = dmenet.estimate_defocus("photo.jpg", method="park17", weights="DHDE_model.caffemodel")
        >>> float(sigma.max())
        >>> sigma = dmenet.estimate_defocus("photo.jpg", method="zhuo11", lam=0.001)
    """
    return load_predictor(method, weights, **options).predict_sigma(_as_photo(image))


def synthesize_defocus(rgb, depth_mm, max_coc=29, *, seed=None, f_mm=None, z_focal=None):
    """One SYNDOF sample: a thin-lens defocused version of an all-in-focus photo and its σ map.

    Args:
        rgb: H×W×3 all-in-focus photo (uint8 or float in [0, 1]).
        depth_mm: H×W depth in millimetres (valid everywhere).
        max_coc: the largest circle of confusion in pixels (29 → σ_max 7 px).
        seed: seeds the random camera (focal length, focus distance, f-number); ignored when both
            ``f_mm`` and ``z_focal`` fix the camera.
        f_mm: a fixed focal length in mm instead of a random draw.
        z_focal: a fixed focus depth in mm instead of a random draw.

    Returns:
        ``dmenet.syndof.generator.SyndofSample``: ``blurred`` (float) and ``blurred_uint8`` images,
        ``labels.sigma`` (σ in px per pixel; also ``labels.coc``, ``labels.binary``) and the camera's
        ``parameters()``.

    Examples:
        >>> sample = dmenet.synthesize_defocus(rgb, depth_mm, seed=0)
        >>> sample.blurred_uint8.shape, float(sample.labels.sigma.max())
    """
    from dmenet.files.images import to_unit_float
    from dmenet.syndof.generator import synthesize

    image = to_unit_float(np.asarray(rgb)).astype(np.float64)
    return synthesize(image, np.asarray(depth_mm, np.float64), max_coc=max_coc, rng=np.random.default_rng(seed),
                      f_mm=f_mm, z_focal=z_focal)


def evaluate(predictions, dataset="cuhk", data_root=None, *, split=None, unit=None, label=None, progress=False, **options):
    """Score a folder of defocus maps on a benchmark with the paper's protocol.

    Args:
        predictions: folder of maps named ``<stem>.npy`` / ``<stem>.png`` or infer.py's ``<stem>_sigma.*``.
        dataset: "cuhk", "dut", "folder", "rtf" or "syndof".
        data_root: the dataset folder (image/ + gt/, or image/ + blur_map/ for syndof).
        split: cuhk: "dmenet-test" (default), "dmenet-train" or "all".
        unit: what a stored value means: "sigma", "normalized", "official" or "score" (default: inferred).
        label: the run's name in the results.
        progress: show progress bars.
        **options: for the protocol (threshold, beta_squared) and the dataset (polarity, split_file, …).

    Returns:
        dict with "metrics" (accuracy, AP, F-measure, MAE / MSE, …), "protocol" and "per_image" rows.

    Examples:
        >>> result = dmenet.evaluate("outputs/infer", "cuhk", "CUHK", split="all")
        >>> result["metrics"]["average_precision"]
    """
    import dataclasses

    from dmenet.evaluation import runner
    from dmenet.evaluation.datasets import open_benchmark
    from dmenet.evaluation.predictions import PredictionFolder

    protocol = {key: options.pop(key) for key in ("threshold", "beta_squared") if key in options}
    polarity = options.pop("polarity", None)
    if split is not None:
        options["split"] = split
    benchmark = open_benchmark(dataset, data_root, None, None, polarity, **options)
    source = PredictionFolder(pathlib.Path(predictions), unit=unit, label=label)
    return dataclasses.asdict(runner.evaluate(benchmark, source, progress=progress, **protocol))
