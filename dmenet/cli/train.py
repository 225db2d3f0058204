"""Train DMENet (B with D, C, S; paper defaults) or Park et al.'s patch classifier; see docs/training.md.

  python train.py --demo                                  # minutes on a CPU, no downloads
  python train.py --data-root datasets --run-dir runs/bdcs --vgg19-weights vgg19_notop.h5
  python train.py --syndof DIR --real-images DIR --real-masks DIR --unlabelled DIR --mode BD
  python train.py --method park17 --images SHARP_PHOTOS/ --run-dir runs/park17 [--max-steps 20000]
  python train.py --method park17 --demo                  # Park'17 on bundled sharp photos, minutes

Re-running the same command resumes from the run directory's last checkpoint.
"""
import argparse
import sys

from dmenet.cli.methods import METHODS, METHODS_HELP
from dmenet.training.config import TrainConfig, add_config_arguments, config_values, dataset_root_paths


def parse_args(argv=None):
    """Every TrainConfig field as an option (dest = field name), plus the demo and output switches."""
    p = argparse.ArgumentParser(description=__doc__, epilog=METHODS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", choices=METHODS, default="dmenet",
                   help="dmenet: network B with D, C, S on SYNDOF + real photos (default); park17: Park et al.'s "
                        "patch classifier from sharp photos (--images), blurred here at its 11 σ classes")
    p.add_argument("--images", help="park17: folder of sharp photos to train on")
    p.add_argument("--demo", action="store_true", help="short run on data the project makes itself")
    p.add_argument("--demo-steps", type=int, default=None, help="training steps of --demo (default: dmenet 40, park17 1500)")
    p.add_argument("--demo-real", default="../shared/data/cuhk_train",
                   help="dmenet --demo: CUHK-layout folder (image/, gt/) for the real streams, used if present "
                        "(default: %(default)s; else procedural scenes stand in)")
    p.add_argument("--data-root", help="root in the original layout: [train/]SYNDOF, [train/]CUHK/{image,gt}, [train/]Flickr")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="keep TensorFlow's start-up logs")
    add_config_arguments(p)
    return p.parse_args(argv)


def config_from_args(args):
    """TrainConfig from the options given; --data-root fills the folders not named explicitly."""
    values = config_values(args)
    if args.data_root:
        for field, path in dataset_root_paths(args.data_root).items():
            values.setdefault(field, path)
    if not values.get("syndof_dir"):
        raise SystemExit("train.py: give --data-root or --syndof (and the real sets), or use --demo")
    return TrainConfig(**values)


def main(argv=None):
    args = parse_args(argv)  # imports no TensorFlow
    from dmenet.cli.runtime import device_description, quiet_start

    quiet_start(args.verbose)
    from dmenet.datasets import DatasetError
    from dmenet.training.runner import ConfigMismatchError, TrainingDivergedError, WorkerLostError, train
    from dmenet.weights.pretrained import WeightsUnavailableError

    print(device_description())
    try:
        if args.method == "park17":
            return train_park17_from_args(args)
        if args.demo:
            from dmenet.training.demo import run_demo

            run_demo(getattr(args, "run_dir", "runs/demo"), getattr(args, "vgg19_weights", ""),
                     getattr(args, "content_random", False), args.demo_steps or 40, progress=not args.no_progress,
                     real_dir=args.demo_real)
            return 0
        config = config_from_args(args)
        if config.crop_size % 16:
            raise SystemExit(f"train.py: --crop-size must be a multiple of 16, not {config.crop_size}")
        summary = train(config, progress=not args.no_progress)
        if summary["worker"]:
            print(f"worker {summary['worker']} of {summary['workers']} done at step {summary['step']}/{summary['total_steps']}")
        else:
            print(f"trained B saved to {summary['blur_net']} (step {summary['step']}/{summary['total_steps']})")
        return 0
    except WeightsUnavailableError as error:
        print(f"train.py: {error}\nWithout ImageNet weights: --no-imagenet starts B's encoder from random weights "
              "(and needs --content-random or a mode without C).", file=sys.stderr)
        return 1
    except (DatasetError, TrainingDivergedError, ConfigMismatchError, WorkerLostError, ValueError) as error:
        print(f"train.py: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def train_park17_from_args(args):
    """--method park17: the classifier from --images (or the bundled demo photos); exit code."""
    from dmenet.park17.training import Park17TrainingError, train_park17

    run_dir = args.run_dir if args.run_dir != "runs/dmenet" else ("runs/park17_demo" if args.demo else "runs/park17")
    verbose = 0 if args.no_progress else 1
    try:
        if args.demo:
            from dmenet.park17.demo import DEMO_STEPS, run_park17_demo

            summary = run_park17_demo(run_dir, steps=args.demo_steps or DEMO_STEPS, verbose=verbose)
        elif not args.images:
            print("train.py: --method park17 needs --images SHARP_PHOTOS_DIR (or --demo)", file=sys.stderr)
            return 2
        else:
            summary = train_park17(args.images, run_dir, steps=args.max_steps or 20000, seed=args.seed, verbose=verbose)
    except Park17TrainingError as error:
        print(f"train.py: {error}", file=sys.stderr)
        return 1
    last = summary["history"][-1] if summary["history"] else {}
    accuracy = f"; validation accuracy {last['val_accuracy']:.3f}" if "val_accuracy" in last else ""
    print(f"Park'17 classifier saved to {summary['weights']} (step {summary['steps']}{accuracy}); "
          f"use it with: python infer.py PHOTOS --method park17 --weights {summary['weights']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
