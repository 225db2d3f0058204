"""Choosing bf16 only where the hardware computes it natively."""
import pytest

from dmenet.inference import precision


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    zen4 = tmp_path / "zen4"
    zen4.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 vaes\n\nprocessor\t: 1\n")
    zen3 = tmp_path / "zen3"
    zen3.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma vaes\n")
    assert precision.cpu_bf16_flags(zen4) == ["avx512_bf16"]
    assert precision.cpu_bf16_flags(zen3) == []
    assert precision.cpu_bf16_flags(tmp_path / "missing") == []


def test_auto_follows_native_support(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda: (True, "this CPU computes bfloat16 natively (amx_bf16)"))
    assert precision.resolve_precision("auto") == ("bf16", "auto: this CPU computes bfloat16 natively (amx_bf16)")
    monkeypatch.setattr(precision, "native_bf16", lambda: (False, "no native bfloat16"))
    assert precision.resolve_precision("auto")[0] == "fp32"
    assert precision.resolve_precision("bf16") == ("bf16", "requested")


def test_gpu_capability_decides_when_a_gpu_is_present(monkeypatch):
    monkeypatch.setattr(precision, "gpu_compute_capabilities", lambda: [(8, 0)])
    assert precision.native_bf16()[0]
    monkeypatch.setattr(precision, "gpu_compute_capabilities", lambda: [(7, 5)])
    assert not precision.native_bf16()[0]


def test_policy_scope_restores_the_global_policy():
    import keras

    before = keras.config.dtype_policy().name
    with precision.dtype_policy_scope("bf16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == before
    with pytest.raises(RuntimeError), precision.dtype_policy_scope("bf16"):
        raise RuntimeError("build failed")
    assert keras.config.dtype_policy().name == before
