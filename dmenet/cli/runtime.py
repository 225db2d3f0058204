"""Process set-up for the command-line tools: a quiet TensorFlow start and a one-line device report.

Library code never calls these; only the CLIs do, first thing, so that importing ``dmenet`` changes
no global state.
"""
import logging
import os
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


def device_description():
    """One plain line naming what the computation will run on, e.g. ``Device: CPU (2 cores)``.

    Returns:
        str: the devices TensorFlow will use.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = []
        for gpu in gpus:
            details = tf.config.experimental.get_device_details(gpu)
            names.append(details.get("device_name", gpu.name))
        return f"Device: {len(gpus)} GPU{'s' if len(gpus) > 1 else ''} ({', '.join(names)})"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"Device: CPU ({cores} cores; no GPU found)"
