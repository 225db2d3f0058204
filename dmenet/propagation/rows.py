"""Sharing a compiled kernel's rows between threads.

The propagation's kernels are compiled with ``nogil`` and work on a range of rows, so plain Python
threads run them in parallel. This is used instead of numba's own ``parallel=True``: its default
thread pool (workqueue) must not be entered from two Python threads at once, and Park'17 sets up its
propagation in a second thread while TensorFlow runs, and Zhuo & Sim beside its edge stages.
"""
import concurrent.futures
import functools

from dmenet.cores import available_cores

MAX_THREADS = 4  # the kernels are memory-bound: more threads than this gain nothing measurable


@functools.cache
def _pool(workers):
    return concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="dmenet-rows")


class RowRunner:
    """Calls ``function(first, last)`` over row ranges that cover 0 … count − 1, on up to `threads` threads.

    Args:
        threads: number of threads (None: the available cores, at most ``MAX_THREADS``); 1 runs
            everything in the calling thread.

    Example:
        >>> out = [0] * 10
        >>> def fill(first, last):
        ...     out[first:last] = range(first, last)
        >>> RowRunner(2)(fill, 10); out
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    """

    def __init__(self, threads=None):
        self.threads = max(1, min(available_cores(), MAX_THREADS) if threads is None else int(threads))

    def __call__(self, function, count):
        parts = max(1, min(self.threads, count))
        bounds = [count * part // parts for part in range(parts + 1)]
        if parts == 1:
            function(0, count)
            return
        pool = _pool(self.threads - 1)
        others = [pool.submit(function, bounds[part], bounds[part + 1]) for part in range(1, parts)]
        function(bounds[0], bounds[1])
        for other in others:
            other.result()
