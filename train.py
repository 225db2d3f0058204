#!/usr/bin/env python
"""Train DMENet (B with D, C, S) — paper defaults; see README "Training".

  python train.py --demo                                  # minutes on a CPU, no downloads
  python train.py --data-root datasets --run-dir runs/bdcs --vgg19-weights vgg19_notop.h5
  python train.py --syndof DIR --real-images DIR --real-masks DIR --unlabelled DIR --mode BD

Re-running the same command resumes from the run directory's last checkpoint.
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dmenet.training.config import TrainConfig, dataset_root_paths  # noqa: E402

DEFAULTS = TrainConfig()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", action="store_true", help="short run on generated SYNDOF scenes (+ ../shared/data/cuhk_train if present)")
    p.add_argument("--demo-steps", type=int, default=40, help="training steps of --demo (default 40)")
    p.add_argument("--run-dir", default=None, help="checkpoints, logs, config and the exported B (default runs/dmenet, runs/demo)")
    data = p.add_argument_group("data")
    data.add_argument("--data-root", help="root in the original layout: [train/]SYNDOF, [train/]CUHK/{image,gt}, [train/]Flickr")
    data.add_argument("--syndof", help="SYNDOF folder (image/, blur_map/)")
    data.add_argument("--syndof-labels", choices=("sigma10", "coc15"), default=DEFAULTS.syndof_label_format,
                      help="sigma10: maps hold σ·10 (current SYNDOF); coc15: the older set read /15 (official checkpoint)")
    data.add_argument("--max-coc", type=int, default=DEFAULTS.max_coc, help="SYNDOF's max CoC; σ_max = (max_coc − 1)/4 (default 29)")
    data.add_argument("--real-images", help="real defocused photos (CUHK image/)")
    data.add_argument("--real-masks", help="their binary blur masks (CUHK gt/)")
    data.add_argument("--mask-polarity", choices=("255-blurred", "255-sharp"), default=DEFAULTS.mask_polarity,
                      help="which mask value means blurred (CUHK: 255-blurred; DUT: 255-sharp)")
    data.add_argument("--unlabelled", help="real photos without labels (Flickr); default: the real images")
    model = p.add_argument_group("model and losses")
    model.add_argument("--mode", default=DEFAULTS.mode, help="B, BD, BDC or BDCS (default, the full model)")
    model.add_argument("--vgg19-weights", default="", help="Keras VGG19 notop .h5 for B's encoder and C (else Keras' cache / download)")
    model.add_argument("--no-imagenet", action="store_true", help="start B's encoder from random weights (much worse; for experiments)")
    model.add_argument("--content-random", action="store_true", help="use C with random VGG weights (tests/demos only)")
    for name, default in (("aux", 1.0), ("content", 1e-4), ("sharpness", 2e-2), ("adversarial", 1e-3), ("d-lr", 1.0)):
        model.add_argument(f"--lambda-{name}", type=float, default=default, help=f"default {default:g}")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="global batch per stream (default 3)")
    opt.add_argument("--crop-size", type=int, default=DEFAULTS.crop_size, help="square crops, multiple of 16 (default 240)")
    opt.add_argument("--learning-rate", type=float, default=DEFAULTS.learning_rate)
    opt.add_argument("--beta1", type=float, default=DEFAULTS.beta1)
    opt.add_argument("--lr-decay", type=float, default=DEFAULTS.lr_decay, help="× every --decay-every epochs (default 0.8)")
    opt.add_argument("--decay-every", type=int, default=DEFAULTS.decay_every_epochs, help="epochs (default 20)")
    opt.add_argument("--epochs", type=int, default=DEFAULTS.epochs)
    opt.add_argument("--steps-per-epoch", type=int, default=0, help="default: SYNDOF images // batch")
    opt.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (overrides --epochs)")
    opt.add_argument("--pretrain-epochs", type=int, default=0, help="B-only MSE phase first (batch --pretrain-batch-size)")
    opt.add_argument("--pretrain-batch-size", type=int, default=DEFAULTS.pretrain_batch_size)
    opt.add_argument("--pretrain-max-steps", type=int, default=0)
    opt.add_argument("--seed", type=int, default=0)
    book = p.add_argument_group("bookkeeping and hardware")
    book.add_argument("--checkpoint-every", type=int, default=DEFAULTS.checkpoint_every, help="steps")
    book.add_argument("--keep-checkpoints", type=int, default=DEFAULTS.keep_checkpoints)
    book.add_argument("--tensorboard-every", type=int, default=DEFAULTS.tensorboard_every, help="steps")
    book.add_argument("--sample-every", type=int, default=DEFAULTS.sample_every, help="steps")
    book.add_argument("--strategy", choices=("auto", "default", "mirrored", "multiworker"), default="auto")
    book.add_argument("--mixed-precision", action="store_true", help="float16 compute with loss scaling (GPUs)")
    book.add_argument("--xla", action="store_true", help="compile the step with XLA")
    book.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def config_from_args(args):
    paths = dataset_root_paths(args.data_root) if args.data_root else {}
    explicit = {"syndof_dir": args.syndof, "real_images_dir": args.real_images, "real_masks_dir": args.real_masks,
                "unlabelled_dir": args.unlabelled}
    paths.update({k: v for k, v in explicit.items() if v})
    if not paths.get("syndof_dir"):
        raise SystemExit("train.py: give --data-root or --syndof (and the real sets), or use --demo")
    return TrainConfig(
        run_dir=args.run_dir or DEFAULTS.run_dir, syndof_label_format=args.syndof_labels, max_coc=args.max_coc,
        mask_polarity=args.mask_polarity, mode=args.mode.upper(), lambda_aux=args.lambda_aux,
        lambda_content=args.lambda_content, lambda_sharpness=args.lambda_sharpness,
        lambda_adversarial=args.lambda_adversarial, lambda_d_lr=args.lambda_d_lr, imagenet=not args.no_imagenet,
        content_random=args.content_random, vgg19_weights=args.vgg19_weights, batch_size=args.batch_size,
        crop_size=args.crop_size, learning_rate=args.learning_rate, beta1=args.beta1, lr_decay=args.lr_decay,
        decay_every_epochs=args.decay_every, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
        max_steps=args.max_steps, pretrain_epochs=args.pretrain_epochs, pretrain_batch_size=args.pretrain_batch_size,
        pretrain_max_steps=args.pretrain_max_steps, seed=args.seed, checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints, tensorboard_every=args.tensorboard_every, sample_every=args.sample_every,
        strategy=args.strategy, mixed_precision=args.mixed_precision, jit_compile=args.xla,
        **{k: v for k, v in paths.items() if v},
    )


def main(argv=None):
    args = parse_args(argv)
    from dmenet.pipelines import DatasetError
    from dmenet.training.loop import ConfigMismatchError, TrainingDivergedError, train
    from dmenet.weights import WeightsUnavailableError

    try:
        if args.demo:
            from dmenet.training.demo import run_demo

            run_demo(args.run_dir or "runs/demo", args.vgg19_weights, args.content_random, args.demo_steps,
                     progress=not args.no_progress)
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
