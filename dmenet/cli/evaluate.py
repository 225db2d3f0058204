"""Score defocus / blur maps on CUHK, DUT, RTF, SYNDOF or any folder of masks, with the paper's protocols.

Run DMENet (--weights), Park'17 (--method park17) or Zhuo & Sim (--method zhuo11) on the set, or score maps any method wrote
(--predictions, several folders overlay in one PR plot). Writes OUT/summary.json (numbers + protocol), OUT/per_image_<run>.csv,
OUT/pr_curve.png (binary sets) and OUT/sheet_<run>.png (best and worst images).

Compare methods on several benchmarks in one run (--compare): a table in the papers' layout
(OUT/comparison.md, .csv, .json), all PR curves on one plot per set, and OUT/report.html.

Examples:
  python evaluate.py --dataset cuhk --data-root CUHK --weights blur_net.weights.h5
  python evaluate.py --dataset cuhk --data-root CUHK --method park17 --weights DHDE_model.caffemodel
  python evaluate.py --dataset cuhk --data-root CUHK --method zhuo11
  python evaluate.py --dataset cuhk --data-root CUHK --split all --predictions out/ours out/btbnet --pred-unit score
  python evaluate.py --dataset rtf --data-root RTF --predictions rtf_maps --pred-unit official
  python evaluate.py --compare dmenet=blur_net.weights.h5 park17 hifst:score=maps/hifst \
      --benchmark cuhk=CUHK rtf=RTF --out compare_out
"""
import argparse
import pathlib
import sys

from dmenet.cli.methods import METHODS, METHODS_HELP, NETWORK_FREE_METHODS, add_zhuo11_options, zhuo11_options
from dmenet.inference.xla import XLA_CHOICES


