"""Image I/O: the formats users and datasets actually have, and writes that never leave half a file."""
import os
import stat

import numpy as np
import pytest
from PIL import Image

from dmenet.files import images as image_io
from dmenet.units import NORMALIZED, OFFICIAL, round_half_away, sigma_to_uint16


def test_sixteen_bit_rgb_png_keeps_its_values(shared_data):
    """Pillow would read this official SYNDOF map as all zeros (8-bit truncation)."""
    folder = shared_data / "syndof_official_sample" / "blur_map"
    mask = image_io.read_mask(next(folder.iterdir()))
    assert mask.dtype == np.uint16 and mask.max() == 70  # σ·10 for σ_max = 7


def test_grey_rgba_and_16_bit_photos_become_rgb_floats(tmp_path):
    grey16 = np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 21
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    rgba = np.random.default_rng(0).integers(0, 256, (48, 64, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    g = image_io.read_image(tmp_path / "g16.png")
    assert g.shape == (48, 64, 3) and g.dtype == np.float32
    np.testing.assert_allclose(g[..., 1], grey16 / 65535.0, atol=1e-6)
    np.testing.assert_allclose(image_io.read_image(tmp_path / "rgba.png"), rgba[..., :3] / 255.0, atol=1e-6)


def test_colour_label_maps_are_refused(tmp_path):
    Image.fromarray(np.dstack([np.zeros((8, 8), np.uint8), np.full((8, 8), 255, np.uint8), np.zeros((8, 8), np.uint8)])).save(tmp_path / "c.png")
    with pytest.raises(image_io.ImageReadError, match="colour channels differ"):
        image_io.read_mask(tmp_path / "c.png")


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path):
    target = tmp_path / "map.png"
    with pytest.raises(RuntimeError):
        with image_io.atomic_path(target) as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_encodings_and_matlab_rounding():
    assert list(round_half_away([0.5, 1.5, 2.5, -0.5])) == [1, 2, 3, -1]
    assert sigma_to_uint16([0.25, 0.35, 7.0]).tolist() == [3, 4, 70]
    assert NORMALIZED.to_sigma(1.0) == pytest.approx(7.0)
    assert OFFICIAL.to_sigma(np.array([0.0, 1 / 15, 1.0])).tolist() == pytest.approx([0.0, 0.0, 7.0])
    np.testing.assert_allclose(OFFICIAL.to_sigma(OFFICIAL.from_sigma(np.array([0.5, 3.0]))), [0.5, 3.0], atol=1e-6)


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_respects_the_umask_like_open(tmp_path, umask, expected):
    previous = os.umask(umask)
    try:
        image_io.write_png(tmp_path / "map.png", np.zeros((4, 4), np.uint16))
        with image_io.atomic_path(tmp_path / "summary.json") as temporary:
            temporary.write_text("{}")
        image_io.save_npy(tmp_path / "sigma.npy", np.zeros(3, np.float32))
        with open(tmp_path / "plain.txt", "w"):
            pass
    finally:
        os.umask(previous)
    for name in ("map.png", "summary.json", "sigma.npy", "plain.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_official_input_gives_back_every_byte_and_keeps_other_data_as_float64(dtype):
    to_official_input = image_io.to_official_input
    every_byte = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    back = to_official_input(every_byte.astype(dtype) / dtype(255))
    assert back.dtype == np.uint8 and np.array_equal(back, every_byte)
    sixteen_bit = (np.arange(768).reshape(16, 16, 3) * 85 + 7).astype(dtype) / dtype(65535)  # not 8-bit data
    kept = to_official_input(sixteen_bit)
    assert kept.dtype == np.float64 and np.array_equal(kept, sixteen_bit.astype(np.float64))
    assert to_official_input(np.full((2, 2, 3), np.nan, dtype)).dtype == np.float64
