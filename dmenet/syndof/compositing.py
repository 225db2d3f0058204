"""Back-to-front compositing of blurred depth layers with SYNDOF's occlusion fill.

Each layer contributes its blurred premultiplied colour and blurred coverage (alpha). Before drawing
a layer nearer than the first sharp one, the accumulated image is renormalised and the band where
the layer's kernel reaches past everything drawn so far is filled by Laplace interpolation
(`regionfill`), so blurred foreground edges do not pick up black.
"""
import numpy as np

from dmenet.syndof import blas_threads
from dmenet.syndof.blur import blur_padded, blur_sparse_packed, blur_window, gather_block, source_indices
from dmenet.syndof.kernels import separable_gaussian, tap_reach
from dmenet.syndof.regionfill import regionfill, solve_laplace

ALPHA_CUTOFF = 1e-4  # blurred coverage below this is dropped
BAND_CUTOFF = 1e-3  # blurred farther-coverage below this does not count as reached


def composite_reference(image, stack, max_coc):
    """Straightforward full-frame version (one layer at a time); the readable specification."""
    height, width = image.shape[:2]
    merged = np.zeros((height, width, 3))
    coverage = np.zeros((height, width))
    farther = np.zeros((height, width), bool)
    first_sharp = stack.first_sharp_layer
    full = ((0, height), (0, width))
    for index, coc in enumerate(stack.cocs):
        mask = stack.index_map == index
        layer = np.concatenate([mask[..., None], image * mask[..., None]], axis=2)
        taps = separable_gaussian(float(coc), max_coc) if coc > 1 else None
        if taps is not None:
            layer = blur_window(layer, taps, *full)
        alpha = layer[..., 0]
        alpha[alpha < ALPHA_CUTOFF] = 0
        if index > first_sharp:
            merged, coverage = fill_occlusion(merged, coverage, farther, taps)
        merged = (1 - alpha[..., None]) * merged + layer[..., 1:]
        coverage = (1 - alpha) * coverage + alpha
        farther |= mask
    return merged / coverage[..., None]


def fill_occlusion(merged, coverage, farther, taps):
    """Renormalise the accumulator and Laplace-fill the band the next kernel reaches beyond `farther`."""
    divisor = np.where(coverage == 0, 1.0, coverage)
    merged = merged / divisor[..., None]
    coverage = coverage / divisor
    if taps is None:
        return merged, coverage
    height, width = farther.shape
    reach = blur_window(farther.astype(np.float64), taps, (0, height), (0, width))
    band = (reach >= BAND_CUTOFF) & ~farther
    if band.any():
        colour = np.where(farther[..., None], merged, 0.0)
        stacked = np.concatenate([colour, farther[..., None].astype(np.float64)], axis=2)
        filled = regionfill(stacked, band)
        merged[band] = filled[band][:, :3]
        coverage[band] = filled[band][:, 3]
    return merged, coverage


def composite(image, stack, max_coc, progress=None):
    """The same result as `composite_reference`, touching only where each layer's kernel reaches:
    one layer in memory at a time, sparse blurs, fills restricted to the band's bounding box."""
    image = np.ascontiguousarray(image, np.float64)
    height, width = image.shape[:2]
    shape = (height, width)
    # One channel-first accumulator [coverage, premultiplied RGB], so a layer is drawn with two
    # in-place operations and the blurs' column passes run along contiguous rows. Flat, it has one
    # spare pixel at the end that takes a sparse blur's positions that hold no pixel.
    flat_accumulator = np.zeros((4, height * width + 1))
    accumulator = flat_accumulator[:, : height * width].reshape(4, height, width)
    coverage, merged = accumulator[0], accumulator[1:]
    farther = np.zeros((height, width), bool)
    first_sharp = stack.first_sharp_layer
    flat_image = image.reshape(-1, 3)
    image_by_channel = np.ascontiguousarray(flat_image.T)
    nearer_rows, nearer_cols = _row_col_extents(stack.index_map, stack.count)
    # Renormalising only changes pixels whose coverage is neither 0 nor 1: those touched by a blurred
    # layer or filled since the last renormalisation. Their bounding box is tracked here.
    dirty = _Box.full(shape)
    with blas_threads.limited():  # once for all the fill's solves rather than around each
        for index, pixels in enumerate(stack.pixel_groups()):
            coc = float(stack.cocs[index])
            taps = separable_gaussian(coc, max_coc) if coc > 1 else None
            rows, cols = np.divmod(pixels, width)
            if index > first_sharp:
                window = (nearer_rows[index], nearer_cols[index])
                dirty = _fill_occlusion_window(merged, coverage, farther, taps, window, dirty)
            if taps is None:
                merged[:, rows, cols] = flat_image[pixels].T
                coverage[rows, cols] = 1.0
            elif len(pixels):
                box = _draw_blurred_layer(flat_accumulator, accumulator, image, image_by_channel, stack.index_map, index, rows, cols, pixels, taps)
                dirty = dirty.union(*box)
            farther[rows, cols] = True
            if progress is not None:
                progress(index + 1, stack.count)
    return np.moveaxis(merged / coverage, 0, -1)


DENSE_LAYER = 0.15  # above this fill of its bounding box, a layer is blurred as a dense window


