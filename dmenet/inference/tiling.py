"""Defocus maps for photos of any size with bounded memory.

B is fully convolutional, so a large photo is cut into windows of at most `tile` pixels a side.
Each window keeps only its *core*; around it, `margin` pixels of context are computed and thrown
away, because a pixel near a window's edge misses part of its receptive field. Cores tile the photo
exactly (nothing is blended, nothing computed twice beyond the margins), and every window starts on
a multiple of 16, so B's pooling grid inside a window is the grid of the whole photo. The default
margin, 64 px, is the smallest of 0, 16, 32 and 64 px whose largest seam error on a trained B stays
under 0.5 px (measured 0.38 px, mean 0.0003 px, on real photos with `python -m dmenet.bench infer
--margins`; docs/inference.md, "Large photos").

Photos smaller than 32 pixels a side are mirrored up to that size. With `max_side` the photo is
first shrunk; σ is then rescaled to the original pixel grid, because a blur of σ pixels at scale s
is a blur of σ/s pixels at full size.
"""
import dataclasses
import math

import numpy as np

MIN_SIDE = 32
SIZE_MULTIPLE = 16  # B pools four times by 2; dmenet.networks.blur_net.SIZE_MULTIPLE (kept TF-free here)
DEFAULT_TILE = 1024
DEFAULT_MARGIN = 64
DEFAULT_TILE_BATCH = 1


class InferenceInterrupted(Exception):
    """Raised between tiles when the caller's `stop` callback asks to stop."""


