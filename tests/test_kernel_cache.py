"""Compilations are announced, and numba's kernels get a cache folder wherever dmenet runs."""
import os
import pathlib
import subprocess
import sys
import textwrap

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


def _fresh_kernel():
    """A kernel numba has never seen (not cached): its first call compiles."""
    from dmenet.native_kernels import kernel

    @kernel(cache=False)
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


def _unset_until_the_test_ends(monkeypatch, name):
    """Unset `name`, and unset it again after the test whatever the test set (delenv alone restores nothing when it was unset)."""
    monkeypatch.setenv(name, "")
    monkeypatch.delenv(name)


def _nowhere_writable(monkeypatch, temporary_root):
    """numba could write neither beside the sources nor in the user's cache; the system's temporary folder is `temporary_root`."""
    import tempfile

    from dmenet import kernel_cache

    _unset_until_the_test_ends(monkeypatch, "NUMBA_CACHE_DIR")
    monkeypatch.setattr(kernel_cache, "_writable", lambda path: False)
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(temporary_root))
    config = sys.modules.get("numba.core.config")
    if config is not None:  # the function updates numba's own setting too: restored after the test
        monkeypatch.setattr(config, "CACHE_DIR", config.CACHE_DIR)
    return config


def test_numba_keeps_its_own_cache_folders_where_it_can_write(monkeypatch):
    from dmenet import kernel_cache

    _unset_until_the_test_ends(monkeypatch, "NUMBA_CACHE_DIR")
    assert kernel_cache._writable(pathlib.Path(kernel_cache.__file__).parent)
    assert kernel_cache.cache_in_temporary_folder_if_needed() is None and "NUMBA_CACHE_DIR" not in os.environ
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/somewhere/chosen")
    monkeypatch.setattr(kernel_cache, "_writable", lambda path: False)
    assert kernel_cache.cache_in_temporary_folder_if_needed() is None  # the user's choice stands
    assert os.environ["NUMBA_CACHE_DIR"] == "/somewhere/chosen"


def test_the_user_cache_folder_is_numba_s_own(tmp_path, monkeypatch):
    import pytest

    from dmenet import kernel_cache

    if not sys.platform.startswith("linux"):
        pytest.skip("numba's Linux rule")
    from numba.misc.appdirs import AppDirs

    for cache_home in (str(tmp_path), None):
        if cache_home is None:
            monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_CACHE_HOME", cache_home)
        assert kernel_cache._user_cache_folder() == pathlib.Path(AppDirs(appname="numba", appauthor=False).user_cache_dir)


def test_a_private_temporary_folder_when_numba_could_write_nowhere(tmp_path, monkeypatch):
    import stat

    from dmenet.kernel_cache import cache_in_temporary_folder_if_needed

    config = _nowhere_writable(monkeypatch, tmp_path)
    folder = cache_in_temporary_folder_if_needed()
    assert folder == str(tmp_path / f"dmenet-numba-{os.getuid()}") and os.environ["NUMBA_CACHE_DIR"] == folder
    assert not stat.S_IMODE(os.stat(folder).st_mode) & 0o077  # nobody else can plant machine code in it
    assert config is None or config.CACHE_DIR == folder
    assert cache_in_temporary_folder_if_needed() is None  # chosen now: the next call keeps it


def test_a_temporary_folder_that_others_can_write_is_not_used(tmp_path, monkeypatch):
    from dmenet.kernel_cache import cache_in_temporary_folder_if_needed

    _nowhere_writable(monkeypatch, tmp_path)
    shared = tmp_path / f"dmenet-numba-{os.getuid()}"
    shared.mkdir()
    shared.chmod(0o777)
    folder = cache_in_temporary_folder_if_needed()
    assert folder is not None and pathlib.Path(folder).parent == tmp_path and folder != str(shared)
    assert os.environ["NUMBA_CACHE_DIR"] == folder


NOWHERE_TO_CACHE = '''
import sys
import tempfile

from numba.core import caching

from dmenet import kernel_cache

# a read-only install and home: numba's own folders are refused
caching.InTreeCacheLocator.from_function = classmethod(lambda cls, function, path: None)
caching.UserWideCacheLocator.from_function = classmethod(lambda cls, function, path: None)
kernel_cache._writable = lambda path: False
tempfile.tempdir = sys.argv[2]
print(kernel_cache.cache_in_temporary_folder_if_needed())
sys.path.insert(0, sys.argv[1])
import kernel_module  # numba refuses a cached kernel it has nowhere to cache ("no locator available")

print(kernel_module.gaussian_weights(3, 1.0)[1])
'''


def test_kernels_compile_and_cache_when_numba_could_write_nowhere(tmp_path):
    from numba.core import caching

    if not all(hasattr(caching, name) for name in ("InTreeCacheLocator", "UserWideCacheLocator")):
        import pytest

        pytest.skip("this numba names its cache locators differently")
    (tmp_path / "kernel_module.py").write_text(textwrap.dedent(KERNEL_MODULE))
    temporary_root = tmp_path / "tmp"
    temporary_root.mkdir()
    environment = {name: value for name, value in os.environ.items() if name != "NUMBA_CACHE_DIR"}
    run = subprocess.run([sys.executable, "-c", NOWHERE_TO_CACHE, str(tmp_path), str(temporary_root)],
                         capture_output=True, text=True, timeout=300, env=environment)
    assert run.returncode == 0, run.stderr
    folder, weight = run.stdout.split()
    assert folder.startswith(str(temporary_root)) and abs(float(weight) - 0.6065306597126334) < 1e-15
    assert any(path.suffix == ".nbi" for path in pathlib.Path(folder).rglob("*"))
