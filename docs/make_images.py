"""Make the pictures of the documentation: docs/images/front.png, the README's first picture.

A photo that ships with scikit-image (Chelsea the cat: sharp face, defocused background), its
defocus map from Park et al. 2017 with the official weights, and the mask of pixels whose σ exceeds
the threshold, side by side. Run from the repository root:

    DMENET_PARK17_WEIGHTS=DHDE_model.caffemodel python docs/make_images.py

(without the variable the official weights are downloaded once; ~20 s on one CPU core).
"""
import argparse
import pathlib

import numpy as np

IMAGES = pathlib.Path(__file__).resolve().parent / "images"
MASK_THRESHOLD = 1.0  # σ in pixels; Park'17's classes span 0.5–2 px


def chelsea_defocus(weights=None):
    """(photo, σ): scikit-image's Chelsea (300×451 uint8 RGB) and Park'17's σ map of it in px.

    ``weights``: DHDE_model.caffemodel; None uses $DMENET_PARK17_WEIGHTS, else downloads the official file.
    The other documentation scripts (make_application_images.py) take their photo and map from here.
    """
    import skimage.data

    import dmenet

    photo = skimage.data.chelsea()
    return photo, dmenet.estimate_defocus(photo, weights=weights, method="park17")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="DHDE_model.caffemodel (default: $DMENET_PARK17_WEIGHTS, else download)")
    parser.add_argument("--out", type=pathlib.Path, default=IMAGES / "front.png")
    args = parser.parse_args(argv)

    from dmenet.files.figures import save_side_by_side

    photo, sigma = chelsea_defocus(args.weights)
    save_side_by_side(args.out, photo / 255.0, sigma, mask=sigma > MASK_THRESHOLD,
                      title=f"Park et al. 2017, official weights: σ map and σ > {MASK_THRESHOLD:g} px")
    print(f"{args.out}: σ {float(sigma.min()):.2f}–{float(sigma.max()):.2f} px, mean {float(np.mean(sigma)):.2f}, "
          f"{float(np.mean(sigma > MASK_THRESHOLD)):.0%} above {MASK_THRESHOLD:g} px")


if __name__ == "__main__":
    main()
