"""Estimate defocus maps for your photos.

    python infer.py images/*.jpg --weights dmenet.weights.pretrained.h5
    python infer.py photos/ --weights DMENet_BDCS.npz --mask-threshold 1.0 --figure
    python infer.py --convert-official DMENet_BDCS.npz --output dmenet_official.weights.h5
    python infer.py photos/ --method park17 [--weights DHDE_model.caffemodel]     # Park et al. 2017
    python infer.py photos/ --method zhuo11 [--zhuo11-lambda 0.001]             # Zhuo & Sim 2011 (no network)
    python infer.py photos/ --weights dmenet.weights.pretrained.h5 --compare-park17 DHDE_model.caffemodel  # both, side by side
    python infer.py photos/ --method park17 --all-in-focus --magnify 2 --depth --figure   # what the map is for
    python infer.py photos/ --sigma-maps outputs/infer --magnify 2 -o outputs/apps          # maps made earlier: no network
    python infer.py photos/ --method park17 --mask-threshold 1 --report      # + report.html to look at them all
    python infer.py --demo                                                   # real maps of bundled photos, no download

For each photo it writes, into --output:
  NAME_sigma.png    lossless 16-bit σ map: σ in pixels = value / 1000 (smaller scale when σ > 65.5 px;
                    the file's dmenet:unit text and summary.json state it; fixed with --png-scale)
  NAME_defocus.png  colour picture of the map with a σ scale bar
  NAME_sigma.npy    float32 σ in pixels (--npy)
  NAME_mask.png     255 where σ > threshold, i.e. out of focus (--mask-threshold SIGMA or otsu)
  NAME_allinfocus.png, NAME_magnified.png, NAME_depth.png (+ .npy with --npy): the applications (options above)
  NAME_figure.png   photo | map | mask | applications side by side (--figure)
  report.html       every photo with its maps, mask and other outputs in one self-contained page (--report)
and summary.json with the unit of every file, the precision used and the files that failed.
Exit code: 0 all photos done, 1 some failed, 2 nothing could be done, 130 interrupted (Ctrl-C).
TensorFlow's own log lines are hidden; --verbose (or DMENET_VERBOSE=1) shows them.
"""
import argparse
import os
import sys
import threading

from dmenet.cli import applications
from dmenet.cli.methods import METHODS, METHODS_HELP, NETWORK_FREE_METHODS, add_zhuo11_options, zhuo11_options
from dmenet.cli.runtime import kernel_cache_writable, onednn_for_methods, quiet_start, skip_final_garbage_collection
from dmenet.inference.precision import PRECISIONS
from dmenet.inference.tiling import DEFAULT_MARGIN, DEFAULT_TILE, DEFAULT_TILE_BATCH
from dmenet.inference.xla import XLA_CHOICES

