"""Process set-up for the command-line tools: a quiet TensorFlow start and a one-line device report.

Library code never calls these; only the CLIs do, first thing, so that importing ``dmenet`` changes
no global state.
"""
import contextlib
import gc
import importlib.abc
import importlib.util
import logging
import os
import sys
import warnings

VERBOSE_ENV = "DMENET_VERBOSE"


def wants_verbose(verbose=False):
    """True when the user asked for TensorFlow's own logs (``--verbose`` or ``DMENET_VERBOSE=1``)."""
    return bool(verbose) or os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def quiet_start(verbose=False):
    """Silence TensorFlow's start-up chatter unless the user asked for it.

    Must run before TensorFlow is imported: its C++ logging level is read once, at import. On a CPU
    machine with the CUDA wheels installed TensorFlow otherwise prints a ``cuInit`` failure and the
    oneDNN notice, which users read as errors. Explicit user settings of the variables are kept.

    Args:
        verbose: keep TensorFlow's logs (also enabled by ``DMENET_VERBOSE=1``).

    Example:
        >>> from dmenet.cli.runtime import quiet_start
        >>> quiet_start()          # then import tensorflow / keras
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if wants_verbose(verbose):
        return
    # Level 3 drops C++ INFO/WARNING/ERROR lines; fatal errors still surface as Python exceptions.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(tensorflow|keras|absl)(\..*)?")
    # TF_CPP_MIN_LOG_LEVEL only holds once absl's logging is initialised; what TensorFlow's native
    # libraries print while they load (oneDNN's notice on AVX512-BF16/AMX CPUs, twice) comes before.
    # A user's own lower level asks for those lines, so they are kept then.
    wants_silence = os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3" and "tensorflow" not in sys.modules
    if wants_silence and not any(isinstance(finder, _SilentTensorFlowImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SilentTensorFlowImport())


ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"


def onednn_for_methods(methods):
    """Turn TensorFlow's oneDNN kernels on for a process that runs Park'17's network and not DMENet's.

    TensorFlow turns oneDNN on by itself only on CPUs with AVX-512 VNNI, BF16 or AMX; on an AVX2-only
    CPU (the project's AMD EPYC machine) it leaves it off, and there Park'17's patch classifier took
    2.58–2.73 s with it off against 2.01–2.29 s with it on (sample_0001, 640×512: the whole estimate
    3.50–3.77 s against 2.98–3.40 s, the same labels and maps). DMENet's B keeps TensorFlow's own
    choice: its precision and XLA defaults were measured with it, and on that machine its benchmark
    (``python -m dmenet.bench infer``, 640×480) did not finish in 500 s with oneDNN forced on, where
    with the default it finished (7.6 s per photo in the fp32 graph, 6.0 s with XLA). A value the user
    set is kept, and nothing changes once TensorFlow is imported (it reads the variable then).

    Args:
        methods: the methods the process will run ("dmenet", "park17", "zhuo11").

    Returns:
        True when this call turned oneDNN on.

    Example:
        >>> onednn_for_methods(["park17"])     # before TensorFlow is imported
    """
    methods = set(methods)
    if "park17" not in methods or "dmenet" in methods or ONEDNN_ENV in os.environ or "tensorflow" in sys.modules:
        return False
    os.environ[ONEDNN_ENV] = "1"
    return True


def kernel_cache_writable():
    """Give numba a temporary cache folder where it could write none, and say so in one line on stderr.

    With a read-only install and home numba refuses to define its cached kernels (a traceback at the
    first classical method or application); ``dmenet.kernel_cache.cache_in_temporary_folder_if_needed``
    points it elsewhere first. Imports no numba.
    """
    from dmenet.kernel_cache import cache_in_temporary_folder_if_needed

    folder = cache_in_temporary_folder_if_needed()
    if folder:
        print(f"note: numba cannot write beside dmenet's sources or in your cache folder; its compiled kernels "
              f"are cached in {folder} (set NUMBA_CACHE_DIR to choose a folder)", file=sys.stderr)


@contextlib.contextmanager
def native_stderr_silenced():
    """Send the process's C-level stderr (file descriptor 2) to /dev/null for the block, then restore it.

    Python's own ``sys.stderr`` is flushed first so nothing written before is lost; errors after the
    block reach the user as usual.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


class _SilentTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` the usual way and runs its first import with native stderr silenced.

    It only wraps the loading of the top-level package (which loads every native library); it removes
    itself on first use, so later imports are untouched.
    """

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _SilentLoader(spec.loader)
        return spec


class _SilentLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self.loader  # the module keeps its real loader
        with native_stderr_silenced():
            self.loader.exec_module(module)


def device_description():
    """One plain line naming what the computation will run on, e.g. ``Device: CPU (2 cores)``.

    Returns:
        str: the devices TensorFlow will use.
    """
    import tensorflow as tf

    # The first look for GPUs initialises CUDA, whose failure on a CPU machine is logged natively.
    quiet = native_stderr_silenced() if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "3" else contextlib.nullcontext()
    with quiet:
        gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = []
        for gpu in gpus:
            details = tf.config.experimental.get_device_details(gpu)
            names.append(details.get("device_name", gpu.name))
        return f"Device: {len(gpus)} GPU{'s' if len(gpus) > 1 else ''} ({', '.join(names)})"
    return cpu_description("; no GPU found")


def cpu_description(note=""):
    """``Device: CPU (N cores<note>)`` without asking TensorFlow (for the methods that run without it)."""
    from dmenet.cores import available_cores

    return f"Device: CPU ({available_cores()} cores{note})"


def skip_final_garbage_collection():
    """Let the process exit without the interpreter's final collections of reference cycles.

    A command calls this last, after every output is written and closed. NumPy's and numba's objects
    live until exit, and the collections CPython runs over them while it shuts down took 0.1–0.2 s:
    a tenth of a small photo's whole ``infer.py --method zhuo11`` run. Moving the objects to the
    collector's permanent generation skips only those collections: atexit handlers still run,
    buffered streams are still flushed, and objects outside cycles are still freed.

    Example:
        >>> code = run(argv)
        >>> skip_final_garbage_collection()
        >>> sys.exit(code)
    """
    gc.freeze()
