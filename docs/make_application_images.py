"""Make the pictures of docs/applications.md from scikit-image's Chelsea and Park'17's map of it.

The photo and its map are those of the README's picture (`chelsea_defocus` in make_images.py): a
photo that ships with scikit-image, with a sharp face and a defocused background, and the σ map of
Park et al. 2017 with the official weights. Run from the repository root:

    python docs/make_application_images.py --weights DHDE_model.caffemodel

(without --weights: $DMENET_PARK17_WEIGHTS, else the official file is downloaded once). It writes
docs/images/applications_magnify.jpg (photo, σ map, magnified ×2, ×4, ×4 of σ − min σ),
docs/images/applications_depth_mask.jpg (relative inverse depth, the Otsu mask, the fixed 1 px mask of
the README's picture) and docs/images/applications_allinfocus.jpg (a detail of the photo and of its
all-in-focus version), and prints the numbers the page quotes: σ range, Otsu threshold, the masks'
shares and agreement, and the CPU and wall time of each application.
"""
import argparse
import io
import pathlib
import time

import numpy as np
from make_images import MASK_THRESHOLD, chelsea_defocus

IMAGES = pathlib.Path(__file__).resolve().parent / "images"
DETAIL = (slice(70, 250), slice(181, 451))  # rows, columns shown enlarged: the right eye, whiskers and the blurred room behind
JPEG_QUALITY = 85
DPI = 90  # each panel near the photo's own 451 px width, each picture well under 300 KB


def _save_jpeg(figure, path):
    from PIL import Image

    from dmenet.files.images import atomic_path

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight", dpi=DPI)
    with atomic_path(path) as temporary:
        Image.open(buffer).convert("RGB").save(temporary, format="JPEG", quality=JPEG_QUALITY)
    print(f"{path}: {path.stat().st_size / 1000:.0f} kB")


def _timed(label, function, *args, **kwargs):
    """function(*args, **kwargs), printing its wall and CPU seconds (all threads of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    print(f"{label}: {time.perf_counter() - wall:.1f} s wall, {time.process_time() - cpu:.1f} s CPU")
    return result


def _frame_only(axis):
    """No ticks but the frame kept: a white (blurred) mask would otherwise vanish into the page."""
    axis.set_xticks([])
    axis.set_yticks([])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="DHDE_model.caffemodel (default: $DMENET_PARK17_WEIGHTS, else download)")
    args = parser.parse_args(argv)

    import dmenet
    from dmenet.files.figures import new_figure

    photo, sigma = _timed("Park'17 σ map", chelsea_defocus, args.weights)
    height, width = sigma.shape
    print(f"Chelsea {width}×{height}: σ {sigma.min():.2f}–{sigma.max():.2f} px, mean {sigma.mean():.2f}, "
          f"{np.unique(sigma).size} distinct values")

    magnified = {}
    for title, map_, factor in [("σ, 2", sigma, 2.0), ("σ, 4", sigma, 4.0), ("σ − σ.min(), 4", sigma - sigma.min(), 4.0)]:
        magnified[title] = _timed(f"magnify_defocus(photo, {title})", dmenet.magnify_defocus, photo, map_, factor)
    figure, axes = new_figure(2, 3, figsize=(19.2, 9.4))
    axes = axes.ravel()
    axes[0].imshow(photo)
    axes[0].set_title("photo (scikit-image's chelsea)")
    shown = axes[1].imshow(sigma, cmap="inferno", vmin=0, vmax=2)
    axes[1].set_title("Park'17 σ map (px), official weights")
    figure.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.02)
    axes[2].set_visible(False)
    for axis, (title, image) in zip(axes[3:], magnified.items()):
        axis.imshow(image)
        axis.set_title(f"magnify_defocus(photo, {title})")
    for axis in axes:
        axis.set_axis_off()
    _save_jpeg(figure, IMAGES / "applications_magnify.jpg")

    mask, used = dmenet.blur_mask(sigma, "otsu")
    fixed, _ = dmenet.blur_mask(sigma, MASK_THRESHOLD)
    print(f"Otsu: σ > {used:.3f} px, {mask.mean():.1%} blurred; σ > {MASK_THRESHOLD:g} px: {fixed.mean():.1%} blurred; "
          f"the two masks agree on {np.mean(mask == fixed):.1%} of pixels")
    figure, axes = new_figure(1, 3, figsize=(19.2, 4.6))
    shown = axes[0].imshow(dmenet.depth_from_defocus(sigma), cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("depth_from_defocus(σ) (bright = near)")
    figure.colorbar(shown, ax=axes[0], fraction=0.046, pad=0.02)
    axes[0].set_axis_off()
    axes[1].imshow(mask, cmap="gray", vmin=0, vmax=1)
    axes[1].set_title(f"blur_mask(σ, 'otsu'): σ > {used:.3f} px (white = blurred)")
    axes[2].imshow(fixed, cmap="gray", vmin=0, vmax=1)
    axes[2].set_title(f"blur_mask(σ, {MASK_THRESHOLD:g}): σ > {MASK_THRESHOLD:g} px; agreement {np.mean(mask == fixed):.1%}")
    for axis in axes[1:]:
        _frame_only(axis)
    _save_jpeg(figure, IMAGES / "applications_depth_mask.jpg")

    sharp = _timed("deblur(photo, σ), λ 420", dmenet.deblur, photo, sigma)  # the CUHK preset
    detail = sigma[DETAIL]
    print(f"detail rows {DETAIL[0].start}–{DETAIL[0].stop}, columns {DETAIL[1].start}–{DETAIL[1].stop}: "
          f"σ {detail.min():.2f}–{detail.max():.2f} px, mean {detail.mean():.2f}")
    figure, axes = new_figure(1, 2, figsize=(19.2, 6.8))
    for axis, (title, image) in zip(axes, [("photo (detail)", photo / 255.0), ("dmenet.deblur(photo, σ), λ 420 (detail)", sharp)]):
        axis.imshow(np.clip(image[DETAIL], 0, 1), interpolation="nearest")
        axis.set_title(title)
        axis.set_axis_off()
    _save_jpeg(figure, IMAGES / "applications_allinfocus.jpg")


if __name__ == "__main__":
    main()
