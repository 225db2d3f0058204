"""Loading numba's cached kernels without first initialising its whole compiler.

Before numba loads a kernel from its on-disk cache it refreshes the target context: it imports the
lowering of everything numba can compile (NumPy's linear algebra, random generators, typed
containers, …), although running an already compiled kernel needs only numba's runtime (NRT). That
refresh is about 0.25 s of GIL-bound imports, a fifth of a small photo's whole Zhuo & Sim run.

Inside ``cached_loads_without_refresh()`` a cached kernel is loaded after initialising only the
runtime. A kernel missing from the cache is compiled as usual: numba's compiler refreshes the context
itself before compiling (``CompilerBase.__init__``), so nothing is ever compiled without it.
"""
import contextlib
import threading

_lock = threading.Lock()
_active = 0
_original_load = None


def _load_after_runtime_only(cache, signature, target_context):
    """numba's ``Cache.load_overload`` without its ``target_context.refresh()``: the NRT is initialised instead."""
    from numba.core.runtime import rtsys

    rtsys.initialize(target_context)
    with cache._guard_against_spurious_io_errors():
        return cache._load_overload(signature, target_context)


def _numba_cache_class():
    """numba's on-disk cache class when it has the parts this module relies on, else None (another numba version)."""
    try:
        from numba.core import caching
        from numba.core.runtime import rtsys
    except ImportError:
        return None
    needed = ("load_overload", "_load_overload", "_guard_against_spurious_io_errors")
    if not all(hasattr(caching.Cache, name) for name in needed) or not hasattr(rtsys, "initialize"):
        return None
    return caching.Cache


@contextlib.contextmanager
def cached_loads_without_refresh():
    """Within the block, numba loads cached kernels without refreshing its compiler's context (any thread).

    Yields:
        Whether the faster load is in effect (False with a numba that lacks the parts it relies on).

    Example:
        >>> with cached_loads_without_refresh():
        ...     result = compiled_kernel(values)  # its first call loads it from the cache
    """
    global _active, _original_load
    cache_class = _numba_cache_class()
    if cache_class is None:
        yield False
        return
    with _lock:
        if _active == 0:
            _original_load = cache_class.load_overload
            cache_class.load_overload = _load_after_runtime_only
        _active += 1
    try:
        yield True
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                cache_class.load_overload = _original_load
