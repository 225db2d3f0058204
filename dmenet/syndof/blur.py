"""Separable Gaussian blur with MATLAB imfilter semantics ('same', 'conv', 'symmetric' border),
evaluated only over a requested output window, so a small layer costs little."""
import numpy as np
from scipy import ndimage

from dmenet.syndof.kernels import symmetric_index, tap_offsets


def source_indices(start, stop, taps_length, size):
    """Input positions (after the symmetric fold) that outputs start:stop read, in tap order."""
    offsets = tap_offsets(taps_length)
    return symmetric_index(np.arange(start + int(offsets.min()), stop + int(offsets.max())), size)


def blur_padded(block, taps):
    """'Valid' separable blur of a block already gathered with `source_indices` on both axes."""
    weights = np.ascontiguousarray(taps[::-1])
    origin = -(len(weights) // 2)
    out = ndimage.correlate1d(block, weights, axis=0, mode="constant", origin=origin)
    out = ndimage.correlate1d(out, weights, axis=1, mode="constant", origin=origin)
    trim = len(weights) - 1
    return out[: block.shape[0] - trim, : block.shape[1] - trim]


def blur_window(image, taps, rows, cols):
    """imfilter(image, taps ⊗ taps, 'same', 'conv', 'symmetric')[rows, cols] of an H×W(×C) array;
    `rows`, `cols` are (start, stop) pairs."""
    height, width = image.shape[:2]
    row_source = source_indices(rows[0], rows[1], len(taps), height)
    col_source = source_indices(cols[0], cols[1], len(taps), width)
    return blur_padded(image[np.ix_(row_source, col_source)], taps)



def _reached_positions(positions, taps, size):
    """Scatter form of the symmetric-border blur along one axis: output y reads input sym(y + o_m),
    so input v reaches y = v − o_m and, near the borders, the mirror images y = −1 − v − o_m (read
    position < 0) and y = 2·size − 1 − v − o_m (read position ≥ size), where they land inside.
    Returns (input item, tap, output position) for every link."""
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
    items, taps_used, reached = [item], [tap], [direct[item, tap]]
    near_border = np.flatnonzero((positions < reach) | (positions >= size - reach))
    if len(near_border):
        near = positions[near_border][:, None]
        for mirrored, outside in ((-1 - near - offsets, lambda read: read < 0), (2 * size - 1 - near - offsets, lambda read: read >= size)):
            ok = (mirrored >= 0) & (mirrored < size) & outside(mirrored + offsets)
            sub_item, sub_tap = np.nonzero(ok)
            items.append(near_border[sub_item])
            taps_used.append(sub_tap)
            reached.append(mirrored[sub_item, sub_tap])
    return np.concatenate(items), np.concatenate(taps_used), np.concatenate(reached)


def blur_sparse_strips(rows, cols, values, taps, shape, strip=16):
    """The blur of an image that is zero except at pixels (rows, cols) holding `values` (n×C), as
    nonzero pieces: yields (row_start, col_start, block) for consecutive strips of `strip` output
    rows; everything outside the yielded blocks is zero.

    Rows are blurred by scattering each pixel's taps (cost ∝ pixels), columns by a correlation over
    just the columns each strip reaches, so a sparse layer spread over the frame stays cheap."""
    height, width = shape
    channels = values.shape[1]
    item, tap, out_row = _reached_positions(rows, taps, height)
    row_start, row_stop = int(out_row.min()), int(out_row.max()) + 1
    col_min, col_max = int(cols.min()), int(cols.max())
    offsets = tap_offsets(len(taps))
    reach_low, reach_high = int(offsets.min()), int(offsets.max())
    # Vertical pass, one weighted bincount per channel, into rows × (layer columns + zero margins
    # wide enough that every interior strip reads a plain slice).
    margin = 2 * max(-reach_low, reach_high) + 2
    base = col_min - margin
    n_cols = col_max - col_min + 1 + 2 * margin
    n_rows = row_stop - row_start
    flat = (out_row - row_start) * n_cols + (cols[item] - base)
    weights = taps[tap]
    vertical = np.empty((n_rows, n_cols, channels))
    for channel in range(channels):
        vertical[..., channel] = np.bincount(flat, weights * values[item, channel], minlength=n_rows * n_cols).reshape(
            n_rows, n_cols
        )
    weights_1d = np.ascontiguousarray(taps[::-1])
    origin = -(len(taps) // 2)
    # Columns each strip reaches: all taps are positive, so coverage > 0 exactly where reached.
    n_strips = -(-n_rows // strip)
    reached = np.zeros((n_strips * strip, n_cols), bool)
    reached[:n_rows] = vertical[..., 0] > 0
    used_columns = reached.reshape(n_strips, strip, n_cols).any(axis=1)
    used_any = used_columns.any(axis=1)
    used_first_all = used_columns.argmax(axis=1) + base
    used_last_all = n_cols - 1 - used_columns[:, ::-1].argmax(axis=1) + base
    for strip_index, top in enumerate(range(0, n_rows, strip)):
        if not used_any[strip_index]:
            continue
        first = max(0, int(used_first_all[strip_index]) - reach_high - 1)
        last = min(width, int(used_last_all[strip_index]) + 1 - reach_low + 1)
        read_start, read_stop = first + reach_low, last + reach_high
        if read_start >= 0 and read_stop <= width:
            gathered = vertical[top : top + strip, read_start - base : read_stop - base]
        else:  # the symmetric fold at the image border; columns beyond the margins are zero
            source = np.clip(symmetric_index(np.arange(read_start, read_stop), width) - base, 0, n_cols - 1)
            gathered = vertical[top : top + strip][:, source]
        result = ndimage.correlate1d(gathered, weights_1d, axis=1, mode="constant", origin=origin)
        yield row_start + top, first, result[:, : last - first]


def blur_sparse(rows, cols, values, taps, shape, strip=16):
    """`blur_sparse_strips` assembled into one block: returns (row_start, col_start, block)."""
    pieces = list(blur_sparse_strips(rows, cols, values, taps, shape, strip))
    top = min(p[0] for p in pieces)
    left = min(p[1] for p in pieces)
    bottom = max(p[0] + p[2].shape[0] for p in pieces)
    right = max(p[1] + p[2].shape[1] for p in pieces)
    block = np.zeros((bottom - top, right - left, values.shape[1]))
    for row, col, piece in pieces:
        block[row - top : row - top + piece.shape[0], col - left : col - left + piece.shape[1]] = piece
    return top, left, block
