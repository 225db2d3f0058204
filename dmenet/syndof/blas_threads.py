"""Keep OpenBLAS single-threaded around the many tiny LAPACK calls of the occlusion fill.

A banded Cholesky of a few thousand unknowns takes ~2 ms on one thread, but can take hundreds of ms
when OpenBLAS wakes its thread pool on a busy machine. Without threadpoolctl (not a dependency), the
OpenBLAS copies loaded in this process are found in /proc/self/maps and limited through their
`*_set_num_threads` entry points. Where that is impossible, `limited()` yields False and the caller
uses a solver that does not depend on BLAS threading.
"""
import contextlib
import ctypes
import functools

_PREFIXES = ("scipy_openblas_", "openblas_", "")
_SUFFIXES = ("64_", "")


@functools.lru_cache(maxsize=1)
def _controls():
    """(getter, setter) pairs for every OpenBLAS library loaded in this process."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and ".so" in line})
    except OSError:
        return ()
    controls = []
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _PREFIXES:
            for suffix in _SUFFIXES:
                getter = getattr(library, f"{prefix}get_num_threads{suffix}", None)
                setter = getattr(library, f"{prefix}set_num_threads{suffix}", None)
                if getter is not None and setter is not None:
                    getter.restype = ctypes.c_int
                    setter.argtypes = [ctypes.c_int]
                    controls.append((getter, setter))
                    break
            else:
                continue
            break
    return tuple(controls)


@contextlib.contextmanager
def limited():
    """Run the block with OpenBLAS on one thread; yields whether that could be ensured."""
    controls = _controls()
    if not controls:
        yield False
        return
    saved = [getter() for getter, _ in controls]
    for _, setter in controls:
        setter(1)
    try:
        yield True
    finally:
        for (_, setter), count in zip(controls, saved):
            setter(count)
