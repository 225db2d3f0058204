"""Cached numba kernels load without numba's context refresh, and a kernel missing from the cache still compiles."""
import subprocess
import sys
import textwrap

from dmenet.kernel_cache import cached_loads_without_refresh

REFRESH_ONLY_MODULE = "numba.np.random.generator_core"  # imported by numba's context refresh, by nothing else here

KERNEL_MODULE = '''
import math

import numba
import numpy as np


@numba.njit(cache=True)
def gaussian_weights(count, scale):
    weights = np.empty(count)  # allocates: needs numba's runtime
    for index in range(count):
        weights[index] = math.exp(-index * index / (2.0 * scale * scale))
    return weights
'''

RUN_KERNEL = '''
import sys

from dmenet.kernel_cache import cached_loads_without_refresh

sys.path.insert(0, sys.argv[1])
import kernel_module

with cached_loads_without_refresh() as in_effect:
    weights = kernel_module.gaussian_weights(5, 2.0)
assert in_effect
assert abs(weights[2] - 0.6065306597126334) < 1e-15, weights
print(sum(kernel_module.gaussian_weights.stats.cache_hits.values()), "{refresh_only}" in sys.modules)
'''.replace("{refresh_only}", REFRESH_ONLY_MODULE)


def _run_kernel(folder, cache_folder):
    environment_code = f"import os; os.environ['NUMBA_CACHE_DIR'] = {str(cache_folder)!r}\n"
    run = subprocess.run([sys.executable, "-c", environment_code + RUN_KERNEL, str(folder)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    hits, refreshed = run.stdout.split()
    return int(hits), refreshed == "True"


def test_a_missing_kernel_compiles_and_a_cached_one_loads_without_the_refresh(tmp_path):
    (tmp_path / "kernel_module.py").write_text(textwrap.dedent(KERNEL_MODULE))
    cache_folder = tmp_path / "numba_cache"
    hits, refreshed = _run_kernel(tmp_path, cache_folder)
    assert hits == 0 and refreshed  # compiled: numba's compiler refreshed its context itself
    hits, refreshed = _run_kernel(tmp_path, cache_folder)
    assert hits == 1 and not refreshed  # loaded from the cache: no refresh, and the kernel ran correctly


def test_the_loader_is_numba_s_own_again_after_the_block():
    from numba.core import caching

    original = caching.Cache.load_overload
    with cached_loads_without_refresh() as outer:
        with cached_loads_without_refresh():
            assert caching.Cache.load_overload is not original
        assert caching.Cache.load_overload is not original  # the outer block still holds it
    assert outer and caching.Cache.load_overload is original


def _fresh_kernel():
    """A kernel numba has never seen (not cached): its first call compiles."""
    import numba

    @numba.njit(cache=False)
    def doubled(value):
        return 2 * value

    return doubled


def test_a_compilation_is_announced_once_whichever_thread_compiles():
    import threading

    from dmenet.kernel_cache import COMPILING_NOTE, announce_compilation

    lines = []
    with announce_compilation(lines.append) as watch:
        assert not watch.compiled
        first, second = _fresh_kernel(), _fresh_kernel()
        assert first(3) == 6
        worker = threading.Thread(target=second, args=(4,))
        worker.start()
        worker.join()
    assert lines == [COMPILING_NOTE] and watch.compiled
    with announce_compilation(lines.append) as watch:
        assert first(5) == 10  # already compiled: nothing to say
    assert lines == [COMPILING_NOTE] and not watch.compiled
    assert _fresh_kernel()(1) == 2 and lines == [COMPILING_NOTE]  # outside a block: no listener left behind


def test_a_disabled_announcement_does_not_import_numba():
    code = ("import sys\nfrom dmenet.kernel_cache import announce_compilation\n"
            "with announce_compilation(print, enabled=False) as watch:\n    pass\n"
            "print(watch.compiled, 'numba' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", "False"]
