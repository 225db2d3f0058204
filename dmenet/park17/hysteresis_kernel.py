"""Compiled (numba) hysteresis of the MATLAB-style Canny: weak pixels 8-connected to a strong one.

MATLAB's ``bwselect(weak, strong_rows, strong_cols, 8)`` keeps every 8-connected component of weak
pixels that holds a strong pixel; a flood fill from each strong pixel through weak ones selects the
same pixels as labelling the components and keeping the labels the strong pixels carry.
It runs from its cached machine code (``dmenet.native_kernels``), without numba.
"""
from dmenet.native_kernels import kernel


@kernel("b1[:, ::1], b1[:, ::1], b1[:, ::1], i8[::1]")
def connected_to_strong(weak, strong, kept, stack):
    """Marks in `kept` the weak pixels whose 8-connected component of weak pixels holds a strong pixel.

    Args:
        weak: H×W bool, C-contiguous.
        strong: H×W bool, a subset of weak.
        kept: H×W bool, all False; the result.
        stack: int64 scratch of at least the number of weak pixels (the flood fill pushes each once).
            Both come from the caller: a kernel that made an array could not run without numba.
    """
    height, width = weak.shape
    for row in range(height):
        for col in range(width):
            if not strong[row, col] or kept[row, col]:
                continue
            kept[row, col] = True
            stack[0] = row * width + col
            top = 1
            while top > 0:
                top -= 1
                y, x = divmod(stack[top], width)
                for ny in range(max(y - 1, 0), min(y + 2, height)):
                    for nx in range(max(x - 1, 0), min(x + 2, width)):
                        if weak[ny, nx] and not kept[ny, nx]:
                            kept[ny, nx] = True
                            stack[top] = ny * width + nx
                            top += 1
