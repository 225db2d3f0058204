"""σ maps in colour without matplotlib: the "inferno" colour map as a table, and the colour picture with its σ scale.

Drawing NAME_defocus.png through matplotlib cost a one-photo run 0.3 s of importing it (and slowed
the propagation running beside that import). The picture is a colour-mapped image and a labelled
scale bar, which Pillow draws in milliseconds. The table is matplotlib's "inferno" at 256 levels, as
its Agg renderer writes it (``matplotlib.colormaps["inferno"](range(256), bytes=True)``; the colour
map is by Nathaniel J. Smith and Stéfan van der Walt, released under CC0); tests/test_colormap.py
checks it against matplotlib, so the pictures match the other figures' colours exactly.
"""
import math

import numpy as np

_INFERNO_HEX = (
    "00000300000400000601000701010901010b02010e02021003021204031404031605041806041b07051d08061f090621"
    "0a07230b07260d08280e082a0f092d10092f120a32130a34140b36160b39170b3b190b3e1a0b401c0c431d0c451f0c47"
    "200c4a220b4c240b4e260b50270b52290b542b0a562d0a582e0a5a300a5c32095d34095f3509603709613909623b0964"
    "3c09653e0966400966410967430a68450a69460a69480b6a4a0b6a4b0c6b4d0c6b4f0d6c500d6c520e6c530e6d550f6d"
    "570f6d58106d5a116d5b116e5d126e5f126e60136e62146e63146e65156e66156e68166e6a176e6b176e6d186e6e186e"
    "70196e72196d731a6d751b6d761b6d781c6d7a1c6d7b1d6c7d1d6c7e1e6c801f6b811f6b83206b85206a86216a88216a"
    "8922698b22698d23698e24689024689125679325679526669626669827659928649b28649c29639e2963a02a62a12b61"
    "a32b61a42c60a62c5fa72d5fa92e5eab2e5dac2f5cae305baf315bb1315ab23259b43358b53357b73456b83556ba3655"
    "bb3754bd3753be3852bf3951c13a50c23b4fc43c4ec53d4dc73e4cc83e4bc93f4acb4049cc4148cd4247cf4446d04544"
    "d14643d24742d44841d54940d64a3fd74b3ed94d3dda4e3bdb4f3adc5039dd5238de5337df5436e05634e25733e35832"
    "e45a31e55b30e65c2ee65e2de75f2ce8612be9622aea6428eb6527ec6726ed6825ed6a23ee6c22ef6d21f06f1ff0701e"
    "f1721df2741cf2751af37719f37918f47a16f57c15f57e14f68012f68111f78310f7850ef8870df8880cf88a0bf98c09"
    "f98e08f99008fa9107fa9306fa9506fa9706fb9906fb9b06fb9d06fb9e07fba007fba208fba40afba60bfba80dfbaa0e"
    "fbac10fbae12fbb014fbb116fbb318fbb51afbb71cfbb91efabb21fabd23fabf25fac128f9c32af9c52cf9c72ff8c931"
    "f8cb34f8cd37f7cf3af7d13cf6d33ff6d542f5d745f5d948f4db4bf4dc4ff3de52f3e056f3e259f2e45df2e660f1e864"
    "f1e968f1eb6cf1ed70f1ee74f1f079f1f27df2f381f2f485f3f689f4f78df5f891f6fa95f7fb99f9fc9dfafda0fcfea4"
)
LEVELS = 256
MIN_SIDE = 320  # smaller maps are shown enlarged, so that the scale bar's text does not dwarf them


def inferno_table():
    """The 256×3 uint8 colour table."""
    return np.frombuffer(bytes.fromhex("".join(_INFERNO_HEX)), np.uint8).reshape(LEVELS, 3)


def colorize(values, vmax, vmin=0.0):
    """Values → H×W×3 uint8 colours, as matplotlib's imshow(cmap="inferno", vmin, vmax) colours them.

    Args:
        values: H×W array (NaN shows as the lowest colour).
        vmax, vmin: the ends of the colour scale; values beyond them take the end colours.

    Returns:
        H×W×3 uint8.

    Example:
        >>> colorize(np.array([[0.0, 3.0]]), vmax=3.0)[0, 1]
        array([252, 255, 164], dtype=uint8)
    """
    scaled = (np.asarray(values, np.float64) - vmin) / max(vmax - vmin, 1e-12) * LEVELS
    index = np.clip(np.nan_to_num(scaled, nan=0.0), 0, LEVELS - 1).astype(np.intp)
    return inferno_table()[index]