def _draw_blurred_layer(flat_accumulator, accumulator, image, image_by_channel, index_map, index, rows, cols, pixels, taps):
    """Composite one blurred layer over the channel-first accumulator [coverage, premultiplied RGB]
    in place: a scatter blur on just the reached pixels for sparse layers, a windowed separable blur
    for compact ones (the cheaper of the two). Returns the box it touched (top, bottom, left, right)."""
    _, height, width = accumulator.shape
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    if len(pixels) < DENSE_LAYER * (r1 - r0) * (c1 - c0):
        values = np.empty((4, len(pixels)))
        values[0] = 1.0
        np.take(image_by_channel, pixels, axis=1, out=values[1:])
        # Drawn in the blur's packed layout: its positions that hold no pixel land on the spare one.
        pixel, layer, box = blur_sparse_packed(rows, cols, values, taps, (height, width))
        alpha = layer[0]
        alpha[alpha < ALPHA_CUTOFF] = 0
        drawn = np.take(flat_accumulator, pixel, axis=1)  # faster than flat_accumulator[:, pixel]
        drawn *= 1 - alpha
        drawn += layer
        for channel in range(4):
            flat_accumulator[channel][pixel] = drawn[channel]  # a 1-D view stores faster than [channel, pixel]
        return box
    # Outputs the layer's pixels reach (input offsets run from reach_low to reach_high); beyond them
    # the blur is zero, also through the mirrored border, and drawing it would change nothing.
    reach_low, reach_high = tap_reach(len(taps))
    out_rows = (max(0, r0 - reach_high), min(height, r1 - reach_low))
    out_cols = (max(0, c0 - reach_high), min(width, c1 - reach_low))
    row_source = source_indices(*out_rows, len(taps), height)
    col_source = source_indices(*out_cols, len(taps), width)
    mask = gather_block(index_map, row_source, col_source) == index
    block = np.empty((4,) + mask.shape)
    block[0] = mask
    block[1:] = np.moveaxis(gather_block(image, row_source, col_source), -1, 0) * mask
    layer = blur_padded(block, taps, axes=(1, 2))
    alpha = layer[0]
    alpha[alpha < ALPHA_CUTOFF] = 0
    drawn = accumulator[:, out_rows[0] : out_rows[1], out_cols[0] : out_cols[1]]
    drawn *= 1 - alpha
    drawn += layer
    return out_rows[0], out_rows[1], out_cols[0], out_cols[1]


def _row_col_extents(index_map, count):
    """For each layer index i, the bounding box (rows, cols) of all pixels in layers ≥ i."""
    return _extents(index_map.max(axis=1), count), _extents(index_map.max(axis=0), count)


def _extents(max_layer, count):
    """For each i < count: (first, last + 1) of the positions whose max_layer ≥ i, or (0, 0)."""
    position = np.arange(len(max_layer))
    levels = np.clip(max_layer, -1, count - 1) + 1  # shifted so that layer −1 (none) is level 0
    first = np.full(count + 1, len(max_layer))
    last = np.full(count + 1, -1)
    np.minimum.at(first, levels, position)
    np.maximum.at(last, levels, position)
    # Positions with max_layer ≥ i are those at levels ≥ i + 1: running min/max from the top level.
    first = np.minimum.accumulate(first[::-1])[::-1][1:]
    last = np.maximum.accumulate(last[::-1])[::-1][1:]
    return [(int(start), int(end) + 1) if end >= 0 else (0, 0) for start, end in zip(first, last)]


class _Box:
    """A row/column bounding box (empty when start ≥ stop)."""

    def __init__(self, r0, r1, c0, c1):
        self.r0, self.r1, self.c0, self.c1 = r0, r1, c0, c1

    @classmethod
    def full(cls, shape):
        return cls(0, shape[0], 0, shape[1])

    @classmethod
    def empty(cls):
        return cls(0, 0, 0, 0)

    @property
    def is_empty(self):
        return self.r0 >= self.r1 or self.c0 >= self.c1

    def union(self, r0, r1, c0, c1):
        if self.is_empty:
            return _Box(r0, r1, c0, c1)
        return _Box(min(self.r0, r0), max(self.r1, r1), min(self.c0, c0), max(self.c1, c1))

    @property
    def slices(self):
        return slice(self.r0, self.r1), slice(self.c0, self.c1)


def _fill_occlusion_window(merged, coverage, farther, taps, window, dirty):
    """In place: renormalise the accumulator (within the `dirty` box, outside it coverage is 0 or 1
    already), then Laplace-fill the band the kernel reaches beyond `farther`. The band lies among the
    not-yet-drawn pixels, whose bounding box is `window`. Returns the new dirty box (the band's)."""
    if not dirty.is_empty:
        view = dirty.slices
        divisor = coverage[view].copy()
        divisor[divisor == 0] = 1.0
        merged[(slice(None),) + view] /= divisor
        coverage[view] /= divisor
    (row_start, row_stop), (col_start, col_stop) = window
    if taps is None or row_stop <= row_start:
        return _Box.empty()
    reach = blur_window(farther, taps, (row_start, row_stop), (col_start, col_stop))
    view = (slice(row_start, row_stop), slice(col_start, col_stop))
    band_rows, band_cols = np.nonzero((reach >= BAND_CUTOFF) & ~farther[view])
    if len(band_rows) == 0:
        return _Box.empty()
    band_rows += row_start
    band_cols += col_start
    # Known values around the band: the renormalised colour where drawn (farther), 0 elsewhere;
    # coverage 1 where drawn, 0 elsewhere. Only the band's 1-pixel surround is read.

    def known(rows, cols):
        drawn = farther[rows, cols]
        values = np.zeros((len(rows), 4))
        values[:, :3] = np.where(drawn[:, None], merged[:, rows, cols].T, 0.0)
        values[:, 3] = drawn
        return values

    solution = solve_laplace(known, band_rows, band_cols, image_shape=farther.shape)
    merged[:, band_rows, band_cols] = solution[:, :3].T
    coverage[band_rows, band_cols] = solution[:, 3]
    return _Box(int(band_rows.min()), int(band_rows.max()) + 1, int(band_cols.min()), int(band_cols.max()) + 1)
