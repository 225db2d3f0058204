"""Park'17 speed: seconds per stage and in total for one photo, end to end.

    python -m dmenet.bench park17 [--image PHOTO] [--weights DHDE_model.caffemodel] [--repeats 3]

Without --image it uses scikit-image's bundled "coffee" photo resized to 640×512 (the official sample's
size); without --weights (or $DMENET_PARK17_WEIGHTS) the classifier has random weights, which changes
the labels but not the work done. Prints the best run's seconds per stage, the total, the CPU time of
that run, the ratio to the official code's time (106–202 s per photo under GNU Octave on 2 shared
cores, PARK17.md §14) and the process's peak resident memory. When the photo is one of the official
samples and ../shared/data/park17_reference holds its run, it also prints the error of the dense map
(propagation) and of the final map against the official ones.
"""
import argparse
import pathlib
import resource
import time

import numpy as np

from dmenet.bench import SHARED_DATA
from dmenet.cli.runtime import onednn_for_methods, quiet_start

DEFAULT_SIZE = (512, 640)
OFFICIAL_SECONDS = (106.0, 202.0)  # PARK17.md §14: one 640×512 photo under Octave, 2 shared cores
REFERENCE_DIR = SHARED_DATA / "park17_reference"


def _accuracy(photo_name, photo, classifier):
    """Lines comparing our dense and final maps with the official run of this photo, if there is one."""
    path = REFERENCE_DIR / f"{pathlib.Path(photo_name).stem}.npz"
    if not path.is_file():
        return []
    from dmenet.park17.pipeline import estimate_park17

    with np.load(path) as archive:
        reference = {key: archive[key] for key in ("image_rgb_u8", "edgMap", "dnsImg", "rstImg")}
    if not np.array_equal(reference["image_rgb_u8"], photo):
        return []
    result = estimate_park17(photo, classifier, keep_intermediates=True)
    dense = np.abs(result.intermediates["dnsImg"].astype(np.float64) - reference["dnsImg"])
    final = np.abs(result.sigma.astype(np.float64) - reference["rstImg"])
    return [f"vs the official run ({path.name}): dense map max |Δσ| {dense.max():.1e} px (mean {dense.mean():.1e}); "
            f"final map median |Δσ| {np.median(final):.1e} px, mean {final.mean():.1e}, "
            f"{100 * np.mean(final > 0.01):.2f} % of pixels beyond 0.01 px"]


def _photo(path):
    if path:
        from dmenet.files.images import read_image

        return np.clip(np.round(read_image(path) * 255.0), 0, 255).astype(np.uint8), str(path)
    from skimage.data import coffee
    from skimage.transform import resize

    photo = resize(coffee(), DEFAULT_SIZE, anti_aliasing=True, preserve_range=True)
    return np.clip(np.round(photo), 0, 255).astype(np.uint8), "skimage coffee resized to 640×512"


def _classifier(weights):
    import os

    from dmenet.park17.network import build_patch_classifier
    from dmenet.weights.park17 import load_park17_classifier

    weights = weights or os.environ.get("DMENET_PARK17_WEIGHTS")
    if weights:
        return load_park17_classifier(weights), weights
    return build_patch_classifier(), "random weights (timing only)"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", help="photo to time (default: a bundled 640×512 photo)")
    parser.add_argument("--weights", help="DHDE_model.caffemodel or a converted .weights.h5")
    parser.add_argument("--repeats", type=int, default=3, help="runs; the fastest is reported (default: %(default)s)")
    args = parser.parse_args(argv)
    quiet_start()
    onednn_for_methods(["park17"])  # as infer.py and evaluate.py run it
    from dmenet.cli.runtime import device_description
    from dmenet.park17.pipeline import estimate_park17

    photo, photo_name = _photo(args.image)
    classifier, weights_name = _classifier(args.weights)
    print(device_description())
    print(f"photo: {photo_name} ({photo.shape[1]}×{photo.shape[0]}); weights: {weights_name}")
    estimate_park17(photo[:64, :64], classifier)  # compiles the classifier once, outside the timing
    best = None
    for _ in range(max(1, args.repeats)):
        wall, cpu = time.perf_counter(), time.process_time()
        result = estimate_park17(photo, classifier)
        run = (time.perf_counter() - wall, time.process_time() - cpu, result.stage_seconds)
        if best is None or run[0] < best[0]:
            best = run
    total, cpu, stages = best
    for name, seconds in stages.items():
        print(f"  {name:<26s} {seconds:7.2f} s")
    print(f"  {'total':<26s} {total:7.2f} s  (CPU {cpu:.2f} s; best of {max(1, args.repeats)}); official "
          f"{OFFICIAL_SECONDS[0]:.0f}–{OFFICIAL_SECONDS[1]:.0f} s → {OFFICIAL_SECONDS[0] / total:.0f}–{OFFICIAL_SECONDS[1] / total:.0f}× faster")
    for line in _accuracy(photo_name, photo, classifier):
        print(line)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0
