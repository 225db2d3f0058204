"""Separable Gaussian blur with MATLAB imfilter semantics ('same', 'conv', 'symmetric' border),
evaluated only over a requested output window, so a small layer costs little."""
import functools

import numpy as np
from scipy import ndimage

from dmenet.syndof.kernels import symmetric_index, tap_offsets, tap_reach


def source_indices(start, stop, taps_length, size):
    """Input positions (after the symmetric fold) that outputs start:stop read, in tap order: a
    slice where none of them folds past the border (the common case; a view reads it), else an
    index array."""
    low, high = tap_reach(taps_length)
    first, end = start + low, stop + high
    if first >= 0 and end <= size:
        return slice(first, end)
    return symmetric_index(np.arange(first, end), size)


def gather_block(array, rows, cols):
    """The block of `array` at the row and column positions given by `source_indices` (an
    H×W(×C) array gives a block h×w(×C)); a view where both are slices."""
    if isinstance(rows, slice) or isinstance(cols, slice):
        return array[rows, cols]
    return array[np.ix_(rows, cols)]


def blur_padded(block, taps, axes=(0, 1)):
    """'Valid' separable blur of a block already gathered with `source_indices` on both `axes`
    (rows, columns: (0, 1) for H×W(×C), (1, 2) for channel-first C×H×W)."""
    weights = np.ascontiguousarray(taps[::-1])
    origin = -(len(weights) // 2)
    # Outputs passed in uninitialised: ndimage writes every one, and would otherwise zero them first.
    out = ndimage.correlate1d(block, weights, axis=axes[0], output=np.empty_like(block), mode="constant", origin=origin)
    out = ndimage.correlate1d(out, weights, axis=axes[1], output=np.empty_like(out), mode="constant", origin=origin)
    trim = len(weights) - 1
    keep = [slice(None)] * block.ndim
    keep[axes[0]] = slice(0, block.shape[axes[0]] - trim)
    keep[axes[1]] = slice(0, block.shape[axes[1]] - trim)
    return out[tuple(keep)]


def blur_window(image, taps, rows, cols):
    """imfilter(image, taps ⊗ taps, 'same', 'conv', 'symmetric')[rows, cols] of an H×W(×C) array
    (a bool mask blurs as 0/1 floats; only the block the window reads is converted); `rows`, `cols`
    are (start, stop) pairs."""
    height, width = image.shape[:2]
    row_source = source_indices(rows[0], rows[1], len(taps), height)
    col_source = source_indices(cols[0], cols[1], len(taps), width)
    return blur_padded(np.asarray(gather_block(image, row_source, col_source), np.float64), taps)



def _reached_positions(positions, taps, size):
    """Scatter form of the symmetric-border blur along one axis: output y reads input sym(y + o_m),
    so input v reaches y = v − o_m and, near the borders, the mirror images y = −1 − v − o_m (read
    position < 0) and y = 2·size − 1 − v − o_m (read position ≥ size), where they land inside.
    Returns (input item, tap, output position) for every link: the direct links item by item (taps
    in order), then those through the low border, then those through the high border."""
    offsets = tap_offsets(len(taps))
    reach = int(np.abs(offsets).max()) + 1
    if size <= 2 * reach:
        # Tiny axis: the fold may wrap more than once; invert the gather map directly.
        source = symmetric_index(np.arange(size)[:, None] + offsets[None, :], size)
        item, out, tap = np.nonzero(positions[:, None, None] == source[None])
        return item, tap, out
    direct = positions[:, None] - offsets[None, :]
    valid = (direct >= 0) & (direct < size)
    item, tap = np.nonzero(valid)
    mirrored = _mirrored_links(positions, offsets, size)
    return tuple(np.concatenate([direct_part, extra]) for direct_part, extra in zip((item, tap, direct[item, tap]), mirrored))


def _mirrored_links(positions, offsets, size, bounds=None):
    """The links through the borders (item, tap, output position) of `_reached_positions`, for an
    axis longer than twice the kernel's reach: low border first, each item by item, taps in order.
    `bounds`: (lowest, highest) of `positions`, where the caller knows them."""
    reach_low, reach_high = tap_reach(len(offsets))
    reach = max(reach_high, -reach_low) + 1
    empty = np.zeros(0, np.int64)
    lowest, highest = bounds if bounds is not None else (positions.min(), positions.max())
    if lowest >= reach and highest < size - reach:
        return empty, empty, empty
    # Only items within reach of a border link through it.
    links = [(empty, empty, empty)]
    # (−1 − v − o ≥ 0 needs v < −min o; 2·size − 1 − v − o < size needs v ≥ size − max o.)
    low, high = -reach_low, size - reach_high
    for near_border, mirror, outside in ((positions < low, lambda near: -1 - near - offsets, lambda read: read < 0),
                                         (positions >= high, lambda near: 2 * size - 1 - near - offsets, lambda read: read >= size)):
        items = np.flatnonzero(near_border)
        if len(items):
            mirrored = mirror(positions[items][:, None])
            ok = (mirrored >= 0) & (mirrored < size) & outside(mirrored + offsets)
            sub_item, sub_tap = np.nonzero(ok)
            links.append((items[sub_item], sub_tap, mirrored[sub_item, sub_tap]))
    return tuple(np.concatenate(parts) for parts in zip(*links))


def blur_sparse_flat(rows, cols, values, taps, shape, strip=4):
    """The blur of an image that is zero except at pixels (rows, cols) holding `values` (n×C), on
    just the pixels it reaches: returns (flat pixel indices (m,), blurred values C×m); every other
    pixel of the blurred image is zero. No index repeats.

    Rows are blurred by scattering each pixel's taps (cost ∝ pixels), straight into a packed array
    that holds, side by side, the runs of columns each band of `strip` rows reaches (plus the
    kernel's reach); columns are then blurred by one correlation over that array. A sparse layer
    spread over the frame so costs about what its blurred area costs. Each output is computed from
    the same inputs in the same order as a full-frame blur, so the values are exactly its values."""
    pixel, blurred, _ = blur_sparse_packed(rows, cols, np.ascontiguousarray(np.asarray(values, np.float64).T), taps, shape, strip)
    inside = pixel < shape[0] * shape[1]
    return pixel[inside], blurred[:, inside]


def blur_sparse_packed(rows, cols, by_channel, taps, shape, strip=4):
    """`blur_sparse_flat` with the values given channel first (C×n, C-contiguous), returned in the
    blur's packed layout: (pixel (k,), blurred C×k, box) where pixel[i] is the flat index of the pixel
    that position i holds, or H·W (one past the last pixel) for positions that hold none (their
    values are to be ignored); box is (top, bottom, left, right) around the pixels held."""
    height, width = shape
    channels = by_channel.shape[0]
    length = len(taps)
    offsets = tap_offsets(length)
    reach_low, reach_high = tap_reach(length)
    row_min, row_max = int(rows.min()), int(rows.max())
    # The links of the vertical pass: a pixel at row v reaches rows v − o_t (tap t), a run of rows
    # from v − reach_high, kept as an n × len(taps) grid ("direct"); the few links through the image
    # border (and all links on a tiny axis) are listed apart ("extra") and added after the grid's.
    direct = height > 2 * (max(reach_high, -reach_low) + 1)
    if direct:
        extra_item, extra_tap, extra_row = _mirrored_links(rows, offsets, height, (row_min, row_max))
        first_row = np.maximum(rows - reach_high, 0)
        last_row = np.minimum(rows - reach_low, height - 1)
        row_start, row_stop = max(row_min - reach_high, 0), min(row_max - reach_low, height - 1) + 1
        if len(extra_row):
            row_start, row_stop = min(row_start, int(extra_row.min())), max(row_stop, int(extra_row.max()) + 1)
    else:
        extra_item, extra_tap, extra_row = _reached_positions(rows, taps, height)
        row_start, row_stop = int(extra_row.min()), int(extra_row.max()) + 1
    extra_col = cols[extra_item]
    col_min, col_max = int(cols.min()), int(cols.max())
    # Columns each band of rows reaches after the vertical pass (every tap is positive).
    n_cols = col_max - col_min + 1
    n_bands = -(-(row_stop - row_start) // strip)
    col_cell = cols - col_min
    reached = np.zeros(n_bands * n_cols, bool)
    if direct:
        first_band = (first_row - row_start) // strip
        band_span = (last_row - row_start) // strip - first_band
        slot = np.arange(int(band_span.max()) + 1)
        in_span = slot[None, :] <= band_span[:, None]
        reached[((first_band[:, None] + slot) * n_cols + col_cell[:, None])[in_span]] = True
    extra_band_row = extra_row - row_start
    reached[(extra_band_row // strip) * n_cols + (extra_col - col_min)] = True
    used_cell = np.flatnonzero(reached)
    band, used = np.divmod(used_cell, n_cols)
    used += col_min
    # Runs of reached columns. A run's outputs span [first used − reach_high, last used − reach_low
    # + 1), all the columns its pixels can reach, and its reads len(taps) − 1 more; runs closer than
    # len(taps) + 2 columns stay one run, so no run's outputs overlap another's and no run reads
    # another's columns.
    new_run = np.ones(len(used), bool)
    new_run[1:] = (band[1:] != band[:-1]) | (used[1:] - used[:-1] >= length + 2)
    run_of_used = np.cumsum(new_run) - 1
    starts = np.flatnonzero(new_run)
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:] - 1
    ends[-1] = len(used) - 1
    run_band = band[starts]
    first = np.maximum(0, used[starts] - reach_high)
    last = np.minimum(width, used[ends] - reach_low + 1)
    first_min, last_max = int(first.min()), int(last.max())
    out_length = last - first
    read_start = first + reach_low
    read_length = out_length + length - 1
    # The len(taps) − 1 reads after a run's outputs, and as many from the start of its reads, are
    # unreached columns, so zeros, unless the run was cut at the image border (they may then hold
    # reached or mirrored columns). Consecutive runs share such zeros: the next run's reads start
    # where this run's outputs end, so the correlation computes little more than the outputs.
    border_left = (used[starts] - reach_high < 0) | (read_start < 0)
    border_right = (used[ends] - reach_low + 1 > width) | (read_start + read_length > width)
    shared = np.zeros(len(read_length), np.int64)
    shared[1:] = np.where(border_right[:-1] | border_left[1:], 0, length - 1)
    # Position of each run's reads in the packed layout; run r + 1 starts `segment[r]` after run r.
    segment = read_length.copy()
    segment[:-1] -= shared[1:]
    read_offset = np.cumsum(segment) - segment
    total = int(read_offset[-1] + read_length[-1])
    # Vertical pass: one weighted bincount per channel straight into the packed layout (band row ×
    # packed column, plus one unused bin that takes the grid's links falling outside the image);
    # per output, the same additions in the same order as into a full frame.
    # Run of each (band, column) cell, with `pad` bands of margin on both sides for the grid's links
    # that fall outside the image (they are discarded, but are looked up first).
    pad = (strip + length - 2) // strip + 1
    run_of_cell = np.zeros((n_bands + 2 * pad) * n_cols, np.int64)
    run_of_cell[used_cell + pad * n_cols] = run_of_used
    column_base = read_offset - read_start  # packed position of column c in run r: column_base[r] + c
    packed_size = strip * total
    extra_cell = (extra_band_row // strip + pad) * n_cols + (extra_col - col_min)
    extra_target = (extra_band_row % strip) * total + column_base[run_of_cell[extra_cell]] + extra_col
    packed = np.empty((channels, packed_size + 1))
    if direct:
        # Tap t of a pixel lands on band row q + t (q: its tap-0 band row); with phase = q mod strip,
        # that is row (phase + t) % strip of the pixel's band slot (phase + t) // strip.
        start_band_row = rows - reach_high - row_start
        start_band = start_band_row // strip
        phase = start_band_row - start_band * strip
        slot_of_tap, row_of_tap = _tap_slots(strip, length)
        row_offset_of_tap = row_of_tap * total
        slot_cell = ((start_band + pad) * n_cols + col_cell)[:, None] + n_cols * np.arange(pad)
        slot_base = column_base[run_of_cell[slot_cell]] + cols[:, None]
        target = np.take(slot_base, slot_of_tap[phase] + (np.arange(len(rows)) * pad)[:, None])  # slot_base[i, slot_of_tap[phase[i]]]
        target += row_offset_of_tap[phase]
        edge = np.flatnonzero((rows < reach_high) | (rows - reach_low >= height)) if row_min < reach_high or row_max - reach_low >= height else ()
        if len(edge):
            out_row = rows[edge, None] - offsets[None, :]
            target[edge] = np.where((out_row < 0) | (out_row >= height), packed_size, target[edge])
        target = target.ravel()
        extra_weights = taps[extra_tap]
        weighted = by_channel[:, :, None] * taps  # channel × pixel × tap
        for channel in range(channels):
            packed[channel] = np.bincount(target, weighted[channel].ravel(), minlength=packed_size + 1)
            if len(extra_target):
                np.add.at(packed[channel], extra_target, extra_weights * by_channel[channel].take(extra_item))
    else:
        weights = taps[extra_tap]
        for channel in range(channels):
            packed[channel] = np.bincount(extra_target, weights * by_channel[channel].take(extra_item), minlength=packed_size + 1)
    packed = packed[:, :packed_size].reshape(channels, strip, total)
    # Reads beyond the image border take the mirrored column (MATLAB 'symmetric'), which lies in the
    # same run's reads or is unreached (zero).
    # (A run's reads end at its `last` + reach_high.)
    if first_min + reach_low < 0 or last_max + reach_high > width:
        left_out = np.maximum(0, -read_start)
        right_out = np.maximum(0, read_start + read_length - width)
        crossing = np.flatnonzero((left_out > 0) | (right_out > 0))
        count = left_out[crossing] + right_out[crossing]
        which, position = _concatenated_ranges(count)
        run = crossing[which]
        on_left = position < left_out[run]
        column = np.where(on_left, position, read_length[run] - count[which] + position)
        mirrored = symmetric_index(read_start[run] + column, width) - read_start[run]
        from_inside = (mirrored >= 0) & (mirrored < read_length[run])
        target_col, source_col = read_offset[run] + column, read_offset[run] + mirrored
        packed[:, :, target_col] = 0.0
        packed[:, :, target_col[from_inside]] = packed[:, :, source_col[from_inside]]
    blurred = ndimage.correlate1d(packed, np.ascontiguousarray(taps[::-1]), axis=2, output=np.empty(packed.shape), mode="constant", origin=-(length // 2))
    # The pixel each packed position stands for: the first out_length positions of each run's reads
    # are its outputs; the rest (unshared padding, rows below the image) stand for no pixel.
    run = np.repeat(np.arange(len(read_offset)), segment)
    position = np.arange(total) - read_offset[run]
    pixel = (row_start + run_band[run] * strip + np.arange(strip)[:, None]) * width + (first[run] + position)
    outside = (position >= out_length[run]) | (pixel >= height * width)
    pixel[outside] = height * width
    box = (row_start, min(height, row_start + n_bands * strip), first_min, last_max)
    return pixel.ravel(), blurred.reshape(channels, -1), box


@functools.lru_cache(maxsize=64)
def _tap_slots(strip, length):
    """For a pixel whose tap 0 lands on row `phase` of a band (phase < strip): the band slot and the
    row in it that tap t lands on, as [phase, t] tables (read-only)."""
    shifted = np.arange(strip)[:, None] + np.arange(length)[None, :]
    slots, rows = shifted // strip, shifted % strip
    slots.setflags(write=False)
    rows.setflags(write=False)
    return slots, rows


def _concatenated_ranges(lengths):
    """For ranges 0..lengths[i]-1 laid end to end: (range number, position in range) per element."""
    number = np.repeat(np.arange(len(lengths)), lengths)
    position = np.arange(number.size) - (np.cumsum(lengths) - lengths)[number]
    return number, position


def blur_sparse(rows, cols, values, taps, shape, strip=4):
    """`blur_sparse_flat` as one block: returns (row_start, col_start, block h×w×C)."""
    height, width = shape
    index, blurred = blur_sparse_flat(rows, cols, values, taps, shape, strip)
    out_rows, out_cols = np.divmod(index, width)
    top, left = int(out_rows.min()), int(out_cols.min())
    block = np.zeros((int(out_rows.max()) + 1 - top, int(out_cols.max()) + 1 - left, values.shape[1]))
    block[out_rows - top, out_cols - left] = blurred.T
    return top, left, block