def parse_args(argv):
    from dmenet.evaluation.datasets import BENCHMARKS, POLARITIES, SPLITS
    from dmenet.evaluation.predictions import UNITS
    from dmenet.units import DEFAULT_MAX_COC, sigma_max_for

    parser = argparse.ArgumentParser(description=__doc__, epilog=METHODS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("dataset")
    data.add_argument("--dataset", choices=BENCHMARKS,
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

    compare = parser.add_argument_group("comparing methods (--compare)")
    compare.add_argument("--compare", nargs="+", metavar="METHOD",
                         help="every method to score, in table order: dmenet=WEIGHTS, park17[=WEIGHTS] or another method "
                              "this project runs (e.g. zhuo11), or NAME[:UNIT]=DIR for another method's maps (UNIT: "
                              "sigma, normalized, official, score; DIR may hold one sub-folder per benchmark)")
    compare.add_argument("--benchmark", nargs="+", action="extend", default=[], metavar="KIND[:SPLIT]=ROOT",
                         help="benchmarks to compare on, e.g. cuhk=CUHK cuhk:btbnet_test_100.txt=CUHK rtf=RTF "
                              "syndof=SYNDOF_TEST (SPLIT: a split name or a file of image stems); --dataset adds one more")
    compare.add_argument("--report-photos", type=int, default=1, metavar="N",
                         help="report.html shows the N best, N median and N worst photos of each benchmark (default 1)")

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

    args.run_method = bool(args.weights) or args.method != "dmenet"
    if args.compare:
        _check_compare_args(parser, args)
    else:
        if args.benchmark:
            parser.error("--benchmark goes with --compare (a single run takes --dataset and --data-root)")
        if args.dataset is None:
            parser.error("give --dataset (or --compare with --benchmark)")
        if not args.run_method and not args.predictions:
            parser.error("give --weights (or --method park17 / zhuo11) and/or --predictions")
        if args.method in NETWORK_FREE_METHODS and args.weights:
            parser.error(f"--method {args.method} takes no --weights (it has none)")
    if args.dataset is not None and args.data_root is None and args.gt is None:
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
    if args.sheet_count < 0 or args.report_photos < 0:
        parser.error("--sheet-count and --report-photos cannot be negative")
    if args.out is None:
        args.out = pathlib.Path("eval_results") / ("compare" if args.compare else args.dataset)
    return args


def _check_compare_args(parser, args):
    """--compare names every method itself; parse its methods and benchmarks (errors as usage errors)."""
    from dmenet.evaluation.compare import BenchmarkSpec, parse_benchmark, parse_method

    single = [flag for flag, given in (("--method", args.method != "dmenet"), ("--weights", args.weights),
                                        ("--predictions", args.predictions), ("--labels", args.labels)) if given]
    if single:
        parser.error(f"{', '.join(single)} go with a single run; with --compare name every method there "
                     "(dmenet=WEIGHTS, park17[=WEIGHTS], NAME[:UNIT]=DIR)")
    try:
        args.methods = [parse_method(text, METHODS) for text in args.compare]
        args.benchmarks = [parse_benchmark(text) for text in args.benchmark]
    except ValueError as error:
        parser.error(str(error))
    if args.dataset is not None:
        args.benchmarks.append(BenchmarkSpec(args.dataset, args.data_root, split=args.split, split_file=args.split_file,
                                             images=args.images, gt=args.gt))
    elif args.split or args.split_file or args.images or args.gt or args.data_root:
        parser.error("--data-root, --split, --split-file, --images and --gt describe --dataset; with --benchmark write "
                     "the split into it: KIND:SPLIT=ROOT")
    if not args.benchmarks:
        parser.error("--compare needs benchmarks: --benchmark KIND=ROOT ... (or --dataset and --data-root)")
    labels = [benchmark.label for benchmark in args.benchmarks]
    if len(set(labels)) != len(labels):
        parser.error(f"a benchmark is named twice ({', '.join(labels)})")
    args.run_method = any(spec.runs for spec in args.methods)


def build_dataset(args):
    from dmenet.evaluation.datasets import open_benchmark

    options = {"split_file": args.split_file, "require_images": args.run_method}
    if args.split is not None:
        options["split"] = args.split
    return open_benchmark(args.dataset, args.data_root, args.images, args.gt, args.mask_polarity, args.max_coc, **options)


def build_sources(args, dataset):
    """Prediction folders to score; a method run first writes its σ maps to OUT/predictions_<name>/."""
    from dmenet.evaluation.compare import folder_source, load_method, method_source

    sources = []
    if args.run_method:
        predictor, description, label = load_method(args.method, args.weights, args.precision, args.max_side, args.xla,
                                                    compare_options(args).method_options.get(args.method))
        sources.append(method_source(predictor, description, dataset.samples, args.out / f"predictions_{label}", label,
                                     args.method, progress=not args.no_progress))
    labels = args.labels or [None] * len(args.predictions)
    for folder, label in zip(args.predictions, labels):
        sources.append(folder_source(folder, label, args.pred_unit, compare_options(args)))
    names = [source.label for source in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"two runs share a label ({', '.join(names)}); name them with --labels")
    return sources


def compare_options(args):
    """The protocol and map-reading flags as ``CompareOptions`` (one place for single runs and --compare)."""
    from dmenet.evaluation.compare import CompareOptions

    return CompareOptions(threshold=args.threshold, beta_squared=args.beta_squared, polarity=args.mask_polarity,
                          max_coc=args.max_coc, precision=args.precision, max_side=args.max_side, xla=args.xla,
                          pred_scale=args.pred_scale, pred_suffix=args.pred_suffix, sigma_max=args.sigma_max,
                          invert=args.invert, size_mismatch=args.size_mismatch, match_by=args.match_by,
                          method_options={"zhuo11": zhuo11_options(args)})


def run_compare(args, argv):
    """--compare: every method on every benchmark; exit 0 all scored, 1 some failed, 2 none scored."""
    from dmenet.evaluation.compare import run_comparison
    from dmenet.evaluation.compare_tables import write_tables
    from dmenet.reports.comparison import write_comparison_report

    device = None
    if args.run_method:
        from dmenet.cli.runtime import cpu_description, device_description

        network_free = all(spec.method in NETWORK_FREE_METHODS for spec in args.methods if spec.runs)
        device = cpu_description() if network_free else device_description()  # network-free: no TensorFlow
        print(device)
    comparison = run_comparison(args.methods, args.benchmarks, args.out, compare_options(args), progress=not args.no_progress,
                                command=" ".join(["evaluate.py", *argv]), device=device)
    write_tables(comparison, args.out)
    report = write_comparison_report(args.out / "report.html", comparison, args.out, args.report_photos)
    print(f"wrote {args.out}/comparison.md, .csv, .json and {report}")
    failed, total = len(comparison.failures), len(comparison.entries)
    if failed:
        print(f"{failed} of {total} method × benchmark runs failed (see the error lines above and comparison.md)", file=sys.stderr)
    return 0 if not failed else (1 if failed < total else 2)


def run(args, argv):
    if args.compare:
        return run_compare(args, argv)
    from dmenet.evaluation import plots, report, runner
    from dmenet.evaluation.compare import safe_name

    dataset = build_dataset(args)
    print(f"{dataset.name}: {len(dataset.samples)} images (split {dataset.split})")
    sources = build_sources(args, dataset)
    results = []
    for source in sources:
        result = runner.evaluate(dataset, source, threshold=args.threshold, beta_squared=args.beta_squared,
                                 progress=not args.no_progress)
        results.append(result)
        print(report.format_result(result))
        report.write_per_image_csv(args.out / f"per_image_{safe_name(result.label)}.csv", result)
        plots.plot_sheet(args.out / f"sheet_{safe_name(result.label)}.png", result, dataset, source, args.sheet_count)
    if dataset.task == "binary":
        plots.plot_pr_curves(args.out / "pr_curve.png", results)
    report.write_summary(args.out / "summary.json", results, command=" ".join(["evaluate.py", *argv]))
    print(f"wrote {args.out}/summary.json")
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)  # imports no TensorFlow
    from dmenet.cli.runtime import cpu_description, device_description, kernel_cache_writable, onednn_for_methods, quiet_start

    quiet_start(args.verbose)
    onednn_for_methods([spec.method for spec in args.methods] if args.compare else [args.method])
    kernel_cache_writable()
    if args.run_method and not args.compare:
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
