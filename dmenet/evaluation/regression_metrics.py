"""Defocus-regression metrics: per-image MSE/MAE of σ maps after the protocol's conversion.

RTF (DESIGN §7): its ground truth is the radius of a disk PSF; the benchmark maps it to the Gaussian
σ that best matches each radius (a fixed 23-entry table), clips predicted σ to the table's maximum
and divides both by it. SYNDOF compares σ / σ_max maps.
"""
import numpy as np

RTF_DISK_RADII = np.arange(0.5, 6.0 + 1e-9, 0.25)
RTF_GAUSSIAN_SIGMAS = np.array([
    0.3, 0.5, 0.65, 0.775, 0.875, 0.975, 1.125, 1.275, 1.375, 1.525, 1.65, 1.8,
    1.925, 2.05, 2.2, 2.325, 2.45, 2.6, 2.725, 2.875, 3.0, 3.15, 3.275,
])
RTF_SIGMA_MAX = float(RTF_GAUSSIAN_SIGMAS[-1])  # 3.275: clip and normalisation constant


def rtf_radius_to_sigma(radius):
    """Disk radius → Gaussian σ by nearest table radius; a radius exactly halfway takes the smaller
    entry (as MATLAB's min() returns the first index)."""
    radius = np.asarray(radius, np.float64)
    if not np.all(np.isfinite(radius)):
        raise ValueError("RTF ground truth contains NaN or infinite values")
    midpoints = (RTF_DISK_RADII[:-1] + RTF_DISK_RADII[1:]) / 2
    return RTF_GAUSSIAN_SIGMAS[np.searchsorted(midpoints, radius, side="left")]


def crop_to_common(prediction, truth):
    """Both maps cut to their common top-left region (the RTF protocol: some methods drop borders)."""
    height = min(prediction.shape[0], truth.shape[0])
    width = min(prediction.shape[1], truth.shape[1])
    return prediction[:height, :width], truth[:height, :width]


def squared_and_absolute_error(prediction, truth):
    """(MSE, MAE) of two equally shaped maps."""
    prediction = np.asarray(prediction, np.float64)
    truth = np.asarray(truth, np.float64)
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction {prediction.shape} and ground truth {truth.shape} differ in shape")
    if prediction.size == 0:
        raise ValueError("empty map")
    if not (np.all(np.isfinite(prediction)) and np.all(np.isfinite(truth))):
        raise ValueError("map contains NaN or infinite values")
    difference = prediction - truth
    return float(np.mean(difference**2)), float(np.mean(np.abs(difference)))


def rtf_errors(sigma_prediction, radius_truth):
    """RTF protocol for one image: (MSE, MAE) on maps normalised by 3.275, top-left common crop."""
    prediction, truth = crop_to_common(np.asarray(sigma_prediction, np.float64), np.asarray(radius_truth))
    prediction = np.clip(prediction, 0.0, RTF_SIGMA_MAX) / RTF_SIGMA_MAX
    truth = rtf_radius_to_sigma(truth) / RTF_SIGMA_MAX
    return squared_and_absolute_error(prediction, truth)


def normalized_errors(sigma_prediction, sigma_truth, sigma_max):
    """SYNDOF protocol for one image: (MSE, MAE) of σ/σ_max maps, prediction clipped to [0, 1]."""
    prediction = np.clip(np.asarray(sigma_prediction, np.float64) / sigma_max, 0.0, 1.0)
    truth = np.asarray(sigma_truth, np.float64) / sigma_max
    return squared_and_absolute_error(prediction, truth)