def _round_up(value, multiple=SIZE_MULTIPLE):
    return -(-value // multiple) * multiple


def _axis_windows(length, tile, margin):
    """[(window_start, core_start, core_end)] along one axis of a padded length (a multiple of 16).

    All windows have the same size (so they can be batched); cores are consecutive and cover
    [0, length); each core has `margin` pixels of context on both sides except at the photo's edge.
    """
    if length <= tile:
        return [(0, 0, length)], length
    count = math.ceil(length / (tile - 2 * margin))
    core = _round_up(math.ceil(length / count))
    window = min(length, core + 2 * margin)
    spans = []
    for k in range(count):
        core_start, core_end = k * core, min((k + 1) * core, length)
        if core_start >= length:
            break
        spans.append((min(max(core_start - margin, 0), length - window), core_start, core_end))
    return spans, window


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """Where B looks for one photo: windows of `window_shape` in the photo padded to `padded_shape`."""

    padded_shape: tuple
    window_shape: tuple
    rows: list
    cols: list

    @property
    def count(self):
        return len(self.rows) * len(self.cols)

    def windows(self):
        """(top, left, (core rows), (core cols)) for every window, row by row."""
        for top, row_start, row_end in self.rows:
            for left, col_start, col_end in self.cols:
                yield top, left, (row_start, row_end), (col_start, col_end)

    @property
    def computed_pixels(self):
        return self.count * self.window_shape[0] * self.window_shape[1]


def plan_tiles(height, width, tile=DEFAULT_TILE, margin=DEFAULT_MARGIN):
    """The windows that cover a height×width photo (see the module docstring).

    Args:
        height, width: the photo's size in pixels.
        tile: the largest window side (bounds memory).
        margin: context pixels computed around each window's core and discarded.

    Returns:
        TilePlan.

    Examples:
        >>> plan_tiles(4000, 6000).count
        35
    """
    padded = (_round_up(max(height, MIN_SIDE)), _round_up(max(width, MIN_SIDE)))
    rows, window_h = _axis_windows(padded[0], tile, margin)
    cols, window_w = _axis_windows(padded[1], tile, margin)
    return TilePlan(padded, (window_h, window_w), rows, cols)


@dataclasses.dataclass
class Prediction:
    """σ in pixels of the input photo, and what the colour scale of a picture of it should span."""

    sigma: np.ndarray
    scale: float  # the photo was shrunk by this factor before B saw it (1 = full resolution)
    sigma_limit: float  # the largest σ B can express at that scale, in full-size pixels
    tiles: int


class DefocusPredictor:
    """B plus its encoding: photo (H×W×3 float in [0, 1]) → σ map in pixels.

    Args:
        model: B (built in fp32 or bf16, see dmenet.inference.precision). The predictor runs a copy
            taken from the model's weights now: in bf16 with the batch normalisations folded into the
            convolutions (dmenet.inference.folding), and on TensorFlow's graph streamlined
            (dmenet.inference.streamline: the same outputs bit for bit, with less data movement).
        encoding: the DefocusEncoding of its checkpoint.
        max_side: shrink photos whose long side exceeds this first (None = full resolution).
        tile: the largest window side B sees at once; bounds memory.
        margin: context pixels around each window's core (multiple of 16).
        tile_batch: windows per call of B (memory grows with it; helps on GPUs).
        xla: "auto", "on" or "off": compile B's call with XLA (dmenet.inference.xla).
        streamline: run the streamlined graph (default); False runs the model's graph as it is
            (the path before streamlining, for comparisons).

    Examples:
        >>> predictor = DefocusPredictor.from_weights("run/blur_net.weights.h5", precision="auto")
        >>> sigma = predictor.predict_sigma(read_image("photo.jpg"))
    """

    method = "dmenet"

    def __init__(self, model, encoding, max_side=None, tile=DEFAULT_TILE, margin=DEFAULT_MARGIN,
                 tile_batch=DEFAULT_TILE_BATCH, precision_reason=None, xla="auto", streamline=True):
        import tensorflow as tf

        from dmenet.inference.folding import fold_batch_norms
        from dmenet.inference.precision import model_precision
        from dmenet.inference.streamline import streamlined
        from dmenet.inference.xla import resolve_xla

        if tile % SIZE_MULTIPLE or margin % SIZE_MULTIPLE or margin < 0 or tile < 2 * margin + SIZE_MULTIPLE:
            raise ValueError(
                f"--tile ({tile}) and --margin ({margin}) must be multiples of {SIZE_MULTIPLE}, "
                f"with tile ≥ 2·margin + {SIZE_MULTIPLE}"
            )
        if max_side is not None and max_side < MIN_SIDE:
            raise ValueError(f"--max-side must be at least {MIN_SIDE}, not {max_side}")
        if tile_batch < 1:
            raise ValueError(f"--tile-batch must be at least 1, not {tile_batch}")
        self.precision = model_precision(model)
        if self.precision == "bf16":
            model = fold_batch_norms(model)
        self.xla, self.xla_reason = resolve_xla(xla, self.precision)
        self.streamlined = streamline and not self.xla  # XLA fuses the padding itself
        if self.streamlined:
            model = streamlined(model)
        self.model, self.encoding = model, encoding
        self.max_side, self.tile, self.margin, self.tile_batch = max_side, tile, margin, tile_batch
        self.precision_reason = precision_reason or "as built"
        self._forward = tf.function(
            lambda x: tf.cast(model(x, training=False)["defocus"], tf.float32),
            input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)],
            jit_compile=self.xla,
        )

    @classmethod
    def from_weights(cls, path=None, precision="auto", **options):
        """Load B from a checkpoint (ours or the official .npz) in the requested precision.

        Args:
            path: checkpoint path (None = $DMENET_WEIGHTS).
            precision: "auto" (bf16 where native, else fp32), "fp32" or "bf16".
            **options: max_side, tile, margin, tile_batch, xla, streamline.

        Returns:
            DefocusPredictor; its `precision` and `precision_reason` say what was chosen.
        """
        from dmenet.inference.precision import resolve_precision
        from dmenet.weights.checkpoints import load_blur_net

        chosen, reason = resolve_precision(precision)
        model, encoding, _ = load_blur_net(path, precision=chosen)
        return cls(model, encoding, precision_reason=reason, **options)

    def tile_plan(self, height, width):
        return plan_tiles(height, width, self.tile, self.margin)

    def predict_map(self, image, progress=None, stop=None):
        """The network's raw output (H×W in [0, 1]) at the image's own resolution.

        Args:
            image: H×W×3 float32 in [0, 1].
            progress: called as progress(done, total) after each batch of windows.
            stop: called before each batch; returning True raises InferenceInterrupted.
        """
        height, width = image.shape[:2]
        plan = self.tile_plan(height, width)
        window_h, window_w = plan.window_shape
        output = np.empty((height, width), np.float32)
        windows = list(plan.windows())
        done = 0
        if progress is not None:
            progress(0, len(windows))  # the count is known now: show it before the first, slowest window
        for first in range(0, len(windows), self.tile_batch):
            if stop is not None and stop():
                raise InferenceInterrupted()
            batch = windows[first:first + self.tile_batch]
            pieces = np.stack([self._window(image, top, left, window_h, window_w) for top, left, _, _ in batch])
            maps = np.asarray(self._forward(pieces))[..., 0]
            for (top, left, (row_start, row_end), (col_start, col_end)), raw in zip(batch, maps):
                row_end, col_end = min(row_end, height), min(col_end, width)
                if row_start < row_end and col_start < col_end:
                    output[row_start:row_end, col_start:col_end] = raw[
                        row_start - top:row_end - top, col_start - left:col_end - left]
            done += len(batch)
            if progress is not None:
                progress(done, len(windows))
        return output

    @staticmethod
    def _window(image, top, left, window_h, window_w):
        """The window of the photo mirrored (symmetric mode) past its bottom/right edge to the padded size."""
        height, width = image.shape[:2]
        piece = image[top:min(top + window_h, height), left:min(left + window_w, width)]
        missing_h, missing_w = window_h - piece.shape[0], window_w - piece.shape[1]
        if missing_h or missing_w:
            piece = np.pad(piece, ((0, missing_h), (0, missing_w), (0, 0)), mode="symmetric")
        return piece.astype(np.float32, copy=False)

    def predict(self, image, progress=None, stop=None):
        """σ in pixels of the input image with its scale information (see Prediction)."""
        from skimage.transform import resize

        height, width = image.shape[:2]
        scale = 1.0
        if self.max_side and max(height, width) > self.max_side:
            scale = self.max_side / max(height, width)
            small = (max(1, round(height * scale)), max(1, round(width * scale)))
            image = resize(image, small, anti_aliasing=True, preserve_range=True).astype(np.float32)
        sigma = self.encoding.to_sigma(self.predict_map(image, progress, stop))
        if scale != 1.0:
            sigma = resize(sigma / scale, (height, width), order=1, preserve_range=True).astype(np.float32)
        limit = float(self.encoding.to_sigma(1.0)) / scale
        return Prediction(sigma, scale, limit, self.tile_plan(*image.shape[:2]).count)

    def predict_sigma(self, image, progress=None, stop=None):
        """σ in pixels of the input image, H×W float32."""
        return self.predict(image, progress, stop).sigma
