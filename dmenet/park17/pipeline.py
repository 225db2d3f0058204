"""Park'17 end to end: one photo in, the dense defocus map (Gaussian σ in pixels) out, stage by stage."""
import concurrent.futures
import dataclasses
import time

import numpy as np

from dmenet.inference.staged import StageTimer
from dmenet.park17.classify import classify_photo_patches
from dmenet.park17.edges import multiscale_edge_map, value_channel
from dmenet.park17.errors import Park17Error
from dmenet.park17.features import patch_centres
from dmenet.park17.params import DEFAULT_PARAMS
from dmenet.park17.prob_jbf import probability_joint_bilateral
from dmenet.park17.rolling_guidance import rolling_guidance_filter
from dmenet.park17.sparse_map import sparse_maps
from dmenet.park17.weighted_median import cluster_guide, joint_weighted_median
from dmenet.propagation.solver import Propagation
from dmenet.syndof import blas_threads

STAGES = ("edges", "features+classification", "rolling_guidance", "median_guide", "matting_setup", "sparse", "prob_jbf",
          "matting_solve", "weighted_median")
# The stages run one after another and announced through ``on_stage``; the guide, its clusters for the
# weighted median and the propagation set-up run beside features+classification.
SEQUENTIAL_STAGES = ("edges", "features+classification", "sparse", "prob_jbf", "matting_solve", "weighted_median")
FEATURE_CHUNK = 8192


@dataclasses.dataclass
class Park17Result:
    """The final map and, on request, every intermediate of the official pipeline.

    Attributes:
        sigma: H×W float32 defocus map, Gaussian σ in pixels (nominally 0.5–2).
        stage_seconds: wall time of each stage, in pipeline order.
        intermediates: stage outputs keyed like the official variables (edgMap, pos, label, confidence,
            spsImg, prbImg, rgfImg, jbfImg, dnsImg), filled when ``keep_intermediates`` was set.
    """

    sigma: np.ndarray
    stage_seconds: dict
    intermediates: dict


def as_unit_rgb(image):
    """The official input: RGB as float64 in [0, 1] (``im2double``).

    Args:
        image: H×W×3 uint8, or float in [0, 1].

    Returns:
        H×W×3 float64 array.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise Park17Error(f"expected an H×W×3 RGB image, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    return np.clip(image.astype(np.float64), 0.0, 1.0)


def estimate_park17(image, classifier, params=DEFAULT_PARAMS, edge_map=None, keep_intermediates=False, on_stage=None):
    """Defocus map of one photo by Park et al. (CVPR 2017), exact to the official pipeline.

    Args:
        image: H×W×3 RGB, uint8 or float in [0, 1].
        classifier: the patch network, e.g. from ``dmenet.weights.park17.load_park17_classifier``.
        params: the method's parameters (default: the official ones).
        edge_map: optional H×W uint8 map {0, 1, 2} to use instead of the Canny stage.
        keep_intermediates: also return every stage's output.
        on_stage: called as ``on_stage(name)`` when a stage starts (progress display).

    Returns:
        Park17Result with ``sigma`` in pixels.

    Raises:
        Park17Error: the photo has no edges at the method's thresholds (e.g. a flat image), so there is
            nothing to estimate blur from.

    Example:
        >>> from dmenet.weights.park17 import load_park17_classifier
        >>> result = estimate_park17(rgb_uint8, load_park17_classifier("DHDE_model.caffemodel"))
        >>> result.sigma.max()
    """
    # The pipeline keeps both cores busy with its own two threads; OpenBLAS threads on top (the features'
    # small matrix products and batched SVDs) only spin: twice the CPU time for a slower stage.
    with blas_threads.limited():
        return _estimate(image, classifier, params, edge_map, keep_intermediates, on_stage)


def _estimate(image, classifier, params, edge_map, keep_intermediates, on_stage):
    rgb = as_unit_rgb(image)
    timer = StageTimer(on_stage, keep_intermediates)
    begin, end, seconds, kept = timer.begin, timer.end, timer.seconds, timer.kept

    begin("edges")
    gray = value_channel(rgb)
    if edge_map is None:
        edge_map = multiscale_edge_map(gray, params.edge_low_test, params.edge_high_test)
    positions, scales = patch_centres(edge_map)
    end("edges", edgMap=edge_map, pos=positions)
    if len(positions) == 0:
        raise Park17Error("no edges found at Park'17's Canny thresholds (a flat or blank image?): nothing to estimate blur from")

    # The guide and the propagation system depend on the photo and the edge map only, not on the
    # labels: a second thread prepares them while the classifier runs (both release the GIL).
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        prepared = pool.submit(_prepare_propagation, rgb, edge_map != 0, params)
        begin("features+classification")
        # = classify_patches(classifier, iter_feature_chunks(...)), with conv1 shared between patches.
        labels, confidence, _ = classify_photo_patches(classifier, rgb, gray, positions, scales, params=params,
                                                       chunk_size=FEATURE_CHUNK)
        end("features+classification", label=labels, confidence=confidence)
        guide, clusters, propagation, guide_seconds = prepared.result()
    seconds.update(guide_seconds)
    if keep_intermediates:
        kept["rgfImg"] = guide

    begin("sparse")
    sparse_sigma, sparse_confidence = sparse_maps(gray.shape, positions, labels, confidence)
    end("sparse", spsImg=sparse_sigma, prbImg=sparse_confidence)

    begin("prob_jbf")
    # The official code indexes the 3-channel guide with two subscripts, so only red is used (PARK17 §9).
    filtered = probability_joint_bilateral(
        sparse_sigma, sparse_confidence, guide[..., 0], radius=params.jbf_radius,
        sigma_spatial=params.jbf_sigma_spatial, sigma_range=params.jbf_sigma_range,
        sigma_probability=params.jbf_sigma_probability)
    end("prob_jbf", jbfImg=filtered)

    begin("matting_solve")
    dense = propagation.solve(filtered)
    end("matting_solve", dnsImg=dense)

    begin("weighted_median")
    sigma = joint_weighted_median(
        dense.astype(np.float32), guide, radius=params.wmf_radius, sigma=params.wmf_sigma,
        value_levels=params.wmf_value_levels, guide_levels=params.wmf_guide_levels, iterations=params.wmf_iterations,
        guide_clusters=clusters)
    end("weighted_median")
    return Park17Result(sigma=np.asarray(sigma, np.float32), stage_seconds=seconds, intermediates=kept)


def _prepare_propagation(rgb, known, params):
    """Rolling-guidance guide, its weighted-median clusters and the propagation system for it, with their
    seconds (run in a thread)."""
    started = time.perf_counter()
    guide = rolling_guidance_filter(rgb, params.rgf_sigma_spatial, params.rgf_sigma_range, params.rgf_iterations)
    guided = time.perf_counter()
    clusters = cluster_guide(guide, params.wmf_sigma, params.wmf_guide_levels)
    clustered = time.perf_counter()
    propagation = Propagation(guide, known, lam=params.matting_lambda, epsilon=params.matting_epsilon,
                              tolerance=params.matting_tolerance)
    seconds = {"rolling_guidance": guided - started, "median_guide": clustered - guided,
               "matting_setup": time.perf_counter() - clustered}
    return guide, clusters, propagation, seconds