INTERRUPTED_EXIT = 130
STOP_GRACE_SECONDS = 1.5  # how long Ctrl-C waits for the current tile before leaving anyway


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Estimate per-pixel defocus blur (Gaussian σ in pixels) with DMENet, Park et al. 2017 or Zhuo & Sim 2011.",
        epilog=__doc__.split("\n\n", 1)[1] + "\n" + METHODS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="*", help="image files, folders or glob patterns")
    parser.add_argument("--method", choices=METHODS, default="dmenet", help="dmenet (default), park17 or zhuo11; see below")
    parser.add_argument("--weights", help="dmenet: our .weights.h5 checkpoint or the official DMENet_BDCS.npz (default: "
                                          "$DMENET_WEIGHTS); park17: DHDE_model.caffemodel or a .weights.h5 from train.py "
                                          "--method park17 (default: $DMENET_PARK17_WEIGHTS, else the official file, "
                                          "downloaded once and checked)")
    parser.add_argument("--compare-park17", nargs="?", const="", metavar="WEIGHTS",
                        help="with --method dmenet: also run Park'17 (these weights, or the default ones) and write "
                             "NAME_park17_* plus a NAME_compare.png figure of both maps")
    parser.add_argument("--output", "-o", default=None, help="output folder (default: outputs/infer; outputs/demo with --demo)")
    parser.add_argument("--npy", action="store_true", help="also write float32 σ maps as .npy")
    parser.add_argument("--mask-threshold", metavar="SIGMA|otsu",
                        help="write a binary focus mask: blurred where σ > SIGMA px, or where σ exceeds each photo's Otsu threshold")
    parser.add_argument("--figure", action="store_true", help="write a side-by-side figure per photo")
    parser.add_argument("--no-colormap", action="store_true", help="skip the colour visualisation")
    parser.add_argument("--vmax", type=float, help="top of the colour scale in σ px (default: the largest σ the model can express at the scale used)")
    parser.add_argument("--png-scale", type=float, help="16-bit PNG stores σ × this (default: 1000, or the largest of 500, 200, 100, … at which σ fits)")
    parser.add_argument("--max-side", type=int, help="shrink photos whose long side exceeds this before inference; σ is rescaled to full size")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="arithmetic of B and of Park'17's classifier: bf16 is about 2× faster where the CPU (AVX512-BF16/AMX) or GPU (compute "
                             "capability ≥ 8.0) has it natively; auto picks it there, fp32 elsewhere (default: auto)")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE, help="largest window side B sees at once, bounds memory (default: %(default)s)")
    parser.add_argument("--margin", type=int, default=DEFAULT_MARGIN, help="context pixels computed around each tile and discarded (default: %(default)s)")
    parser.add_argument("--tile-batch", type=int, default=DEFAULT_TILE_BATCH, help="tiles per call of B; more uses more memory (default: %(default)s)")
    parser.add_argument("--xla", choices=XLA_CHOICES, default="auto",
                        help="compile B with XLA, once per photo size: faster for fp32 on an AVX2 CPU, slower than the "
                             "streamlined graph on AVX-512 CPUs (auto: on for fp32 on CPUs without AVX-512 only; default: auto)")
    parser.add_argument("--report", action="store_true",
                        help="also write OUTPUT/report.html: every photo, its σ map, mask and application outputs in one page "
                             "(with --sigma-maps: the maps read from DIR)")
    parser.add_argument("--demo", action="store_true",
                        help="no inputs needed: Zhuo & Sim 2011 (and Park'17 when its weights are at hand) on photos scikit-image "
                             "bundles, plus all-in-focus and magnification where available, ending in OUTPUT/report.html")
    parser.add_argument("--convert-official", metavar="NPZ", help="convert the official checkpoint to our format (write it to --output) and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines")
    add_zhuo11_options(parser)
    applications.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.output is None:
        args.output = "outputs/demo" if args.demo else "outputs/infer"
    return args


def _error(message):
    print(f"error: {message}", file=sys.stderr)
    return 2


