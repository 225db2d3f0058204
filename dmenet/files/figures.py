"""Pictures of defocus maps: a colour map with a σ scale bar, side-by-side sheets, and the figure plumbing.

Figures are ``matplotlib.figure.Figure`` objects rendered straight to files, never pyplot: no
backend is selected and no global matplotlib state changes, so the library can be used inside
notebooks and GUIs.
"""
import numpy as np

from dmenet.files.images import atomic_path

COLORMAP = "inferno"
MAX_FIGURE_PIXELS = 1600  # long side of a panel; the lossless σ map keeps full resolution


def new_figure(nrows=1, ncols=1, figsize=None, dpi=100, **subplot_options):
    """(figure, axes) like ``pyplot.subplots``, without pyplot's global figure manager."""
    from matplotlib.figure import Figure

    layout = subplot_options.pop("layout", None)
    figure = Figure(figsize=figsize, dpi=dpi, layout=layout)
    return figure, figure.subplots(nrows, ncols, **subplot_options)


def save_figure(figure, path, **savefig_options):
    """Write a figure as PNG atomically (``savefig`` options such as dpi pass through)."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", **savefig_options)


def _save(figure, path):
    save_figure(figure, path, bbox_inches="tight", pad_inches=0.05)


def _panel_inches(shape, dpi=100):
    height, width = shape[:2]
    scale = min(1.0, MAX_FIGURE_PIXELS / max(height, width))
    return width * scale / dpi, height * scale / dpi


def save_sigma_colormap(path, sigma, vmax=None, title=None):
    """σ map in colour with a labelled scale bar (σ in pixels), drawn with Pillow (``dmenet.files.colormap``)."""
    from dmenet.files.colormap import sigma_picture
    from dmenet.files.images import write_png

    vmax = float(vmax if vmax is not None else max(float(np.max(sigma)), 1e-6))
    write_png(path, sigma_picture(sigma, vmax, title=title, max_side=MAX_FIGURE_PIXELS))


def save_side_by_side(path, image, sigma, mask=None, vmax=None, title=None, extras=None):
    """Photo | σ map (with scale bar) | optional binary focus mask | optional extra panels, in one
    figure (rows of three when there are more than three panels).

    `extras`: {title: (array, imshow options)}, e.g. the applications' all-in-focus or magnified
    photo, or a depth map with its colour map.
    """
    extras = dict(extras or {})
    panels = (3 if mask is not None else 2) + len(extras)
    columns = panels if panels <= 3 else 3
    rows = -(-panels // columns)
    width, height = _panel_inches(sigma.shape)
    figure, axes = new_figure(rows, columns, figsize=(columns * width + 1.2, rows * (height + 0.4)), squeeze=False)
    axes = axes.ravel()
    axes[0].imshow(np.clip(image, 0, 1))
    axes[0].set_title("input", fontsize=9)
    vmax = float(vmax if vmax is not None else max(float(np.max(sigma)), 1e-6))
    shown = axes[1].imshow(sigma, cmap=COLORMAP, vmin=0.0, vmax=vmax)
    axes[1].set_title("defocus σ (px)", fontsize=9)
    figure.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.02)
    if mask is not None:
        axes[2].imshow(mask, cmap="gray", vmin=0, vmax=1)
        axes[2].set_title("blurred (white)", fontsize=9)
    for axis, (name, (array, options)) in zip(axes[panels - len(extras):], extras.items()):
        shown = axis.imshow(np.clip(array, 0, 1) if np.ndim(array) == 3 else array, **options)
        axis.set_title(name, fontsize=9)
        if np.ndim(array) == 2 and options.get("cmap") not in (None, "gray"):
            figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.02)
    for axis in axes:
        axis.set_axis_off()
    if mask is not None:  # framed: its white (blurred) part would vanish into the page
        axes[2].set_axis_on()
        axes[2].set_xticks([])
        axes[2].set_yticks([])
    if title:
        figure.suptitle(title, fontsize=10)
    _save(figure, path)


def save_method_comparison(path, image, maps, limits=None, title=None):
    """Photo | one σ map per method, each with its own scale bar (the methods' σ ranges differ).

    Args:
        path: the PNG to write.
        image: H×W×3 photo in [0, 1].
        maps: {method name: H×W σ in pixels}, in display order.
        limits: {method name: top of its colour scale in px} (default: each map's maximum).
        title: figure title.
    """
    limits = limits or {}
    width, height = _panel_inches(image.shape)
    panels = 1 + len(maps)
    figure, axes = new_figure(1, panels, figsize=(panels * (width + 0.6), height + 0.5))
    axes[0].imshow(np.clip(image, 0, 1))
    axes[0].set_title("input", fontsize=9)
    for axis, (name, sigma) in zip(axes[1:], maps.items()):
        vmax = float(limits.get(name) or max(float(np.max(sigma)), 1e-6))
        shown = axis.imshow(sigma, cmap=COLORMAP, vmin=0.0, vmax=vmax)
        axis.set_title(f"{name}: σ (px), mean {float(np.mean(sigma)):.2f}", fontsize=9)
        figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.02)
    for axis in axes:
        axis.set_axis_off()
    if title:
        figure.suptitle(title, fontsize=10)
    _save(figure, path)