def nice_ticks(vmax, vmin=0.0, count=5):
    """Round tick values from vmin to vmax, about `count` of them (steps of 1, 2, 2.5 or 5 × 10ⁿ)."""
    span = max(vmax - vmin, 1e-12)
    magnitude = 10.0 ** math.floor(math.log10(span / count))
    step = next(factor * magnitude for factor in (1, 2, 2.5, 5, 10) if factor * magnitude * count >= span)
    first = math.ceil(vmin / step - 1e-9) * step
    return [round(first + index * step, 10) for index in range(int((vmax - first) / step + 1e-9) + 1)]


def sigma_picture(sigma, vmax, title=None, max_side=1600, label="defocus blur σ (pixels)"):
    """The colour picture of a σ map with a labelled scale bar on its right, as an RGB uint8 array.

    Args:
        sigma: H×W σ in pixels.
        vmax: top of the colour scale in pixels.
        title: a line above the map, or None.
        max_side: maps with a longer side are shown shrunk to it (nearest pixel); the lossless σ file keeps them whole.
        label: the scale bar's caption.

    Returns:
        H'×W'×3 uint8 picture.

    Example:
        >>> sigma_picture(np.linspace(0, 2, 64 * 48).reshape(48, 64), vmax=2.0).shape[2]
        3
    """
    from PIL import Image, ImageDraw

    sigma = np.asarray(sigma)
    height, width = sigma.shape
    # long sides above max_side shrink to it; small maps grow by a whole factor to at least MIN_SIDE
    scale = min(1.0, max_side / max(height, width)) if max(height, width) > MIN_SIDE else math.ceil(MIN_SIDE / max(height, width))
    shown_height, shown_width = max(1, round(height * scale)), max(1, round(width * scale))
    rows = (np.arange(shown_height) * height // shown_height)[:, None]
    columns = (np.arange(shown_width) * width // shown_width)[None, :]
    colours = colorize(sigma[rows, columns], vmax)

    font_size = int(np.clip(round(max(shown_height, 160) / 28), 10, 22))
    font, draws_sigma = _font(font_size)
    if not draws_sigma:
        label = label.replace("σ", "sigma")
    margin, gap, bar_width = font_size // 2, font_size, max(12, font_size)
    title_height = 2 * font_size if title else 0
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_length = int(measure.textlength(label, font=font))
    panel_height = max(shown_height, label_length + 2 * font_size)  # a small map still gets a readable scale
    ticks = nice_ticks(vmax)
    tick_labels = [f"{tick:g}" for tick in ticks]
    label_width = max(measure.textlength(text, font=font) for text in tick_labels)
    bar_left = margin + shown_width + gap
    caption_left = bar_left + bar_width + 6 + int(label_width) + font_size // 2
    canvas = Image.new("RGB", (caption_left + 2 * font_size + margin, title_height + panel_height + 2 * margin), "white")
    top = margin + title_height
    canvas.paste(Image.fromarray(colours), (margin, top + (panel_height - shown_height) // 2))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((margin + shown_width / 2, margin + title_height / 2), title, fill="black", font=font, anchor="mm")
    # the bar: vmax at the top, 0 at the bottom
    bar_top, bar_bottom = top + font_size // 2, top + panel_height - font_size // 2
    levels = np.linspace(vmax, 0.0, bar_bottom - bar_top)[:, None].repeat(bar_width, axis=1)
    canvas.paste(Image.fromarray(colorize(levels, vmax)), (bar_left, bar_top))
    draw.rectangle((bar_left - 1, bar_top - 1, bar_left + bar_width, bar_bottom), outline="black")
    for tick, text in zip(ticks, tick_labels):
        y = bar_bottom - (bar_bottom - bar_top) * tick / max(vmax, 1e-12)
        draw.line((bar_left + bar_width, y, bar_left + bar_width + 4, y), fill="black")
        draw.text((bar_left + bar_width + 6, y), text, fill="black", font=font, anchor="lm")
    caption = Image.new("RGB", (label_length + 4, font_size + 6), "white")
    ImageDraw.Draw(caption).text((2, 2), label, fill="black", font=font)
    caption = caption.rotate(90, expand=True)
    canvas.paste(caption, (caption_left, max(top, top + (panel_height - caption.height) // 2)))
    return np.asarray(canvas)


def _font(size):
    """(font, whether it draws σ): DejaVu Sans, matplotlib's font, found without importing matplotlib;
    else Pillow's own font, which has no σ."""
    import importlib.util

    from PIL import ImageFont

    spec = importlib.util.find_spec("matplotlib")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        try:
            return ImageFont.truetype(f"{folder}/mpl-data/fonts/ttf/DejaVuSans.ttf", size), True
        except OSError:
            continue
    return ImageFont.load_default(size=size), False
