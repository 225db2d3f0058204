"""Kernels run from their cached machine code: the same results as numba's, no numba in a later process."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dmenet import native_kernels
from dmenet.native_kernels import _parse_signature, kernel

KERNEL_MODULES = (
    "dmenet.nearest_filter_kernel", "dmenet.park17.hysteresis_kernel", "dmenet.zhuo11.bilateral_kernel",
    "dmenet.propagation.stencil", "dmenet.propagation.aggregation", "dmenet.propagation.coarse",
)

# a module of kernels the tests build in their own cache folder (so they compile whatever the package's cache holds)
TEST_KERNELS = '''
from dmenet.native_kernels import kernel


@kernel(inline="always")
def _twice(value):
    return 2.0 * value


@kernel("f8[:, ::1], f8, i8[::1]")
def scale_rows(values, factor, divisors):
    """values[r] = 2·factor·values[r] // divisors[r] (a zero divisor raises ZeroDivisionError in numba)."""
    for row in range(values.shape[0]):
        for column in range(values.shape[1]):
            values[row, column] = _twice(factor * values[row, column]) // divisors[row]


@kernel("b1[:, ::1]", returns="i8")
def count_set(flags):
    total = 0
    for row in range(flags.shape[0]):
        for column in range(flags.shape[1]):
            total += flags[row, column]
    return total
'''

RUN_TEST_KERNELS = '''
import sys
import numpy as np

sys.path.insert(0, sys.argv[1])
import test_kernel_module as k
from dmenet import native_kernels

values = np.arange(12.0).reshape(3, 4)
k.scale_rows(values, 1.5, np.array([1, 2, 3]))
flags = np.zeros((5, 7), bool)
flags[1, 2:5] = True
print(values.sum(), k.count_set(flags), native_kernels._modules.get("test_kernel_module") is not None, "numba" in sys.modules)
'''


def _run_test_kernels(folder, cache, **environment):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), **environment}
    run = subprocess.run([sys.executable, "-c", RUN_TEST_KERNELS, str(folder)], capture_output=True, text=True,
                         timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def test_a_built_object_is_reused_by_a_later_process_without_numba_and_rebuilt_when_its_source_changes(tmp_path):
    source = tmp_path / "test_kernel_module.py"
    source.write_text(textwrap.dedent(TEST_KERNELS))
    expected = str(sum(3.0 * value // divisor for row, divisor in zip(np.arange(12.0).reshape(3, 4), (1, 2, 3)) for value in row))
    first = _run_test_kernels(tmp_path, tmp_path / "cache")
    assert first == [expected, "3", "True", "True"]  # built: numba compiled it
    assert sorted(path.suffix for path in (tmp_path / "cache" / "dmenet-native").iterdir()) == [".json", ".o"]
    assert _run_test_kernels(tmp_path, tmp_path / "cache") == [expected, "3", "True", "False"]  # loaded: no numba
    source.write_text(textwrap.dedent(TEST_KERNELS).replace("2.0 * value", "2.0 * value + 0.0"))
    assert _run_test_kernels(tmp_path, tmp_path / "cache")[3] == "True"  # changed source: built again
    assert _run_test_kernels(tmp_path, tmp_path / "cache", DMENET_NATIVE_KERNELS="0") == [expected, "3", "False", "True"]


RAISE_AND_FALL_BACK = '''
import sys
import numpy as np

sys.path.insert(0, sys.argv[1])
import test_kernel_module as k

values = np.ones((2, 3))
try:
    k.scale_rows(values, 1.0, np.array([1, 0]))
except ZeroDivisionError as error:
    print("ZeroDivisionError")
fortran = np.asfortranarray(np.arange(6.0).reshape(2, 3))
k.scale_rows(fortran, 0.5, np.array([1, 1]))  # no declared signature matches: numba compiles one
print(fortran.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], len(k.scale_rows.dispatcher.signatures))
'''


def test_a_kernel_that_raises_raises_numba_s_exception_and_other_arguments_go_to_numba(tmp_path):
    (tmp_path / "test_kernel_module.py").write_text(textwrap.dedent(TEST_KERNELS))
    run = subprocess.run([sys.executable, "-c", RAISE_AND_FALL_BACK, str(tmp_path)], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")})
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["ZeroDivisionError", "True", "2"]  # the raising call, then the Fortran one


@pytest.mark.parametrize("module", KERNEL_MODULES)
def test_every_kernel_module_runs_natively(module):
    with_warnings = []
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = native_kernels.load(module)
        with_warnings = [str(warning.message) for warning in caught if "native object" in str(warning.message)]
    assert status == {module: True} and not with_warnings


def test_the_zhuo11_map_is_the_same_bit_for_bit_through_numba(monkeypatch):
    from dmenet.zhuo11.pipeline import estimate_zhuo11

    rows, columns = np.mgrid[0:60, 0:70]
    photo = np.stack([np.sin(rows / 5.0), np.cos(columns / 7.0), np.tanh((rows - columns) / 9.0)], axis=-1)
    photo = np.round((photo + 1.0) * 127.0).astype(np.uint8)
    native = estimate_zhuo11(photo, keep_intermediates=True)
    monkeypatch.setenv("DMENET_NATIVE_KERNELS", "0")
    through_numba = estimate_zhuo11(photo, keep_intermediates=True)
    np.testing.assert_array_equal(native.sigma, through_numba.sigma)
    for name in ("edgeMap", "sDMap", "edge_sigma"):
        np.testing.assert_array_equal(native.intermediates[name], through_numba.intermediates[name])


def test_signatures_are_checked_when_declared():
    array, scalar = _parse_signature("f4[:, :, ::1], i8")
    assert (array.dtype, array.ndim, scalar.dtype) == (np.float32, 3, np.int64)
    assert array.matches(np.zeros((2, 3, 4), np.float32)) and not array.matches(np.zeros((2, 3, 4)))
    assert not array.matches(np.zeros((2, 3, 4), np.float32)[:, :, ::2])  # not contiguous
    assert scalar.matches(3) and scalar.matches(np.int64(3)) and not scalar.matches(True) and not scalar.matches(3.0)
    for bad in ("f8[:, :]", "f16[::1]", "c8", "f8[::1, :]"):
        with pytest.raises(ValueError, match="kernel signature"):
            kernel(bad)(lambda values: None)
