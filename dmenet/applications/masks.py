"""Binary blur masks from a defocus map: True (255 in files) = out of focus, as CUHK codes it.

Thresholds are in σ pixels, never in stored codes, so a threshold does not depend on how a map was
encoded. Three ways to choose one (APPLICATIONS.md §4): a number you pick; Otsu's split of the map's
own values (assumes two modes; guarded where there is one); or "fit": the best-accuracy threshold on
labelled maps (e.g. a method's maps of the CUHK training photos against their masks), which the
DMENet author advises when labels exist (codeslake/DMENet#18).
"""
import warnings

import numpy as np

from dmenet.applications.inputs import as_sigma, positive_number

THRESHOLD_RULES = ("otsu", "fit")
VALLEY_BINS = 64  # the histogram in which Otsu's two classes must each have a peak …
VALLEY_DEPTH = 0.5  # … with a dip between them below this fraction of the smaller peak
ONE_MODE_BLURRED_PX = 1.0  # a one-mode map whose median σ exceeds this is called blurred throughout
FIT_STEP_PX = 0.001  # "fit" pools maps on a σ grid this fine (the 16-bit σ PNGs' own step)


def labels_as_bool(labels):
    """A label mask → bool (True = blurred): bool as it is, 8/16-bit 0/255 masks above half their
    range, 0/1 arrays above ½."""
    labels = np.asarray(labels)
    if labels.ndim == 3 and labels.shape[2] in (1, 3, 4):
        labels = labels[..., 0]
    if labels.dtype == np.bool_:
        return labels
    if labels.dtype.kind not in "uif":
        raise ValueError(f"a label mask must be bool or numeric, got dtype {labels.dtype}")
    top = float(labels.max()) if labels.size else 0.0
    return labels > (top / 2.0 if top > 1 else 0.5)


def _labelled_pairs(sigma, labels):
    """`labels` as a list of (σ map, bool mask): one mask for `sigma` itself, or (σ, mask) pairs."""
    if labels is None:
        raise ValueError('threshold "fit" needs labelled data: labels=<mask of this map> or labels=[(sigma, mask), …]')
    pairs = [(sigma, labels)] if isinstance(labels, np.ndarray) else list(labels)
    if not pairs:
        raise ValueError('threshold "fit" got no labelled maps')
    checked = []
    for number, pair in enumerate(pairs):
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ValueError(f"labelled item {number} is not a (sigma, mask) pair")
        map_, mask = as_sigma(pair[0]), labels_as_bool(pair[1])
        if map_.shape != mask.shape:
            raise ValueError(f"labelled item {number}: the σ map is {map_.shape[1]}×{map_.shape[0]} but its mask {mask.shape[1]}×{mask.shape[0]}")
        checked.append((map_, mask))
    return checked


def fit_threshold(pairs):
    """The σ threshold (px) with the best pixel accuracy pooled over labelled maps.

    Args:
        pairs: iterable of (σ map in px, mask with True/255 = blurred).

    Returns:
        (threshold, accuracy): "blurred where σ > threshold" scores `accuracy` on the pooled pixels
        (maps rounded to FIT_STEP_PX; ties go to the lowest threshold).

    Examples:
        >>> threshold, accuracy = fit_threshold([(sigma_a, mask_a), (sigma_b, mask_b)])
    """
    from dmenet.evaluation.binary_metrics import ThresholdCounts

    pairs = _labelled_pairs(None, list(pairs))
    steps = [np.rint(sigma / FIT_STEP_PX) for sigma, _ in pairs]
    grid = np.arange(min(s.min() for s in steps), max(s.max() for s in steps) + 1.0)
    counts = None
    for step_map, (_, mask) in zip(steps, pairs):
        these = ThresholdCounts.from_scores(step_map, mask, thresholds=grid)
        counts = these if counts is None else counts + these
    accuracy, best = counts.best_accuracy()
    # "Blurred where steps ≥ best" on the grid is "σ > (best − ½)·step" for the rounded maps.
    return (best - 0.5) * FIT_STEP_PX if np.isfinite(best) else float(max(s.max() for s in steps)) * FIT_STEP_PX, accuracy


