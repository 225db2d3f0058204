"""Pictures of defocus maps: a colour map with a σ scale bar, and a side-by-side sheet."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dmenet.image_io import atomic_path  # noqa: E402

COLORMAP = "inferno"
MAX_FIGURE_PIXELS = 1600  # long side of a panel; the lossless σ map keeps full resolution


def _save(figure, path):
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", bbox_inches="tight", pad_inches=0.05)
    plt.close(figure)


def _panel_inches(shape, dpi=100):
    height, width = shape[:2]
    scale = min(1.0, MAX_FIGURE_PIXELS / max(height, width))
    return width * scale / dpi, height * scale / dpi


def save_sigma_colormap(path, sigma, vmax=None, title=None):
    """σ map in colour with a labelled scale bar (σ in pixels)."""
    vmax = float(vmax if vmax is not None else max(float(np.max(sigma)), 1e-6))
    width, height = _panel_inches(sigma.shape)
    figure, axis = plt.subplots(figsize=(width + 1.2, height), dpi=100)
    shown = axis.imshow(sigma, cmap=COLORMAP, vmin=0.0, vmax=vmax, interpolation="nearest")
    axis.set_axis_off()
    if title:
        axis.set_title(title, fontsize=9)
    figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.02).set_label("defocus blur σ (pixels)")
    _save(figure, path)


def save_side_by_side(path, image, sigma, mask=None, vmax=None, title=None):
    """Photo | σ map (with scale bar) | optional binary focus mask, in one figure."""
    panels = 3 if mask is not None else 2
    width, height = _panel_inches(sigma.shape)
    figure, axes = plt.subplots(1, panels, figsize=(panels * width + 1.2, height + 0.4), dpi=100)
    axes[0].imshow(np.clip(image, 0, 1))
    axes[0].set_title("input", fontsize=9)
    vmax = float(vmax if vmax is not None else max(float(np.max(sigma)), 1e-6))
    shown = axes[1].imshow(sigma, cmap=COLORMAP, vmin=0.0, vmax=vmax)
    axes[1].set_title("defocus σ (px)", fontsize=9)
    figure.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.02)
    if mask is not None:
        axes[2].imshow(mask, cmap="gray", vmin=0, vmax=1)
        axes[2].set_title("blurred (white)", fontsize=9)
    for axis in axes:
        axis.set_axis_off()
    if title:
        figure.suptitle(title, fontsize=10)
    _save(figure, path)
