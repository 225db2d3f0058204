"""Score defocus / blur maps on CUHK, DUT, RTF, SYNDOF or any folder of masks, with the paper's protocols.

Run DMENet (--weights), Park'17 (--method park17) or Zhuo & Sim (--method zhuo11) on the set, or score maps any method wrote
(--predictions, several folders overlay in one PR plot). Writes OUT/summary.json (numbers + protocol), OUT/per_image_<run>.csv,
OUT/pr_curve.png (binary sets) and OUT/sheet_<run>.png (best and worst images).

Examples:
  python evaluate.py --dataset cuhk --data-root CUHK --weights blur_net.weights.h5
  python evaluate.py --dataset cuhk --data-root CUHK --method park17 --weights DHDE_model.caffemodel
  python evaluate.py --dataset cuhk --data-root CUHK --method zhuo11
  python evaluate.py --dataset cuhk --data-root CUHK --split all --predictions out/ours out/btbnet --pred-unit score
  python evaluate.py --dataset rtf --data-root RTF --predictions rtf_maps --pred-unit official
"""
import argparse
import pathlib
import re
import sys

from dmenet.cli.methods import METHODS, METHODS_HELP, NETWORK_FREE_METHODS, add_zhuo11_options, zhuo11_options
from dmenet.inference.xla import XLA_CHOICES


