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
  # an array of 4 jobs (SLURM --array=0-3 / Kubernetes indexed job), one shared output folder
  python data/make_syndof.py --pairs pairs.txt --out syndof/ --shard $SLURM_ARRAY_TASK_ID/4
  # check a finished dataset: every sample present, readable and in range; what to remake
  python data/make_syndof.py --verify --out syndof/ [--remove-broken]

Output: image/, blur_map/ (16-bit, value = sigma_px * 10), blur_map_norm/, blur_map_binary/,
depth_decomposed/, params/<stem>.json and manifest.json. Re-running the same command skips finished
samples. A pair that fails is skipped and reported (--strict stops at the first failure instead).
Exit code: 0 all samples done (or the dataset verified), 1 some failed, 2 nothing done.
"""
import argparse
import sys

from dmenet.cli.runtime import quiet_start
from dmenet.files.images import ImageReadError
from dmenet.syndof.depth_io import INVALID_POLICIES, DepthConversion, DepthError, pair_files, read_pairs_file
from dmenet.syndof.generator import DEFAULT_MAX_COC
from dmenet.syndof.procedural import write_procedural_dataset
from dmenet.syndof.verify import remove_samples, verify_dataset
from dmenet.syndof.writer import SyndofJobError, parse_shard, write_dataset


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
    scale = parser.add_argument_group("batches and clusters")
    scale.add_argument("--strict", action="store_true", help="stop at the first sample that fails (default: skip it, report it, exit 1)")
    scale.add_argument("--shard", metavar="K/N", help="make only shard K of N (K from 0): N jobs with the same command and "
                       "output write disjoint parts that together equal one unsharded run")
    scale.add_argument("--verify", action="store_true", help="check the dataset in --out (every sample present, readable, "
                       "labels in range) and list what to remake; with --shard, only that shard's samples")
    scale.add_argument("--remove-broken", action="store_true", help="with --verify: delete the broken samples' files, so "
                       "re-running the generating command remakes exactly them")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", action="store_true", help="keep library start-up logs")
    args = parser.parse_args(argv)
    chosen = [args.procedural is not None, args.pairs is not None, args.images is not None or args.depths is not None]
    if args.remove_broken and not args.verify:
        parser.error("--remove-broken goes with --verify")
    if args.shard is not None:
        try:
            args.shard = parse_shard(args.shard)
        except SyndofJobError as error:
            parser.error(str(error))
    if args.verify:
        if any(chosen):
            parser.error("--verify checks an existing --out folder; give no input options with it")
        return args
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
    quiet_start(args.verbose)
    try:
        if args.verify:
            return verify(args)
        return generate(args)
    except (DepthError, ImageReadError, SyndofJobError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


VIEWING_NOTE = ("to look at the maps, open blur_map_norm/ (8-bit, σ relative to each image's maximum) or blur_map_binary/; "
                "blur_map/ holds σ × 10 as 16-bit data, which image viewers show as almost black")


def generate(args):
    shard_note = f" (shard {args.shard[0]}/{args.shard[1]})" if args.shard else ""
    if args.procedural is not None:
        stems = write_procedural_dataset(args.out, args.procedural, seed=args.seed, image_size=tuple(args.size),
                                         max_coc=args.max_coc, workers=args.workers, progress=not args.quiet, shard=args.shard)
        print(f"{len(stems)} samples in {args.out}{shard_note}")
        print(VIEWING_NOTE)
        return 0
    conversion = DepthConversion(
        scale=args.depth_scale, disparity=args.disparity, focal_px=args.focal_px, baseline_mm=args.baseline_mm,
        invalid_values=tuple(args.invalid_value), max_depth_mm=args.max_depth_mm, invalid_policy=args.invalid,
    )
    if args.pairs:
        triples = read_pairs_file(args.pairs)
        pairs, scales = [(image, depth) for image, depth, _ in triples], [scale for _, _, scale in triples]
    else:
        pairs, scales = pair_files(args.images, args.depths), None
    report = write_dataset(pairs, args.out, per_image=args.per_image, seed=args.seed, max_coc=args.max_coc,
                           conversion=conversion, workers=args.workers, max_side=args.max_side, scales=scales,
                           progress=not args.quiet, strict=args.strict, shard=args.shard)
    done, failed = len(report.stems), len(report.failures)
    print(f"{done} of {done + failed} samples in {args.out}{shard_note}")
    if done:
        print(VIEWING_NOTE)
    warning = report.layer_warning()
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    for line in report.failure_lines():
        print(f"failed: {line}", file=sys.stderr)
    if failed:
        print(f"{failed} sample{'s' if failed > 1 else ''} failed; fix or remove those pairs and re-run the same command "
              "(finished samples are skipped)", file=sys.stderr)
    return 0 if failed == 0 else (1 if done else 2)


def verify(args):
    report = verify_dataset(args.out, workers=args.workers, shard=args.shard)
    if not report.has_manifest:
        print(f"note: {args.out} has no manifest.json (written by older versions), so only samples with at least one "
              "file left can be checked", file=sys.stderr)
    broken = report.broken
    print(f"{len(report.expected) - len(broken)} of {len(report.expected)} samples complete and sound in {args.out}")
    if report.unlisted:
        print(f"note: {len(report.unlisted)} samples are not in the manifest (made by another command?): "
              + ", ".join(report.unlisted[:10]) + (" …" if len(report.unlisted) > 10 else ""), file=sys.stderr)
    for stem in broken:
        print(f"broken: {stem}: " + "; ".join(report.problems[stem]), file=sys.stderr)
    if not broken:
        return 0
    if args.remove_broken:
        remove_samples(args.out, broken)
        print(f"removed the files of {len(broken)} broken samples; re-run the command that made the dataset to remake them")
    else:
        print("to remake them: re-run with --verify --remove-broken, then re-run the command that made the dataset "
              "(it makes only the missing samples)")
    print("rerun: " + " ".join(broken))
    return 1


if __name__ == "__main__":
    sys.exit(main())
