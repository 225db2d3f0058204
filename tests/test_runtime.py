"""Process set-up of the CLIs: TensorFlow's start-up chatter off unless asked for, one device line."""
import logging
import warnings

import pytest

from dmenet.cli import runtime


@pytest.fixture
def clean_environment(monkeypatch):
    for name in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY", runtime.VERBOSE_ENV):
        monkeypatch.delenv(name, raising=False)
    levels = {name: logging.getLogger(name).level for name in ("tensorflow", "absl")}
    with warnings.catch_warnings():
        yield monkeypatch
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_quiet_start_silences_tensorflow_before_import(clean_environment):
    import os

    runtime.quiet_start()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    assert logging.getLogger("tensorflow").level == logging.ERROR


def test_verbose_flag_or_environment_keeps_the_logs(clean_environment):
    import os

    runtime.quiet_start(verbose=True)
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    clean_environment.setenv(runtime.VERBOSE_ENV, "1")
    assert runtime.wants_verbose()
    runtime.quiet_start()
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    clean_environment.setenv(runtime.VERBOSE_ENV, "0")
    assert not runtime.wants_verbose()


def test_a_users_own_log_level_is_kept(clean_environment):
    import os

    clean_environment.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    runtime.quiet_start()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"


def test_device_description_is_one_line_naming_the_device():
    line = runtime.device_description()
    assert line.startswith("Device: ") and "\n" not in line and ("CPU" in line or "GPU" in line)


START = ("from dmenet.cli.runtime import quiet_start, device_description; quiet_start({verbose}); "
         "import keras, tensorflow; print(device_description())")


def _start(onednn, verbose=False):
    import os
    import subprocess
    import sys

    environment = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", runtime.VERBOSE_ENV)}
    environment["TF_ENABLE_ONEDNN_OPTS"] = onednn
    return subprocess.run([sys.executable, "-c", START.format(verbose=verbose)], capture_output=True, text=True,
                          env=environment, timeout=300)


@pytest.mark.parametrize("onednn", ["0", "1"])
def test_tensorflow_loads_without_a_line_whatever_onednn(onednn):
    """oneDNN's notice is printed natively before absl's logging starts; quiet_start must hold it back."""
    run = _start(onednn)
    assert run.returncode == 0, run.stderr
    assert run.stderr == "" and run.stdout.startswith("Device: ") and len(run.stdout.splitlines()) == 1


def test_verbose_start_keeps_tensorflows_native_lines():
    run = _start("1", verbose=True)
    assert run.returncode == 0, run.stderr
    assert "oneDNN custom operations are on" in run.stderr


EXIT_CHECK = (
    "import atexit, gc, runpy, sys\n"
    "from dmenet.cli.infer import run\n"
    "assert run(['missing.jpg', '--method', 'zhuo11', '--quiet']) == 2\n"
    "assert gc.get_freeze_count() == 0, 'run() froze the collector of the process that called it'\n"
    "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))\n"
    "sys.argv = ['infer.py', 'missing.jpg', '--method', 'zhuo11', '--quiet']\n"
    "runpy.run_path('infer.py', run_name='__main__')\n"
)


def test_infer_exits_without_the_final_collections_and_run_leaves_the_collector_alone():
    """The interpreter's collections at exit cost a small photo's run ≈ 0.1 s; only the command skips them."""
    import pathlib
    import subprocess
    import sys
    import tomllib

    repository = pathlib.Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", EXIT_CHECK], capture_output=True, text=True, timeout=120, cwd=repository)
    assert done.returncode == 2, done.stderr
    assert "frozen at exit: True" in done.stdout and "missing.jpg" in done.stderr
    scripts = tomllib.loads((repository / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["dmenet-infer"] == "dmenet.cli.infer:command"


def test_onednn_goes_on_only_for_a_park17_process_without_dmenet_and_before_tensorflow(monkeypatch):
    import os
    import sys

    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    for methods, turned_on in ((["park17"], True), (["zhuo11", "park17", None], True), (["park17", "dmenet"], False),
                               (["zhuo11"], False), (["dmenet"], False), ([], False)):
        monkeypatch.delenv(runtime.ONEDNN_ENV, raising=False)
        assert runtime.onednn_for_methods(methods) is turned_on, methods
        assert os.environ.get(runtime.ONEDNN_ENV) == ("1" if turned_on else None), methods
    monkeypatch.setenv(runtime.ONEDNN_ENV, "0")  # the user's own choice stays
    assert runtime.onednn_for_methods(["park17"]) is False and os.environ[runtime.ONEDNN_ENV] == "0"
    monkeypatch.delenv(runtime.ONEDNN_ENV)
    monkeypatch.setitem(sys.modules, "tensorflow", object())  # read at import: too late to change, so left alone
    assert runtime.onednn_for_methods(["park17"]) is False and runtime.ONEDNN_ENV not in os.environ
