"""Keep BLAS single-threaded around the many tiny LAPACK calls of the occlusion fill.

A banded Cholesky of a few thousand unknowns takes ~2 ms on one thread, but can take hundreds of ms
when OpenBLAS wakes its thread pool on a busy machine. threadpoolctl finds the BLAS libraries this
process loaded and limits them; the controller is built once, because scanning the loaded libraries
on every call would cost more than the solves. Where no BLAS can be controlled, `limited()` yields
False and the caller uses a solver that does not depend on BLAS threading.
"""
import contextlib
import functools
import sys
import threading


@functools.lru_cache(maxsize=2)
def _blas(scipy_loaded):
    """The BLAS libraries loaded now; scanned again once SciPy's own BLAS (loaded by scipy.linalg) is there."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


_state = threading.local()


@contextlib.contextmanager
def limited():
    """Run the block with BLAS on one thread; yields whether that could be ensured. Nested uses
    inside an outer `limited()` (say, every solve of one composite) cost nothing."""
    outer = getattr(_state, "limited", None)
    if outer is not None:
        yield outer
        return
    blas = _blas("scipy.linalg" in sys.modules)
    if not blas.lib_controllers:
        yield False
        return
    with blas.limit(limits=1):
        _state.limited = True
        try:
            yield True
        finally:
            _state.limited = None
