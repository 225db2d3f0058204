"""What the classical methods (Park'17, Zhuo & Sim) share as predictors: a size bound, stages, σ back at full size.

Their pipelines run once on the whole photo in named stages rather than in tiles, so a photo larger
than the bound is shrunk first and its σ map is brought back to full-size pixels.
"""
import math
import time

import numpy as np


def shrink_scale(height, width, max_side=None, max_pixels=None):
    """The factor (≤ 1) that brings a photo within `max_side` pixels a side and `max_pixels` pixels."""
    scale = 1.0
    if max_side and max(height, width) > max_side:
        scale = max_side / max(height, width)
    if max_pixels and height * width * scale ** 2 > max_pixels:
        scale = math.sqrt(max_pixels / (height * width))
    return scale


def predict_in_stages(image, estimate, stages, *, max_side=None, max_pixels=None, progress=None, stop=None, min_side=1):
    """Run a staged pipeline on a photo within the size bound; (σ at the photo's size, scale, the pipeline's result).

    Args:
        image: H×W×3 float in [0, 1] or uint8.
        estimate: ``estimate(image, on_stage)`` → a result with ``sigma``; it calls ``on_stage(name)`` as
            each stage starts.
        stages: the names `estimate` announces, in order (their count sizes the progress).
        max_side, max_pixels: the size bound (``shrink_scale``).
        progress: called as ``progress(done, total, stage=name)`` as each stage starts and with
            done == total and stage "done" at the end.
        stop: called between stages; returning True raises ``InferenceInterrupted``.
        min_side: the smallest side a shrunk photo keeps.

    Returns:
        (H×W float32 σ in full-size pixels, the scale the pipeline ran at, the pipeline's result).
    """
    from dmenet.inference.tiling import InferenceInterrupted

    height, width = image.shape[:2]
    scale = shrink_scale(height, width, max_side, max_pixels)
    if scale != 1.0:
        from skimage.transform import resize

        small = (max(min_side, round(height * scale)), max(min_side, round(width * scale)))
        image = resize(np.asarray(image, np.float64), small, anti_aliasing=True, preserve_range=True)
    started = []

    def on_stage(name):
        if stop is not None and stop():
            raise InferenceInterrupted()
        if progress is not None:
            progress(len(started), len(stages), stage=name)
        started.append(name)

    result = estimate(image, on_stage)
    if progress is not None:
        progress(len(stages), len(stages), stage="done")
    sigma = result.sigma
    if scale != 1.0:
        from skimage.transform import resize

        sigma = resize(sigma / scale, (height, width), order=1, preserve_range=True).astype(np.float32)
    return sigma, scale, result


class StageTimer:
    """Wall time and, on request, the outputs of a pipeline's stages, announced as each one starts.

    Args:
        on_stage: called as ``on_stage(name)`` when a stage begins (progress display, stop requests).
        keep_intermediates: keep the outputs passed to ``end``.

    Attributes:
        seconds: {stage: wall seconds}, in pipeline order.
        kept: the stages' outputs by name (empty unless ``keep_intermediates``).
    """

    def __init__(self, on_stage=None, keep_intermediates=False):
        self.on_stage, self.keep_intermediates = on_stage, keep_intermediates
        self.seconds, self.kept = {}, {}
        self.started = time.perf_counter()

    def begin(self, name):
        if self.on_stage is not None:
            self.on_stage(name)
        self.started = time.perf_counter()

    def end(self, name, **outputs):
        self.seconds[name] = time.perf_counter() - self.started
        if self.keep_intermediates:
            self.kept.update(outputs)
