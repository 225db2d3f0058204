"""Estimate defocus maps for your photos.

    python infer.py images/*.jpg --weights dmenet.weights.h5
    python infer.py photos/ --weights DMENet_BDCS.npz --mask-threshold 1.0 --figure
    python infer.py --convert-official DMENet_BDCS.npz --output dmenet_official.weights.h5

For each photo it writes, into --output:
  NAME_sigma.png    lossless 16-bit σ map: σ in pixels = value / 1000 (see --png-scale)
  NAME_defocus.png  colour picture of the map with a σ scale bar
  NAME_sigma.npy    float32 σ in pixels (--npy)
  NAME_mask.png     255 where σ > threshold, i.e. out of focus (--mask-threshold)
  NAME_figure.png   photo | map | mask side by side (--figure)
and summary.json with the unit of every file and the files that could not be read.
Exit code: 0 all photos done, 1 some failed, 2 nothing could be done.
"""
import argparse
import sys

import dmenet  # noqa: F401  (sets the Keras backend)
from dmenet.batch_inference import DEFAULT_PNG_SCALE, OutputOptions, collect_inputs, run_inference
from dmenet.inference import DEFAULT_OVERLAP, DEFAULT_TILE


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Estimate per-pixel defocus blur (Gaussian σ in pixels) with DMENet.",
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="*", help="image files, folders or glob patterns")
    parser.add_argument("--weights", help="our .weights.h5 checkpoint or the official DMENet_BDCS.npz (default: $DMENET_WEIGHTS)")
    parser.add_argument("--output", "-o", default="outputs/infer", help="output folder (default: %(default)s)")
    parser.add_argument("--npy", action="store_true", help="also write float32 σ maps as .npy")
    parser.add_argument("--mask-threshold", type=float, metavar="SIGMA", help="write a binary focus mask: blurred where σ > SIGMA px")
    parser.add_argument("--figure", action="store_true", help="write a side-by-side figure per photo")
    parser.add_argument("--no-colormap", action="store_true", help="skip the colour visualisation")
    parser.add_argument("--vmax", type=float, help="top of the colour scale in σ px (default: the model's σ range)")
    parser.add_argument("--png-scale", type=float, default=DEFAULT_PNG_SCALE, help="16-bit PNG stores σ × this (default: %(default)g)")
    parser.add_argument("--max-side", type=int, help="shrink photos whose long side exceeds this before inference; σ is rescaled to full size")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE, help="tile size for large photos, bounds memory (default: %(default)s)")
    parser.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="tile overlap in pixels (default: %(default)s)")
    parser.add_argument("--convert-official", metavar="NPZ", help="convert the official checkpoint to our format (write it to --output) and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from dmenet.checkpoints import convert_official
    from dmenet.inference import DefocusPredictor
    from dmenet.weights import WeightsMismatchError, WeightsUnavailableError

    try:
        if args.convert_official:
            if not args.output.endswith(".weights.h5"):
                print("error: with --convert-official, --output must name a file ending in .weights.h5", file=sys.stderr)
                return 2
            print(f"wrote {convert_official(args.convert_official, args.output)}")
            return 0
        if not args.inputs:
            print("error: no input images given (try: python infer.py photos/*.jpg --weights W)", file=sys.stderr)
            return 2
        paths, problems = collect_inputs(args.inputs)
        for problem in problems:
            print(f"warning: {problem}", file=sys.stderr)
        if not paths:
            print("error: none of the inputs is an image file", file=sys.stderr)
            return 2
        predictor = DefocusPredictor.from_weights(args.weights, max_side=args.max_side, tile=args.tile, overlap=args.overlap)
    except (WeightsUnavailableError, WeightsMismatchError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    options = OutputOptions(
        png_scale=args.png_scale,
        write_npy=args.npy,
        write_colormap=not args.no_colormap,
        mask_threshold=args.mask_threshold,
        write_figure=args.figure,
        vmax=args.vmax,
    )
    summary = run_inference(paths, predictor, args.output, options, progress=not args.quiet)
    done, failed = len(summary["images"]), len(summary["failures"]) + len(problems)
    print(f"{done} of {done + len(summary['failures'])} images written to {args.output} ({predictor.encoding.description})")
    for failure in summary["failures"]:
        print(f"failed: {failure['error']}", file=sys.stderr)
    return 0 if failed == 0 else (1 if done else 2)


if __name__ == "__main__":
    sys.exit(main())