def parse_args(argv):
    from dmenet.evaluation.datasets import BENCHMARKS, POLARITIES, SPLITS
    from dmenet.evaluation.predictions import UNITS
    from dmenet.units import DEFAULT_MAX_COC, sigma_max_for

    parser = argparse.ArgumentParser(description=__doc__, epilog=METHODS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("dataset")
    data.add_argument("--dataset", required=True, choices=BENCHMARKS,
                      help="cuhk: masks 255 = blurred; dut: 255 = sharp; folder: say --mask-polarity; "
                           "rtf: .mat blurMap radii; syndof: official generator layout")
    data.add_argument("--data-root", type=pathlib.Path,
                      help="dataset folder: image/ + gt/ (cuhk, dut, folder, rtf) or image/ + blur_map/ (syndof)")
    data.add_argument("--images", type=pathlib.Path, help="image folder, overrides DATA_ROOT/image")
    data.add_argument("--gt", type=pathlib.Path, help="ground-truth folder, overrides DATA_ROOT/gt (or blur_map)")
    data.add_argument("--split", choices=SPLITS,
                      help="dmenet-train/-test: CUHK 0001-0504 / 0505-0704 (default for cuhk: dmenet-test; "
                           "otherwise all)")
    data.add_argument("--split-file", type=pathlib.Path,
                      help="text file with one image stem per line (e.g. the BTBNet 604/100 test list)")
    data.add_argument("--mask-polarity", choices=POLARITIES,
                      help="which class the bright mask value marks (cuhk: blurred-white, dut: sharp-white; "
                           "required for folder)")
    data.add_argument("--max-coc", type=int, default=DEFAULT_MAX_COC,
                      help=f"syndof: max circle of confusion (sigma_max = (c-1)/4; default {DEFAULT_MAX_COC})")

    method = parser.add_argument_group("what to score (one or both)")
    method.add_argument("--method", choices=METHODS, default="dmenet",
                        help="which method --weights runs: dmenet (network B), park17 (Park et al. 2017; without "
                             "--weights its official weights are used, from $DMENET_PARK17_WEIGHTS or a checked download) "
                             "or zhuo11 (Zhuo & Sim 2011; no weights)")
    method.add_argument("--weights", help="dmenet: B's checkpoint (.weights.h5 or official .npz); "
                                          "park17: DHDE_model.caffemodel or a .weights.h5 from train.py --method park17")
    method.add_argument("--max-side", type=int, default=None, help="downscale images whose longer side exceeds this before running a method")
    method.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="arithmetic of B or of Park'17's classifier (auto: see dmenet.inference.precision; fp32 where the "
                             "CPU/GPU has no native bf16)")
    method.add_argument("--xla", choices=XLA_CHOICES, default="auto",
                        help="dmenet: compile B with XLA (auto: on for fp32 on CPUs without AVX-512; see dmenet.inference.xla)")
    method.add_argument("--predictions", type=pathlib.Path, nargs="+", default=[], metavar="DIR",
                        help="folders of maps named <stem>[suffix].png/.npy, one run per folder")
    method.add_argument("--labels", nargs="+", help="names of the prediction runs (default: folder names)")
    method.add_argument("--pred-unit", choices=UNITS, default=None,
                        help="meaning of a stored value after /scale: sigma (px), normalized (sigma/sigma_max), "
                             "official (released DMENet output), score (any blur score, binary sets only). "
                             "Default: sigma for .npy maps and infer.py PNGs (their scale is read from the file), "
                             "normalized for other PNGs")
    method.add_argument("--pred-scale", type=float, default=None,
                        help="divide stored values by this (default 255 for 8-bit, 65535 for 16-bit PNG, 1 for .npy; "
                             "10 for SYNDOF-style sigma*10 PNGs)")
    method.add_argument("--pred-suffix", default=None,
                        help="map file name = <stem><suffix>.png|.npy (default: <stem> or infer.py's <stem>_sigma)")
    method.add_argument("--sigma-max", type=float, default=sigma_max_for(DEFAULT_MAX_COC),
                        help="sigma of a 'normalized' value of 1, and the divisor that turns sigma maps into "
                             f"binary scores (default {sigma_max_for(DEFAULT_MAX_COC):g} = SYNDOF max_coc {DEFAULT_MAX_COC})")
    method.add_argument("--invert", action="store_true", help="binary sets: lower map value = more blurred")
    method.add_argument("--size-mismatch", choices=("error", "crop", "resize"), default="error",
                        help="maps of another size than the ground truth: refuse (default), compare the common "
                             "top-left region (the original cropped inputs to multiples of 16), or resize the map "
                             "(bilinear). RTF always crops, as its protocol does")
    method.add_argument("--match-by", choices=("stem", "order"), default="stem",
                        help="pair maps with images by file name, or by sorted position (the original DMENet "
                             "test outputs are 0000.png, 0001.png, ...)")

    protocol = parser.add_argument_group("protocol and output")
    protocol.add_argument("--threshold", type=float, default=0.5,
                          help="fixed threshold for 'accuracy at a given threshold' (the best threshold is always reported)")
    protocol.add_argument("--beta-squared", type=float, default=0.3, help="F-measure beta^2 (0.3 in blur detection)")
    protocol.add_argument("--out", type=pathlib.Path, default=None, help="output folder (default eval_results/<dataset>)")
    protocol.add_argument("--sheet-count", type=int, default=3, help="best and worst images shown on the sheet")
    protocol.add_argument("--no-progress", action="store_true", help="no progress bars")
    protocol.add_argument("--verbose", action="store_true", help="keep TensorFlow's start-up logs")
    add_zhuo11_options(parser)
    args = parser.parse_args(argv)

    args.run_method = bool(args.weights) or args.method in ("park17", "zhuo11")
    if not args.run_method and not args.predictions:
        parser.error("give --weights (or --method park17 / zhuo11) and/or --predictions")
    if args.method == "zhuo11" and args.weights:
        parser.error("--method zhuo11 takes no --weights (it has none)")
    if args.data_root is None and args.gt is None:
        parser.error("give --data-root (or --gt and --images)")
    if args.dataset == "folder" and args.mask_polarity is None:
        parser.error("--dataset folder needs --mask-polarity (blurred-white or sharp-white)")
    if args.labels and len(args.labels) != len(args.predictions):
        parser.error(f"{len(args.labels)} --labels for {len(args.predictions)} --predictions folders")
    if args.dataset in ("rtf", "syndof") and args.pred_unit == "score":
        parser.error("regression sets (rtf, syndof) need maps in sigma, normalized or official units")
    import math

    if not math.isfinite(args.threshold):
        parser.error("--threshold must be a finite number")
    for name in ("beta_squared", "sigma_max"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.sheet_count < 0:
        parser.error("--sheet-count cannot be negative")
    if args.out is None:
        args.out = pathlib.Path("eval_results") / args.dataset
    return args


def build_dataset(args):
    from dmenet.evaluation.datasets import open_benchmark

    options = {"split_file": args.split_file, "require_images": args.run_method}
    if args.split is not None:
        options["split"] = args.split
    return open_benchmark(args.dataset, args.data_root, args.images, args.gt, args.mask_polarity, args.max_coc, **options)


def build_sources(args, dataset):
    """Prediction folders to score; a method run first writes its σ maps to OUT/predictions_<name>/."""
    from dmenet.evaluation.predictions import PredictionFolder, predict_to_folder

    sources = []
    if args.run_method:
        predictor, weights = build_predictor(args)
        if weights is None:  # zhuo11: its parameters say what ran
            description = f"{args.method} {predictor.params}, max_side={args.max_side}"
            label = args.method
        else:
            stat = weights.stat()
            description = (f"{args.method} {weights.resolve()} ({stat.st_size} bytes, mtime {int(stat.st_mtime)}), "
                           f"max_side={args.max_side}, precision={predictor.precision}")
            label = _safe(weights.name if args.method == "dmenet" else f"park17_{weights.name}")
        folder = args.out / f"predictions_{label}"
        sigma_max = predict_to_folder(predictor, dataset.samples, folder, description, progress=not args.no_progress)
        sources.append(PredictionFolder(folder, unit="sigma", sigma_max=sigma_max, label=label))
    labels = args.labels or [None] * len(args.predictions)
    for folder, label in zip(args.predictions, labels):
        sources.append(PredictionFolder(folder, unit=args.pred_unit, scale=args.pred_scale, suffix=args.pred_suffix,
                                        sigma_max=args.sigma_max, invert=args.invert,
                                        size_policy=args.size_mismatch, match=args.match_by, label=label))
    names = [source.label for source in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"two runs share a label ({', '.join(names)}); name them with --labels")
    return sources


def build_predictor(args):
    """(predictor, weights file or None) for --method and --weights."""
    if args.method == "zhuo11":
        from dmenet.api import load_predictor

        return load_predictor("zhuo11", max_side=args.max_side, **zhuo11_options(args)), None
    if args.method == "park17":
        from dmenet.park17.predictor import Park17Predictor
        from dmenet.weights.park17 import resolve_park17_weights

        weights = pathlib.Path(resolve_park17_weights(args.weights))
        return Park17Predictor.from_weights(weights, precision=args.precision, max_side=args.max_side), weights
    from dmenet.inference.tiling import DefocusPredictor

    weights = pathlib.Path(args.weights)
    return DefocusPredictor.from_weights(weights, precision=args.precision, max_side=args.max_side, xla=args.xla), weights


def _safe(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def run(args, argv):
    from dmenet.evaluation import plots, report, runner

    dataset = build_dataset(args)
    print(f"{dataset.name}: {len(dataset.samples)} images (split {dataset.split})")
    sources = build_sources(args, dataset)
    results = []
    for source in sources:
        result = runner.evaluate(dataset, source, threshold=args.threshold, beta_squared=args.beta_squared,
                                 progress=not args.no_progress)
        results.append(result)
        print(report.format_result(result))
        report.write_per_image_csv(args.out / f"per_image_{_safe(result.label)}.csv", result)
        plots.plot_sheet(args.out / f"sheet_{_safe(result.label)}.png", result, dataset, source, args.sheet_count)
    if dataset.task == "binary":
        plots.plot_pr_curves(args.out / "pr_curve.png", results)
    report.write_summary(args.out / "summary.json", results, command=" ".join(["evaluate.py", *argv]))
    print(f"wrote {args.out}/summary.json")
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)  # imports no TensorFlow
    from dmenet.cli.runtime import cpu_description, device_description, quiet_start

    quiet_start(args.verbose)
    if args.run_method:
        print(cpu_description() if args.method in NETWORK_FREE_METHODS else device_description())
    from dmenet.evaluation.datasets import DatasetError
    from dmenet.files.images import ImageReadError

    expected = (DatasetError, ImageReadError, ValueError, OSError)
    try:
        from dmenet.weights.pretrained import WeightsMismatchError, WeightsUnavailableError

        expected += (WeightsMismatchError, WeightsUnavailableError)
    except ImportError:
        pass
    try:
        return run(args, argv)
    except expected as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; predictions written so far are kept and reused by the next run", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