def otsu_threshold(sigma):
    """Otsu's threshold of the map's σ values, or None when the map has one mode: a constant map,
    or one whose histogram does not dip between the peaks of Otsu's two classes (Otsu splits any
    distribution, a single hump too; a photo almost all sharp or all blurred can still have two).

    The values are counted on a FIT_STEP_PX grid and the threshold sits midway between the last
    occupied grid value of the lower class and the first of the upper one, so "σ > threshold" is
    exactly Otsu's split (a binned Otsu that returns a bin centre cuts through its bin).
    """
    steps = np.rint(sigma / FIT_STEP_PX).astype(np.int64).ravel()
    low = int(steps.min())
    counts = np.bincount(steps - low).astype(np.float64)
    values = np.arange(len(counts), dtype=np.float64)
    below = np.cumsum(counts)[:-1]  # pixels at or below each candidate split (after grid value k)
    below_sum = np.cumsum(counts * values)[:-1]
    total, total_sum = float(counts.sum()), float((counts * values).sum())
    above = total - below
    if len(below) == 0:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_gap = (total_sum - below_sum) / above - below_sum / below
        between = np.where((below > 0) & (above > 0), below * above * mean_gap**2, -1.0)
    split = int(np.argmax(between))  # the first of a plateau: the last occupied value of the lower class
    if between[split] <= 0:
        return None
    upper = split + 1 + int(np.flatnonzero(counts[split + 1:])[0])
    threshold = (low + (split + upper) / 2.0) * FIT_STEP_PX
    return threshold if _dips_between_classes(sigma, threshold) else None


def _dips_between_classes(sigma, threshold):
    """True when the (lightly smoothed) histogram of σ falls, between the highest bin below the
    threshold and the highest above it, to VALLEY_DEPTH of the lower of the two: two modes."""
    counts, edges = np.histogram(sigma, bins=VALLEY_BINS)
    counts = np.convolve(np.pad(counts.astype(np.float64), 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")
    centres = (edges[:-1] + edges[1:]) / 2
    lower, upper = centres <= threshold, centres > threshold
    if not lower.any() or not upper.any():
        return False
    first = int(np.argmax(np.where(lower, counts, -1.0)))
    second = int(np.argmax(np.where(upper, counts, -1.0)))
    valley = counts[first : second + 1].min()
    return bool(valley <= VALLEY_DEPTH * min(counts[first], counts[second]))


def blur_mask(sigma, threshold="otsu", labels=None, *, one_mode_threshold=ONE_MODE_BLURRED_PX):
    """Binary blur mask of a defocus map: True where the photo is out of focus.

    Args:
        sigma: H×W defocus map, Gaussian σ in pixels.
        threshold: a number (σ px: blurred where σ > it); "otsu" (Otsu's split of this map; a map with
            one mode, e.g. a photo almost all sharp, is called all sharp or all blurred by its median σ
            against `one_mode_threshold`, with a warning); or "fit" (the best-accuracy threshold on
            `labels`).
        labels: for "fit": a mask array of this map (True/255 = blurred), or a list of (σ map, mask) pairs
            to fit on (e.g. a method's maps of the CUHK training photos), applied to `sigma`.
        one_mode_threshold: σ (px) above which a one-mode map's median makes it all blurred (default
            1 px; Park'17's maps, which never exceed 2 px, read lower: see docs/applications.md).

    Returns:
        (mask, threshold): H×W bool, True = blurred; and the threshold used, in σ px (mask = σ > it).

    Examples:
        >>> mask, used = dmenet.blur_mask(sigma, "otsu")
        >>> mask, used = dmenet.blur_mask(sigma, "fit", labels=[(train_sigma, train_mask)])
    """
    sigma = as_sigma(sigma)
    if isinstance(threshold, str):
        rule = threshold.strip().lower()
        if rule == "otsu":
            used = otsu_threshold(sigma)
            if used is None:
                median = float(np.median(sigma))
                blurred = median > positive_number(one_mode_threshold, "one_mode_threshold (σ px)", inclusive=True)
                used = float(np.nextafter(sigma.min(), -np.inf)) if blurred else float(sigma.max())
                warnings.warn(f"Otsu: the σ map has one mode (σ {sigma.min():.2f}–{sigma.max():.2f} px, median {median:.2f}): "
                              f"calling it all {'blurred' if blurred else 'sharp'}; pass a threshold in px to split it anyway", stacklevel=2)
            return sigma > used, used
        if rule == "fit":
            used, _ = fit_threshold(_labelled_pairs(sigma, labels))
            return sigma > used, used
        try:
            threshold = float(rule)
        except ValueError:
            raise ValueError(f"unknown threshold {threshold!r}; expected a σ in pixels, 'otsu' or 'fit'") from None
    used = positive_number(threshold, "the mask threshold (σ px)", inclusive=True)
    return sigma > used, used
