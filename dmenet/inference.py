"""Defocus maps for photos of any size with bounded memory.

B is fully convolutional, so a large photo is cut into overlapping tiles whose predictions are
blended with feathered weights; each tile is padded symmetrically to a multiple of 16. Optionally
the photo is first shrunk to `max_side`; σ is then rescaled to the original pixel grid, because a
blur of σ pixels at scale s is a blur of σ/s pixels at full size.
"""
import math

import numpy as np

from dmenet.networks.blur_net import SIZE_MULTIPLE

MIN_SIDE = 32
DEFAULT_TILE = 1024
DEFAULT_OVERLAP = 128


class ImageTooSmallError(ValueError):
    pass


def _tile_starts(length, tile, overlap):
    """Start offsets covering [0, length) with tiles of `tile` overlapping by at least `overlap`."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (count - 1)
    return [round(i * step) for i in range(count)]


def _feather(length, overlap, at_start, at_end):
    """1-D blending weights: a linear ramp over the overlap on sides that touch another tile."""
    weights = np.ones(length, np.float32)
    ramp = np.linspace(0.0, 1.0, overlap + 2, dtype=np.float32)[1:-1]
    if overlap and not at_start:
        weights[:overlap] = ramp
    if overlap and not at_end:
        weights[-overlap:] = ramp[::-1]
    return weights


class DefocusPredictor:
    """B plus its encoding: photo (H×W×3 float in [0, 1]) → σ map in pixels."""

    def __init__(self, model, encoding, max_side=None, tile=DEFAULT_TILE, overlap=DEFAULT_OVERLAP):
        import tensorflow as tf

        if tile % SIZE_MULTIPLE or tile < 2 * overlap + SIZE_MULTIPLE:
            raise ValueError(f"tile must be a multiple of {SIZE_MULTIPLE} and larger than twice the overlap")
        self.model, self.encoding = model, encoding
        self.max_side, self.tile, self.overlap = max_side, tile, overlap
        self._forward = tf.function(
            lambda x: model(x, training=False)["defocus"],
            input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)],
        )

    @classmethod
    def from_weights(cls, path=None, **options):
        from dmenet.checkpoints import load_blur_net

        model, encoding, _ = load_blur_net(path)
        return cls(model, encoding, **options)

    def _predict_padded(self, image):
        """Raw map for an image no larger than a tile; padded symmetrically to a multiple of 16."""
        height, width = image.shape[:2]
        pad_h, pad_w = -height % SIZE_MULTIPLE, -width % SIZE_MULTIPLE
        padded = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")
        output = self._forward(padded[None].astype(np.float32))
        return np.asarray(output)[0, :height, :width, 0]

    def predict_map(self, image):
        """The network's raw output (H×W in [0, 1]) at the image's own resolution, tiled if large."""
        height, width = image.shape[:2]
        if min(height, width) < MIN_SIDE:
            raise ImageTooSmallError(f"image is {width}×{height}; B needs at least {MIN_SIDE} pixels on each side")
        if height <= self.tile and width <= self.tile:
            return self._predict_padded(image)
        total = np.zeros((height, width), np.float32)
        weight = np.zeros((height, width), np.float32)
        rows, cols = _tile_starts(height, self.tile, self.overlap), _tile_starts(width, self.tile, self.overlap)
        for top in rows:
            for left in cols:
                bottom, right = min(top + self.tile, height), min(left + self.tile, width)
                piece = self._predict_padded(image[top:bottom, left:right])
                w = np.outer(
                    _feather(bottom - top, self.overlap, top == 0, bottom == height),
                    _feather(right - left, self.overlap, left == 0, right == width),
                )
                total[top:bottom, left:right] += piece * w
                weight[top:bottom, left:right] += w
        return total / weight

    def predict_sigma(self, image):
        """σ in pixels of the input image, H×W float32."""
        from skimage.transform import resize

        height, width = image.shape[:2]
        scale = 1.0
        if self.max_side and max(height, width) > self.max_side:
            scale = self.max_side / max(height, width)
            small = (max(MIN_SIDE, round(height * scale)), max(MIN_SIDE, round(width * scale)))
            image = resize(image, small, anti_aliasing=True, preserve_range=True).astype(np.float32)
        sigma = self.encoding.to_sigma(self.predict_map(image))
        if scale != 1.0:
            sigma = resize(sigma / scale, (height, width), order=1, preserve_range=True).astype(np.float32)
        return sigma
