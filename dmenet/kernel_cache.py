"""Loading numba's cached kernels without first initialising its whole compiler.

Before numba loads a kernel from its on-disk cache it refreshes the target context: it imports the
lowering of everything numba can compile (NumPy's linear algebra, random generators, typed
containers, …), although running an already compiled kernel needs only numba's runtime (NRT). That
refresh is about 0.25 s of GIL-bound imports, a fifth of a small photo's whole Zhuo & Sim run.

Inside ``cached_loads_without_refresh()`` a cached kernel is loaded after initialising only the
runtime. A kernel missing from the cache is compiled as usual: numba's compiler refreshes the context
itself before compiling (``CompilerBase.__init__``), so nothing is ever compiled without it.

A fresh install has no cache yet: its first run compiles every kernel (10–20 s of one core), and
``announce_compilation`` lets a command say so instead of leaving its progress line still.
"""
import contextlib
import threading

_lock = threading.Lock()
_active = 0
_original_load = None

COMPILING_NOTE = ("compiling the numerical kernels for this machine, once (10–20 s; later runs load them from "
                  "numba's cache in well under a second)")


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


class CompilationWatch:
    """What ``announce_compilation`` saw: ``compiled`` turns True when numba starts compiling a kernel."""

    def __init__(self):
        self.compiled = False


@contextlib.contextmanager
def announce_compilation(announce, enabled=True):
    """Within the block, ``announce(COMPILING_NOTE)`` is called once if numba has to compile a kernel.

    Only a kernel missing from the cache is compiled (numba's ``numba:compile`` event); loading one
    from the cache says nothing. The kernels compile on whichever thread first needs them, so
    ``announce`` may be called from another thread.

    Args:
        announce: called with one line of text, at most once.
        enabled: False makes the block do nothing, without importing numba (for a method that uses
            no compiled kernel, such as DMENet's network).

    Yields:
        A ``CompilationWatch``, e.g. to leave a photo's time out of a speed figure when it included
        compiling.

    Example:
        >>> with announce_compilation(lambda line: print("note:", line)) as watch:
        ...     estimate_zhuo11(photo)  # the first run after installing prints the note once
    """
    watch = CompilationWatch()
    if not enabled:
        yield watch
        return
    from numba.core import event

    lock = threading.Lock()

    class _FirstCompilation(event.Listener):
        def on_start(self, _event):
            with lock:
                if watch.compiled:
                    return
                watch.compiled = True
            announce(COMPILING_NOTE)

        def on_end(self, _event):
            pass

    with event.install_listener("numba:compile", _FirstCompilation()):
        yield watch
