#!/usr/bin/env python
"""Train DMENet (B with D, C, S) — paper defaults; see README "Training".

  python train.py --demo                                  # minutes on a CPU, no downloads
  python train.py --data-root datasets --run-dir runs/bdcs --vgg19-weights vgg19_notop.h5
  python train.py --syndof DIR --real-images DIR --real-masks DIR --unlabelled DIR --mode BD

Re-running the same command resumes from the run directory's last checkpoint.
"""
import argparse
import sys

from dmenet.training.config import TrainConfig, add_config_arguments, config_values, dataset_root_paths


def parse_args(argv=None):
    """Every TrainConfig field as an option (dest = field name), plus the demo and output switches."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", action="store_true", help="short run on generated SYNDOF scenes (+ ../shared/data/cuhk_train if present)")
    p.add_argument("--demo-steps", type=int, default=40, help="training steps of --demo (default 40)")
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
    from dmenet.runtime import device_description, quiet_start

    quiet_start(args.verbose)
    from dmenet.datasets import DatasetError
    from dmenet.training.runner import ConfigMismatchError, TrainingDivergedError, train
    from dmenet.weights import WeightsUnavailableError

    print(device_description())
    try:
        if args.demo:
            from dmenet.training.demo import run_demo

            run_demo(getattr(args, "run_dir", "runs/demo"), getattr(args, "vgg19_weights", ""),
                     getattr(args, "content_random", False), args.demo_steps, progress=not args.no_progress)
            return 0
        config = config_from_args(args)
        if config.crop_size % 16:
            raise SystemExit(f"train.py: --crop-size must be a multiple of 16, not {config.crop_size}")
        summary = train(config, progress=not args.no_progress)
        print(f"trained B saved to {summary['blur_net']} (step {summary['step']}/{summary['total_steps']})")
        return 0
    except WeightsUnavailableError as error:
        print(f"train.py: {error}\nWithout ImageNet weights: --no-imagenet starts B's encoder from random weights "
              "(and needs --content-random or a mode without C).", file=sys.stderr)
        return 1
    except (DatasetError, TrainingDivergedError, ConfigMismatchError, ValueError) as error:
        print(f"train.py: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
