"""Sparse defocus and confidence maps at the classified edge pixels (PARK17.md §7).

Every patch centre gets the Gaussian σ of its class and the classifier's confidence; all other
pixels stay 0. The official code also adds random seed points with confidence 1/11, but its
threshold makes that branch dead (no seed is ever added), so none are added here.
"""
import numpy as np

from dmenet.park17.errors import Park17Error
from dmenet.park17.params import SIGMA_CLASSES


def sparse_maps(shape, positions, labels, confidence):
    """σ and confidence of every classified patch, scattered onto the image grid.

    Args:
        shape: (H, W) of the image.
        positions: N×2 integer (row, col) of the patch centres, 0-based.
        labels: N class indices 0…10 (σ = SIGMA_CLASSES[label]).
        confidence: N probabilities of the chosen class.

    Returns:
        (sps, prb): sps is H×W float64 holding σ at the positions and 0 elsewhere; prb is H×W float32
        holding the confidence at the positions and 0 elsewhere.

    Example:
        >>> sps, prb = sparse_maps((4, 5), np.array([[1, 2]]), np.array([3]), np.array([0.9]))
        >>> float(sps[1, 2]), float(prb[1, 2])
        (0.95, 0.8999999761581421)
    """
    height, width = (int(n) for n in shape[:2])
    positions = np.asarray(positions)
    labels = np.asarray(labels)
    confidence = np.asarray(confidence)
    if positions.ndim != 2 or positions.shape[1] != 2:
        raise Park17Error(f"sparse_maps: positions must be N×2 (row, col), got shape {positions.shape}")
    count = positions.shape[0]
    if labels.shape != (count,) or confidence.shape != (count,):
        raise Park17Error(
            f"sparse_maps: need one label and one confidence per position ({count}), "
            f"got {labels.shape} and {confidence.shape}")
    rows, cols = positions[:, 0].astype(np.int64), positions[:, 1].astype(np.int64)
    if count and (rows.min() < 0 or cols.min() < 0 or rows.max() >= height or cols.max() >= width):
        raise Park17Error(f"sparse_maps: a position lies outside the {height}×{width} image")
    if count and (labels.min() < 0 or labels.max() >= len(SIGMA_CLASSES)):
        raise Park17Error(f"sparse_maps: labels must be 0…{len(SIGMA_CLASSES) - 1}")
    sps = np.zeros((height, width), np.float64)
    prb = np.zeros((height, width), np.float32)
    sps[rows, cols] = SIGMA_CLASSES[labels.astype(np.int64)]
    prb[rows, cols] = confidence
    return sps, prb
