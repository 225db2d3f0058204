"""Where dmenet's compiled kernels are cached, and saying so when they must be compiled first.

A fresh install has no cache yet: its first run compiles every kernel (numba, then the native objects
of ``dmenet.native_kernels``; 25–35 s of one core on the project's 2-core machines), and
``announce_compilation`` lets a command say so instead of leaving its progress line still.

numba caches a kernel beside its source, else in the user's cache folder, else nowhere: with neither
writable (a read-only install and home, as in some containers) it refuses to define the kernel at
all. ``cache_in_temporary_folder_if_needed`` lets a command point it at a private temporary folder
first, and ``native_cache_folder`` puts the native objects beside numba's cache.
"""
import contextlib
import os
import pathlib
import stat
import sys
import tempfile
import threading

COMPILING_NOTE = ("compiling the numerical kernels for this machine, once (about half a minute; later runs load them from "
                  "the cache in well under a second)")


class CompilationWatch:
    """What ``announce_compilation`` saw: ``compiled`` turns True when numba starts compiling a kernel."""

    def __init__(self):
        self.compiled = False


@contextlib.contextmanager
def announce_compilation(announce, enabled=True):
    """Within the block, ``announce(COMPILING_NOTE)`` is called once if numba has to compile a kernel.

    Only a kernel missing from the cache is compiled (numba's ``numba:compile`` event, or a native
    object being built: ``dmenet.native_kernels.add_compile_listener``); loading one from the cache
    says nothing. The kernels compile on whichever thread first needs them, so ``announce`` may be
    called from another thread. Imports no numba.

    Args:
        announce: called with one line of text, at most once.
        enabled: False makes the block do nothing (for a method that uses no compiled kernel, such as
            DMENet's network).

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
    from dmenet.native_kernels import add_compile_listener

    lock = threading.Lock()

    def first_compilation():
        with lock:
            if watch.compiled:
                return
            watch.compiled = True
        announce(COMPILING_NOTE)

    remove = add_compile_listener(first_compilation)
    try:
        yield watch
    finally:
        remove()


def _writable(path):
    """Whether a file could be made at `path` (a folder, made if missing): its nearest existing folder is writable."""
    path = pathlib.Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def _user_cache_folder():
    """Where numba's user-wide cache goes (its ``appdirs`` rule), found without importing numba.

    ``expanduser`` as numba's rule uses it: without a home it leaves "~" as it is (a folder relative to
    the working one), where ``Path.home()`` would raise.
    """
    home = os.path.expanduser("~")
    if sys.platform == "darwin":
        return pathlib.Path(home, "Library", "Caches", "numba")
    if sys.platform == "win32":
        return pathlib.Path(os.environ.get("LOCALAPPDATA", home), "numba", "Cache")
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache"), "numba")


def _private_folder(folder):
    """Whether `folder` is a folder this user owns that nobody else can write (safe to load machine code from)."""
    try:
        status = os.stat(folder, follow_symlinks=False)
    except OSError:
        return False
    owner_is_us = not hasattr(os, "getuid") or status.st_uid == os.getuid()
    return owner_is_us and stat.S_ISDIR(status.st_mode) and not status.st_mode & 0o022  # a link is not a folder here


def cache_in_temporary_folder_if_needed():
    """Point numba's kernel cache at a private temporary folder when it could write nowhere else.

    Nothing changes when ``NUMBA_CACHE_DIR`` is set or numba can write beside dmenet's sources or in
    the user's cache folder. Otherwise ``NUMBA_CACHE_DIR`` becomes ``dmenet-numba-<user>`` in the
    system's temporary folder (made private to this user; a fresh folder per process when that name
    is taken by anyone else), so the kernels compile and are reused instead of numba refusing them.
    Imports no numba; call it before the first kernel is used.

    Returns:
        The folder chosen, or None when numba needs none.

    Example:
        >>> folder = cache_in_temporary_folder_if_needed()
        >>> if folder:
        ...     print(f"note: numba's compiled kernels are cached in {folder}")
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    if _writable(pathlib.Path(__file__).parent / "__pycache__") or _writable(_user_cache_folder()):
        return None
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    folder = os.path.join(tempfile.gettempdir(), f"dmenet-numba-{user}")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError:
        pass
    if not _private_folder(folder):
        try:
            folder = tempfile.mkdtemp(prefix="dmenet-numba-")
        except OSError:
            return None  # nowhere to write at all: numba's own error says so
    os.environ["NUMBA_CACHE_DIR"] = folder
    config = sys.modules.get("numba.core.config")
    if config is not None:  # numba read the variable when it was imported
        config.CACHE_DIR = folder
    return folder


def native_cache_folder():
    """Where ``dmenet.native_kernels`` caches the kernels' object files: beside numba's cache of them.

    ``NUMBA_CACHE_DIR``'s ``dmenet-native`` when it is set (``cache_in_temporary_folder_if_needed`` sets
    it where nothing else is writable), else ``dmenet/__pycache__/native`` when writable, else
    ``dmenet-native`` in numba's user cache folder. Imports no numba.

    Returns:
        A path, or None when none is writable (the objects are then built in memory by every process).
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return pathlib.Path(os.environ["NUMBA_CACHE_DIR"], "dmenet-native")
    for folder in (pathlib.Path(__file__).parent / "__pycache__" / "native", _user_cache_folder() / "dmenet-native"):
        if _writable(folder):
            return folder
    return None
