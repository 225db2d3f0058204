"""Make the pictures of docs/applications.md from Park'17's official sample photo and weights.

    python docs/make_application_images.py --data ../shared/data/park17

writes docs/images/applications_magnify.jpg (photo, σ map, magnified ×2, ×4, ×4 of σ − min σ),
docs/images/applications_depth_mask.jpg (relative inverse depth, Otsu mask, the photo's own mask) and
docs/images/applications_allinfocus.jpg (a detail of the photo and of its all-in-focus version), and
prints the numbers the page quotes (σ range, Otsu thresholds and their agreement with the masks).
"""
import argparse
import io
import pathlib

import numpy as np

IMAGES = pathlib.Path(__file__).resolve().parent / "images"
DETAIL = (slice(40, 240), slice(180, 480))  # rows, columns of sample 1 shown enlarged: trees and light behind the dog
JPEG_QUALITY = 85
DPI = 55  # keeps each picture well under 300 KB


def _save_jpeg(figure, path):
    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight", dpi=DPI)
    Image.open(buffer).convert("RGB").save(path, quality=JPEG_QUALITY)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=pathlib.Path, required=True, help="folder with DHDE_model.caffemodel and sample_000N.jpg / _mask.png")
    args = parser.parse_args(argv)

    import dmenet
    from dmenet.files.figures import new_figure
    from dmenet.files.images import read_mask

    predictor = dmenet.load_predictor("park17", args.data / "DHDE_model.caffemodel")
    for number in (1, 2):
        photo = dmenet.read_image(args.data / f"sample_000{number}.jpg")
        sigma = predictor.predict_sigma(photo)
        truth = read_mask(args.data / f"sample_000{number}_mask.png") > 127
        mask, used = dmenet.blur_mask(sigma, "otsu")
        print(f"sample {number}: σ {sigma.min():.2f}–{sigma.max():.2f} px; Otsu σ > {used:.3f} px, agreement with its mask {np.mean(mask == truth):.1%}")
        if number != 1:
            continue
        figure, axes = new_figure(2, 3, figsize=(19.2, 10.6))
        axes = axes.ravel()
        axes[0].imshow(photo)
        axes[0].set_title("photo (Park'17 sample 1, from CUHK)")
        shown = axes[1].imshow(sigma, cmap="inferno", vmin=0, vmax=2)
        axes[1].set_title("Park'17 σ map (px), official weights")
        figure.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.02)
        axes[2].set_visible(False)
        for axis, (title, map_, factor) in zip(axes[3:], [("σ, 2", sigma, 2.0), ("σ, 4", sigma, 4.0), ("σ − σ.min(), 4", sigma - sigma.min(), 4.0)]):
            axis.imshow(dmenet.magnify_defocus(photo, map_, factor))
            axis.set_title(f"magnify_defocus(photo, {title})")
        for axis in axes:
            axis.set_axis_off()
        _save_jpeg(figure, IMAGES / "applications_magnify.jpg")

        figure, axes = new_figure(1, 3, figsize=(19.2, 5.4))
        shown = axes[0].imshow(dmenet.depth_from_defocus(sigma), cmap="gray", vmin=0, vmax=1)
        axes[0].set_title("depth_from_defocus(σ) (bright = near)")
        figure.colorbar(shown, ax=axes[0], fraction=0.046, pad=0.02)
        axes[0].set_axis_off()
        axes[1].imshow(mask, cmap="gray")
        axes[1].set_title(f"blur_mask(σ, 'otsu'): σ > {used:.3f} px (white = blurred)")
        axes[2].imshow(truth, cmap="gray")
        axes[2].set_title(f"the photo's own mask; agreement {np.mean(mask == truth):.1%}")
        for axis in axes[1:]:  # framed: a white mask would vanish into the page
            axis.set_xticks([])
            axis.set_yticks([])
        _save_jpeg(figure, IMAGES / "applications_depth_mask.jpg")

        sharp = dmenet.deblur(photo, sigma)  # λ 420, the CUHK preset
        figure, axes = new_figure(1, 2, figsize=(19.2, 6.8))
        for axis, (title, image) in zip(axes, [("photo (detail)", photo), ("dmenet.deblur(photo, σ), λ 420 (detail)", sharp)]):
            axis.imshow(np.clip(image[DETAIL], 0, 1), interpolation="nearest")
            axis.set_title(title)
            axis.set_axis_off()
        _save_jpeg(figure, IMAGES / "applications_allinfocus.jpg")


if __name__ == "__main__":
    main()
