"""Building blocks of a self-contained HTML page: every picture is a base64 PNG data URI, so one file
holds the whole report and opens offline in any browser (nothing is fetched, no script runs).
"""
import base64
import html
import io
import pathlib

import numpy as np

from dmenet.files.colormap import colorize
from dmenet.files.figures import COLORMAP
from dmenet.files.images import atomic_path

THUMBNAIL_SIDE = 320  # long side of a photo or map in a report: enough to judge, small enough to scroll

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; } h3 { font-size: 1em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; } td.name, th.name { text-align: left; }
td.failed { color: #a00; text-align: center; }
.row { display: flex; flex-wrap: wrap; gap: 0.6em; align-items: flex-start; margin: 0.6em 0 1.2em; }
figure { margin: 0; display: table; } figcaption { display: table-caption; caption-side: bottom; font-size: 0.8em; }
img { display: block; border: 1px solid #ccc; }
.row img { height: 220px; width: auto; }  /* a photo and its maps at one size; small maps enlarged */
.curves { display: flex; flex-wrap: wrap; gap: 1em; } .note { color: #555; font-size: 0.85em; }
.error { color: #a00; } code { background: #f4f4f4; padding: 0 0.2em; }
"""


def escape(text):
    """Text safe to place between HTML tags or in an attribute."""
    return html.escape(str(text), quote=True)


def png_bytes(array):
    """uint8 H×W, H×W×3 or H×W×4 pixels → PNG file bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def data_uri(data, mime="image/png"):
    """File bytes → a ``data:`` URI."""
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def thumbnail(array, max_side=THUMBNAIL_SIDE):
    """A float [0, 1] or uint8 picture (H×W or H×W×3) shrunk to `max_side` (never enlarged), as uint8."""
    from PIL import Image

    array = np.asarray(array)
    if array.dtype != np.uint8:
        array = np.round(np.clip(np.asarray(array, np.float64), 0.0, 1.0) * 255).astype(np.uint8)
    height, width = array.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        array = np.asarray(Image.fromarray(array).resize(size, Image.Resampling.LANCZOS))
    return array


def map_uri(values, vmax, vmin=0.0, max_side=THUMBNAIL_SIDE):
    """A map shrunk for the page (area-averaged values, not colours), coloured, as a data URI."""
    from PIL import Image

    values = np.asarray(values, np.float32)
    height, width = values.shape
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        values = np.asarray(Image.fromarray(values).resize(size, Image.Resampling.BOX))
    return data_uri(png_bytes(colorize(values, vmax, vmin)))


def photo_uri(image, max_side=THUMBNAIL_SIDE):
    """A photo (float [0, 1] or uint8) shrunk for the page, as a data URI."""
    return data_uri(png_bytes(thumbnail(image, max_side)))


def file_uri(path, max_side=THUMBNAIL_SIDE):
    """An image file on disk (any format read_image takes), shrunk for the page, as a data URI."""
    from dmenet.files.images import read_image

    return photo_uri(read_image(path), max_side)


def figure_uri(figure, dpi=100):
    """A matplotlib Figure rendered to PNG, as a data URI."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return data_uri(buffer.getvalue())


def colorbar_uri(vmax, label, vmin=0.0, cmap=COLORMAP):
    """A horizontal colour bar with ticks, naming what the colours mean."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from dmenet.files.figures import new_figure

    figure, axis = new_figure(figsize=(4.0, 0.55))
    mappable = ScalarMappable(norm=Normalize(vmin, vmax), cmap=colormaps[cmap])
    figure.colorbar(mappable, cax=axis, orientation="horizontal").set_label(label, fontsize=8)
    axis.tick_params(labelsize=7)
    return figure_uri(figure)


def image_tag(uri, alt, caption=None):
    """<figure> with an <img> and an optional caption."""
    text = f'<figure><img src="{uri}" alt="{escape(alt)}">'
    if caption:
        text += f"<figcaption>{escape(caption)}</figcaption>"
    return text + "</figure>"


def table(header_rows, rows, name_columns=1):
    """An HTML table. `header_rows`: lists of (text, colspan); `rows`: lists of cells, a cell being text
    or (text, css class). The first `name_columns` cells of each row are left-aligned names."""
    parts = ["<table>", "<thead>"]
    for header in header_rows:
        cells = "".join(f'<th colspan="{span}"{" class=name" if i < name_columns and span == 1 else ""}>{escape(text)}</th>'
                        for i, (text, span) in enumerate(header))
        parts.append(f"<tr>{cells}</tr>")
    parts.append("</thead><tbody>")
    for row in rows:
        cells = []
        for index, cell in enumerate(row):
            text, css = cell if isinstance(cell, tuple) else (cell, "name" if index < name_columns else None)
            cells.append(f"<td{f' class={css}' if css else ''}>{escape(text)}</td>")
        parts.append(f"<tr>{''.join(cells)}</tr>")
    parts.append("</tbody></table>")
    return "\n".join(parts)


def page(title, body):
    """A whole HTML document around `body` (already HTML)."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{escape(title)}</title><style>{STYLE}</style></head>\n'
            f"<body>\n<h1>{escape(title)}</h1>\n{body}\n</body></html>\n")


def write_page(path, title, body):
    """Write the page atomically; returns its path."""
    path = pathlib.Path(path)
    with atomic_path(path) as temporary:
        temporary.write_text(page(title, body), encoding="utf-8")
    return path
