"""XLA for B's inference call: where `auto` uses it, and that it computes what the graph computes."""
import numpy as np
import pytest

from dmenet.inference import precision
from dmenet.inference.xla import resolve_xla


def test_auto_uses_xla_for_fp32_on_cpus_without_avx512_only(monkeypatch):
    monkeypatch.setattr(precision, "gpu_compute_capabilities", lambda: [])
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "fma"})
    assert resolve_xla("auto", "fp32")[0] is True
    assert resolve_xla("auto", "bf16")[0] is False
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    assert resolve_xla("auto", "fp32") == (False, "auto: on an AVX-512 CPU the streamlined graph is faster than XLA")
    monkeypatch.setattr(precision, "gpu_compute_capabilities", lambda: [(8, 0)])
    assert resolve_xla("auto", "fp32") == (False, "auto: on a GPU the graph runs cuDNN")
    assert resolve_xla("on", "bf16") == (True, "requested") and resolve_xla("off", "fp32") == (False, "requested")
    with pytest.raises(ValueError, match="--xla must be one of auto, on, off"):
        resolve_xla("yes", "fp32")


def test_xla_and_graph_predictors_agree_on_a_tiled_photo(monkeypatch):
    import keras

    from dmenet.inference.tiling import DefocusPredictor
    from dmenet.networks.blur_net import build_blur_net
    from dmenet.units import DefocusEncoding

    monkeypatch.setattr(precision, "gpu_compute_capabilities", lambda: [])
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2"})  # where auto picks XLA
    keras.utils.set_random_seed(0)
    model = build_blur_net(width=0.125)
    image = np.random.default_rng(0).random((70, 150, 3)).astype(np.float32)
    maps = {}
    for xla in ("auto", "off"):
        predictor = DefocusPredictor(model, DefocusEncoding(), tile=96, margin=16, xla=xla)
        assert predictor.xla is (xla == "auto") and predictor.streamlined is (xla == "off")
        assert predictor.tile_plan(*image.shape[:2]).count > 1  # several windows of one shape: one compilation
        maps[xla] = predictor.predict_map(image)
    # Float rounding only (XLA sums in another order; an untrained network amplifies it a little).
    np.testing.assert_allclose(maps["auto"], maps["off"], atol=5e-4)
    assert np.abs(maps["auto"] - maps["off"]).mean() < 2e-5
