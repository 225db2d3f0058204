#!/usr/bin/env python
"""Make a SYNDOF synthetic-defocus dataset from RGB + depth pairs, or from procedural scenes.

Examples:
  # your own RGB-D data (depth PNGs in mm), 5 defocused samples per image, all cores
  python data/make_syndof.py --images rgb/ --depths depth/ --out syndof/ --per-image 5
  # stereo disparity maps instead of depth
  python data/make_syndof.py --images left/ --depths disp/ --disparity --focal-px 3740 --baseline-mm 160 --out syndof/
  # explicit pairs (with per-pair scale to mm), e.g. the SYNDOF sample inputs
  python data/make_syndof.py --pairs pairs.txt --out syndof/
  # training data without any download
  python data/make_syndof.py --procedural 200 --out syndof_procedural/

Output: image/, blur_map/ (16-bit, value = sigma_px * 10), blur_map_norm/, blur_map_binary/,
depth_decomposed/ and params/<stem>.json. Re-running the same command skips finished samples.
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from dmenet.image_io import ImageReadError  # noqa: E402
from dmenet.syndof.writer import write_dataset  # noqa: E402
from dmenet.syndof.depth_io import INVALID_POLICIES, DepthConversion, DepthError, pair_files, read_pairs_file  # noqa: E402
from dmenet.syndof.generator import DEFAULT_MAX_COC  # noqa: E402
from dmenet.syndof.procedural import write_procedural_dataset  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_argument_group("input (choose one)")
    source.add_argument("--images", help="image file or folder (searched recursively)")
    source.add_argument("--depths", help="depth file or folder; files pair with images by relative path without extension")
    source.add_argument("--pairs", help="text file of 'image depth [scale]' lines, paths relative to it")
    source.add_argument("--procedural", type=int, metavar="N", help="make N procedural RGB-D scenes instead")
    parser.add_argument("--out", required=True, help="output folder (official SYNDOF layout)")
    parser.add_argument("--per-image", type=int, default=1, metavar="K", help="samples (random cameras) per image (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical files (default 0)")
    parser.add_argument("--max-coc", type=int, default=DEFAULT_MAX_COC, help="largest CoC in px, c_max of the paper (default 29: sigma_max 7 px)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--max-side", type=int, default=None, help="downscale inputs so the longer side is at most this")
    parser.add_argument("--size", type=int, nargs=2, default=(256, 320), metavar=("H", "W"), help="procedural image size (default 256 320)")
    depth = parser.add_argument_group("depth conversion")
    depth.add_argument("--depth-scale", type=float, default=1.0, help="multiply stored values by this to get mm (cm: 10, m: 1000; default 1)")
    depth.add_argument("--disparity", action="store_true", help="stored values are disparities in px (after --depth-scale)")
    depth.add_argument("--focal-px", type=float, help="focal length in px, for --disparity")
    depth.add_argument("--baseline-mm", type=float, help="stereo baseline in mm, for --disparity")
    depth.add_argument("--invalid-value", type=float, action="append", default=[], help="stored value meaning 'no depth' (repeatable; 0/NaN/inf always are)")
    depth.add_argument("--max-depth-mm", type=float, help="depths beyond this are invalid (e.g. sky)")
    depth.add_argument("--invalid", choices=INVALID_POLICIES, default="nearest",
                       help="invalid pixels take the nearest valid depth, the farthest one (sky), or stop with an error (default nearest)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    chosen = [args.procedural is not None, args.pairs is not None, args.images is not None or args.depths is not None]
    if sum(chosen) != 1:
        parser.error("give exactly one input: --images with --depths, --pairs, or --procedural")
    if chosen[2] and not (args.images and args.depths):
        parser.error("--images and --depths go together")
    if args.per_image < 1:
        parser.error("--per-image must be at least 1")
    if args.max_coc < 3:
        parser.error("--max-coc must be at least 3")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.procedural is not None:
            stems = write_procedural_dataset(args.out, args.procedural, seed=args.seed, image_size=tuple(args.size),
                                             max_coc=args.max_coc, workers=args.workers, progress=not args.quiet)
        else:
            conversion = DepthConversion(
                scale=args.depth_scale, disparity=args.disparity, focal_px=args.focal_px, baseline_mm=args.baseline_mm,
                invalid_values=tuple(args.invalid_value), max_depth_mm=args.max_depth_mm, invalid_policy=args.invalid,
            )
            if args.pairs:
                triples = read_pairs_file(args.pairs)
                pairs, scales = [(image, depth) for image, depth, _ in triples], [scale for _, _, scale in triples]
            else:
                pairs, scales = pair_files(args.images, args.depths), None
            stems = write_dataset(pairs, args.out, per_image=args.per_image, seed=args.seed, max_coc=args.max_coc,
                                  conversion=conversion, workers=args.workers, max_side=args.max_side, scales=scales,
                                  progress=not args.quiet)
    except (DepthError, ImageReadError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{len(stems)} samples in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