def _run_interruptibly(work):
    """Run `work(stop)` in a worker thread so that Ctrl-C is handled at once, not after a tile.

    TensorFlow holds the main thread inside one call of B for up to a minute per tile; Python can
    only raise KeyboardInterrupt between bytecodes, so the main thread waits here instead.
    Returns work's result, or None when interrupted (after asking it to stop).
    """
    stop = threading.Event()
    outcome = {}

    def target():
        try:
            outcome["result"] = work(stop.is_set)
        except BaseException as error:  # re-raised in the main thread
            outcome["error"] = error

    worker = threading.Thread(target=target, name="dmenet-inference", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    except KeyboardInterrupt:
        stop.set()
        worker.join(STOP_GRACE_SECONDS)
        return None
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _apply_to_sigma_maps(args, options):
    """--sigma-maps: masks and applications from maps computed earlier; no network, no TensorFlow."""
    from dmenet.inference.batch import MAPS_SUMMARY, collect_inputs, run_on_sigma_maps

    if not args.inputs:
        return _error("no input photos given: --sigma-maps needs the photos the maps belong to (matched by name)")
    try:
        maps, require_stated_unit = applications.sigma_map_folder(args.sigma_maps, args.sigma_unit)
    except ValueError as error:
        return _error(error)
    paths, problems, skipped = collect_inputs(args.inputs)
    for line in problems + skipped:
        print(f"warning: {line}", file=sys.stderr)
    if not paths:
        return _error("none of the inputs is an image file; pass photos (.jpg, .png, …) or folders holding them")
    summary = run_on_sigma_maps(paths, maps, args.output, options, progress=not args.quiet, require_stated_unit=require_stated_unit)
    done, failed = len(summary["images"]), len(summary["failures"])
    print(f"{done} of {done + failed} photos' applications written to {args.output} (σ maps from {args.sigma_maps})")
    if args.report:
        from dmenet.reports.photos import write_sigma_maps_report

        print(f"wrote {write_sigma_maps_report(args.output)}")
    if failed:
        print(f"{failed} failed (see the lines above and {MAPS_SUMMARY})", file=sys.stderr)
    return 0 if failed + len(problems) == 0 else (1 if done else 2)


def _demo(args):
    """--demo: bundled photos, real maps, report.html (dmenet.reports.demo)."""
    if args.inputs:
        return _error("--demo uses photos scikit-image bundles; leave out the inputs")
    from dmenet.reports.demo import run_demo

    try:
        report = run_demo(args.output, progress=not args.quiet)
    except (ValueError, OSError, RuntimeError) as error:
        return _error(error)
    print(f"wrote {report}")
    return 0


def main(argv=None):
    args = parse_args(argv)
    from dmenet.inference.batch import OutputOptions

    try:  # every application's value is checked before TensorFlow or a model loads
        output_options = OutputOptions(
            png_scale=args.png_scale, write_npy=args.npy, write_colormap=not args.no_colormap,
            mask_threshold=applications.mask_threshold(args.mask_threshold), write_figure=args.figure, vmax=args.vmax,
            applications=applications.application_options(args),
        )
    except ValueError as error:
        return _error(error)
    kernel_cache_writable()
    if args.sigma_maps is not None:
        return _apply_to_sigma_maps(args, output_options)
    quiet_start(args.verbose)
    if args.demo:
        from dmenet.reports.demo import DEMO_METHODS

        onednn_for_methods(DEMO_METHODS)
    else:
        onednn_for_methods([args.method] + (["park17"] if args.compare_park17 is not None else []))
    from dmenet.api import load_predictor
    from dmenet.cli.runtime import cpu_description, device_description
    from dmenet.inference.batch import collect_inputs, run_inference
    from dmenet.weights.checkpoints import convert_official
    from dmenet.weights.pretrained import WeightsMismatchError, WeightsUnavailableError

    if args.demo:
        return _demo(args)
    try:
        if args.convert_official:
            if not args.output.endswith(".weights.h5"):
                return _error("with --convert-official, --output must name a file ending in .weights.h5")
            print(f"wrote {convert_official(args.convert_official, args.output)}")
            return 0
        if args.compare_park17 is not None and args.method != "dmenet":
            return _error("--compare-park17 goes with --method dmenet (it adds Park'17 beside DMENet)")
        if not args.inputs:
            return _error("no input images given (try: python infer.py photos/*.jpg --weights W)")
        paths, problems, skipped = collect_inputs(args.inputs)
        for line in problems + skipped:
            print(f"warning: {line}", file=sys.stderr)
        if not paths:
            return _error("none of the inputs is an image file; pass photos (.jpg, .png, …) or folders holding them")
        method_options = {
            "zhuo11": zhuo11_options(args), "park17": {},
            "dmenet": {"tile": args.tile, "margin": args.margin, "tile_batch": args.tile_batch, "xla": args.xla},
        }[args.method]
        predictor = load_predictor(args.method, args.weights, precision=args.precision, max_side=args.max_side, **method_options)
        companion = None
        if args.compare_park17 is not None:
            companion = load_predictor("park17", args.compare_park17 or None, precision=args.precision, max_side=args.max_side)
    except (WeightsUnavailableError, WeightsMismatchError, ValueError, OSError) as error:
        return _error(error)
    compiled = f"; XLA ({predictor.xla_reason})" if predictor.xla else ""
    # a method without a network must not pay for starting TensorFlow just to name the device
    device = cpu_description() if args.method in NETWORK_FREE_METHODS and companion is None else device_description()
    print(f"{device}; precision {predictor.precision} ({predictor.precision_reason}){compiled}", flush=True)

    summary = _run_interruptibly(
        lambda stop: run_inference(paths, predictor, args.output, output_options, progress=not args.quiet, stop=stop,
                                   compare_with=companion)
    )
    if summary is None or summary["interrupted"]:
        print(f"\ninterrupted: photos finished so far are in {args.output} (summary.json lists them)", file=sys.stderr)
        sys.stderr.flush()
        sys.stdout.flush()
        # The worker may still be inside a call of B; leave without waiting for it.
        os._exit(INTERRUPTED_EXIT)
    done, failed = len(summary["images"]), len(summary["failures"])
    print(f"{done} of {done + failed} images written to {args.output} ({predictor.encoding.description})")
    if done and not args.no_colormap:
        print("look at NAME_defocus.png (colour, with a σ scale); NAME_sigma.png holds σ × 1000 as 16-bit data, "
              "which image viewers show as almost black")
    if args.report:
        from dmenet.reports.photos import write_photo_report

        print(f"wrote {write_photo_report(args.output)}")
    if failed:
        print(f"{failed} failed (see the lines above and summary.json)", file=sys.stderr)
    return 0 if failed + len(problems) == 0 else (1 if done else 2)


def run(argv=None):
    """main() plus a clean exit when Ctrl-C comes while TensorFlow or the weights load."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        print("\ninterrupted before any photo was processed", file=sys.stderr)
        return INTERRUPTED_EXIT


def command(argv=None):
    """``infer.py`` and ``dmenet-infer``: run(), then an exit that skips the final garbage collections.

    Tests and library users call run() instead, which leaves the collector as it is.
    """
    code = run(argv)
    skip_final_garbage_collection()
    return code


if __name__ == "__main__":
    sys.exit(command())
