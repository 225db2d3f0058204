"""SYNDOF against the official generator's outputs (../shared/data/syndof_reference): every map
exact, the defocused image within 1e-6."""
import json

import numpy as np
import pytest

from dmenet.syndof.compositing import composite, composite_reference
from dmenet.syndof.generator import synthesize
from dmenet.syndof.labels import depth_preview

CASES = [
    "synth_two_plane_focus_near_coc15",
    "synth_two_plane_focus_far_coc15",
    "synth_three_plane_focus_mid_coc15",
    "middlebury_adirondack_coc15",
]


def load_case(shared_data, case):
    folder = shared_data / "syndof_reference"
    params = json.loads((folder / f"{case}.json").read_text())["params"]
    return params, np.load(folder / f"{case}.npz")


@pytest.mark.parametrize("case", CASES)
def test_matches_official_outputs(shared_data, case):
    params, ref = load_case(shared_data, case)
    sample = synthesize(ref["input_image"], ref["depth_in"], params["max_coc"], f_mm=params["f_mm"], z_focal=params["z_focal"])
    stack, labels, lens = sample.stack, sample.labels, sample.camera.lens
    assert lens.n_number == params["N"]
    assert sample.camera.depth_shift_mm == params["shift_offset"]
    np.testing.assert_array_equal(stack.unique_depths, ref["z_point"])
    np.testing.assert_array_equal(stack.unique_cocs, ref["cocs_raw"])
    np.testing.assert_array_equal(stack.depths, ref["layer_depths"])
    np.testing.assert_array_equal(stack.cocs, ref["layer_cocs"])
    np.testing.assert_array_equal(stack.index_map, ref["layer_index_map"])
    np.testing.assert_array_equal(stack.depth_map, ref["depth_layers"])
    np.testing.assert_array_equal(stack.coc_map, ref["coc_map"])
    np.testing.assert_array_equal(labels.sigma, ref["blur_sigma"])
    np.testing.assert_array_equal(labels.sigma_uint16, ref["blur_map_uint16"])
    np.testing.assert_array_equal(labels.sigma_norm, ref["blur_map_norm"])
    np.testing.assert_array_equal(labels.binary, ref["blur_map_binary"])
    np.testing.assert_array_equal(depth_preview(stack.depth_map), ref["depth_decomposed_uint8"])
    assert stack.first_sharp_layer + 1 == params["coc_zero_idx_1based"]
    assert sample.parameters()["focus_percent"] == pytest.approx(params["z_focal_percent"], abs=1e-15)
    assert np.abs(sample.blurred - ref["blurred_image"]).max() < 1e-6


@pytest.mark.parametrize("case", CASES[:3])
def test_fast_compositor_equals_reference_compositor(shared_data, case):
    params, ref = load_case(shared_data, case)
    sample = synthesize(ref["input_image"], ref["depth_in"], params["max_coc"], f_mm=params["f_mm"], z_focal=params["z_focal"])
    slow = composite_reference(ref["input_image"], sample.stack, params["max_coc"])
    np.testing.assert_allclose(composite(ref["input_image"], sample.stack, params["max_coc"]), slow, atol=1e-12, rtol=0)


def test_other_max_coc_matches_reference_compositor(shared_data):
    """A case without official output: Middlebury at max_coc 29 (even-sized kernels excluded by the
    official code's odd default) — the fast path must equal the plain full-frame path."""
    _, ref = load_case(shared_data, "middlebury_adirondack_coc15")
    image, depth = ref["input_image"][::2, ::2], ref["depth_in"][::2, ::2]
    for max_coc in (29, 20):
        sample = synthesize(image, depth, max_coc, rng=np.random.default_rng(3))
        slow = composite_reference(image, sample.stack, max_coc)
        np.testing.assert_allclose(sample.blurred, slow, atol=1e-12, rtol=0)
