"""Park'17 fast classification (classify_photo_patches): same outputs as the per-patch classify_patches."""
import numpy as np
import pytest

from dmenet.park17 import classify
from dmenet.park17.classify import classify_patches, classify_photo_patches
from dmenet.park17.features import iter_feature_chunks
from dmenet.park17.network import build_patch_classifier
from dmenet.park17.params import DEFAULT_PARAMS
from dmenet.park17.shared_convolution import compressed_crop_index


def _both_paths(model, rgb, positions, scales, **kwargs):
    gray = rgb.max(axis=2)
    slow = classify_patches(model, iter_feature_chunks(rgb, gray, positions, scales, **kwargs))
    fast = classify_photo_patches(model, rgb, gray, positions, scales, **kwargs)
    return slow, fast


def _assert_same(slow, fast, tolerance=1e-5):
    np.testing.assert_array_equal(fast[0], slow[0])
    assert fast[1].dtype == np.float32 and fast[2].dtype == np.float32
    assert np.abs(fast[2] - slow[2]).max() < tolerance
    np.testing.assert_allclose(fast[1], slow[1], atol=tolerance)


def test_compressed_crop_index_reproduces_replicate_padding():
    """conv1 rows of the padded patch = rows of the compressed crop's conv1, through `expand`."""
    width, inset = 15, 6
    rows, expand = compressed_crop_index(width, inset)
    padded_rows = np.clip(np.arange(width + 2 * inset) - inset, 0, width - 1)
    conv_rows = [tuple(padded_rows[p:p + 3]) for p in range(width + 2 * inset - 2)]
    compressed_conv_rows = [tuple(rows[m:m + 3]) for m in range(len(rows) - 2)]
    assert [compressed_conv_rows[m] for m in expand] == conv_rows
    assert len(set(compressed_conv_rows)) == len(compressed_conv_rows) == width + 2  # each distinct once
    with pytest.raises(ValueError, match="inset of at least 2"):
        compressed_crop_index(15, 1)


def test_random_photo_random_weights_match_per_patch_path(monkeypatch):
    """Both scales, a final partial batch, several chunks and several shared tiles (small tile budget)."""
    rng = np.random.default_rng(7)
    # Quantised like a photo, with smooth regions and sharp steps, and a non-square size.
    rgb = np.round(rng.random((70, 90, 3)) * 255) / 255
    rgb[20:40, 30:60] = rgb[20, 30]
    height, width = rgb.shape[:2]
    picked = rng.choice(height * width, size=700, replace=False)
    positions = np.stack(np.unravel_index(picked, (height, width)), axis=1)
    scales = np.where(rng.random(700) < 0.7, 1, 2).astype(np.int8)
    order = np.lexsort((positions[:, 0], positions[:, 1], scales))  # the official order
    positions, scales = positions[order], scales[order]
    model = build_patch_classifier()
    monkeypatch.setattr(classify, "SHARED_TILE_PIXELS", 8000)  # two regions per chunk
    slow, fast = _both_paths(model, rgb, positions, scales, chunk_size=256)
    _assert_same(slow, fast)
    assert len(positions) % DEFAULT_PARAMS.batch_size  # the unrounded final batch is exercised


def test_sparse_patches_and_empty_input():
    """A few patches far apart take the per-patch path; no patches gives empty outputs."""
    rng = np.random.default_rng(3)
    rgb = rng.random((300, 400, 3))  # not 8-bit: the cast still matches the per-patch path
    model = build_patch_classifier()
    positions = np.array([[0, 0], [299, 399], [60, 0], [5, 399]] * 40)  # repeated: 160 rows, one full batch
    scales = np.array([1, 1, 2, 1] * 40, np.int8)
    order = np.lexsort((positions[:, 0], positions[:, 1], scales))
    slow, fast = _both_paths(model, rgb, positions[order], scales[order])
    _assert_same(slow, fast)
    labels, confidence, probabilities = classify_photo_patches(
        model, rgb, rgb.max(axis=2), np.zeros((0, 2), np.int64), np.zeros(0, np.int8))
    assert labels.shape == (0,) and confidence.shape == (0,) and probabilities.shape == (0, 11)


@pytest.mark.parametrize("sample", ["sample_0001", "sample_0002"])
def test_official_photos_same_labels_as_per_patch_path(shared_data, sample):
    from dmenet.weights.park17 import load_park17_classifier

    reference = np.load(shared_data / "park17_reference" / f"{sample}.npz")
    model = load_park17_classifier(shared_data / "park17" / "DHDE_model.caffemodel")
    rgb = reference["image_rgb_u8"] / 255.0
    positions = reference["pos"].astype(np.int64)
    n_scale1 = int(reference["nEdges"][0])
    scales = np.where(np.arange(len(positions)) < n_scale1, 1, 2).astype(np.int8)
    slow, fast = _both_paths(model, rgb, positions, scales)
    _assert_same(slow, fast)
    assert np.mean(fast[0] == reference["label"]) >= 0.999


def test_shared_regions_cover_every_patch_within_the_memory_budget():
    """24-megapixel layout: each patch in exactly one region, which contains its crop, within the budget."""
    rng = np.random.default_rng(5)
    origins = np.stack([rng.integers(0, 4000, 20000), rng.integers(0, 6000, 20000)], axis=1)
    seen = []
    for members, top, left, bottom, right in classify._shared_tiles(origins, 27):
        crops = origins[members]
        assert (crops[:, 0] >= top).all() and (crops[:, 0] + 27 <= bottom).all()
        assert (crops[:, 1] >= left).all() and (crops[:, 1] + 27 <= right).all()
        assert (bottom - top) * (right - left) <= max(classify.SHARED_TILE_PIXELS, 27 * (right - left))
        seen.append(members)
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(len(origins)))
