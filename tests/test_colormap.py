"""The colour picture of σ maps, drawn without matplotlib, in matplotlib's colours."""
import numpy as np
import pytest

from dmenet.files.colormap import colorize, inferno_table, nice_ticks, sigma_picture
from dmenet.files.figures import COLORMAP, save_sigma_colormap
from dmenet.files.images import read_image


def test_the_table_is_matplotlibs_inferno_as_agg_renders_it():
    import matplotlib

    assert COLORMAP == "inferno"
    np.testing.assert_array_equal(inferno_table(), matplotlib.colormaps["inferno"](np.arange(256), bytes=True)[:, :3])


def test_colours_are_those_of_imshow_with_the_same_scale():
    import matplotlib

    values = np.concatenate([np.linspace(-0.5, 3.5, 997), [0.0, 3.0, 1.5, 2.9999]])
    norm = matplotlib.colors.Normalize(vmin=0.0, vmax=3.0)
    expected = matplotlib.colormaps["inferno"](norm(values), bytes=True)[:, :3]
    np.testing.assert_array_equal(colorize(values, vmax=3.0), expected)


@pytest.mark.parametrize("vmax, ticks", [(3.0, [0, 1, 2, 3]), (2.0, [0, 0.5, 1, 1.5, 2]),
                                          (7.3, [0, 2, 4, 6]), (0.011, [0, 0.0025, 0.005, 0.0075, 0.01])])
def test_scale_ticks_are_round_numbers_within_the_scale(vmax, ticks):
    assert nice_ticks(vmax) == pytest.approx(ticks)


def test_picture_holds_the_map_in_colour_beside_its_scale(tmp_path):
    sigma = np.tile(np.linspace(0.0, 2.0, 400), (300, 1))
    picture = sigma_picture(sigma, vmax=2.0)
    assert picture.shape[0] >= 300 and picture.shape[1] > 400 + 40
    # the map's rows appear unchanged somewhere in the picture (1:1 at this size)
    row = colorize(sigma[:1], vmax=2.0)[0]
    found = [(y, x) for y in range(picture.shape[0]) for x in range(picture.shape[1] - 399)
             if np.array_equal(picture[y, x], row[0]) and np.array_equal(picture[y, x:x + 400], row)][:1]
    assert found
    save_sigma_colormap(tmp_path / "map_defocus.png", sigma, vmax=2.0)
    assert read_image(tmp_path / "map_defocus.png").shape == picture.shape
    # a tiny map is shown enlarged, not dwarfed by its scale
    assert sigma_picture(sigma[:20, :30], vmax=2.0).shape[1] > 320
