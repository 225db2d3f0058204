"""`python -m dmenet.bench train`: seconds per training step for each mode, and whether the input
pipeline keeps up.

For every mode (B, BD, BDC, BDCS) `fit` runs the step at the paper's batch and crop (3, 240) on a
real batch read from the pipeline beforehand (so the step is timed alone); the first `fit` call
(tracing) is reported apart. The pipeline alone is
then timed in batches/s, and the ratio pipeline throughput / step throughput says how many times
faster data arrives than the slowest mode consumes it (≥ 5 wanted). C uses random VGG weights
unless ImageNet weights are available: its cost is the same.
"""
import argparse
import os
import pathlib
import tempfile
import time


def _data(args, workdir):
    from dmenet.pipelines import cuhk_set, real_unlabelled_set, syndof_set
    from dmenet.training.demo import find_real_images

    if args.syndof:
        syndof = syndof_set(args.syndof)
    else:
        from dmenet.syndof.procedural import write_procedural_dataset

        folder = pathlib.Path(workdir) / "syndof"
        write_procedural_dataset(folder, args.scenes, seed=0, image_size=(args.crop_size + 16, args.crop_size + 80), progress=False)
        syndof = syndof_set(folder)
    real_root = find_real_images([args.real])
    if real_root is not None:
        real = cuhk_set(real_root)
        unlabelled = real_unlabelled_set(real_root / "image")
        source = str(real_root)
    else:
        from dmenet.pipelines import real_labelled_set

        real = real_labelled_set(pathlib.Path(syndof.images[0]).parent, pathlib.Path(syndof.images[0]).parent.parent / "blur_map_binary")
        unlabelled = real_unlabelled_set(pathlib.Path(syndof.images[0]).parent)
        source = "procedural scenes"
    return syndof, real, unlabelled, source


def time_pipeline(dataset, batches):
    iterator = iter(dataset)
    next(iterator)  # start the workers
    began = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches / (time.perf_counter() - began)


def time_mode(mode, dataset, steps, imagenet_available):
    import keras
    import tensorflow as tf

    from dmenet.training.config import TrainConfig
    from dmenet.training.losses import LossWeights
    from dmenet.training.runner import build_networks, make_optimizer
    from dmenet.training.trainer import DMENetTrainer

    keras.utils.set_random_seed(0)
    config = TrainConfig(mode=mode, imagenet=False, content_random=not imagenet_available)
    blur_net, discriminator, content_net, sharpness_net = build_networks(config)
    trainer = DMENetTrainer(blur_net, discriminator, content_net, sharpness_net, LossWeights.from_config(config))
    trainer.compile(make_optimizer(config, 1000, trainer.global_step),
                    make_optimizer(config, 1000, trainer.global_step) if discriminator else None)
    trainer.build_optimizers()
    batch = tf.data.Dataset.from_tensors(next(iter(dataset))).repeat()  # read first: time the step alone
    began = time.perf_counter()
    trainer.fit(batch, epochs=1, steps_per_epoch=1, verbose=0)
    first = time.perf_counter() - began
    began = time.perf_counter()
    trainer.fit(batch, epochs=1, steps_per_epoch=steps, verbose=0)
    return first, (time.perf_counter() - began) / steps


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dmenet.bench train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="B,BD,BDC,BDCS", help="comma-separated (default all four)")
    from dmenet.training.config import TrainConfig

    paper = TrainConfig()
    parser.add_argument("--batch-size", type=int, default=paper.batch_size, help=f"paper: {paper.batch_size}")
    parser.add_argument("--crop-size", type=int, default=paper.crop_size, help=f"paper: {paper.crop_size}")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per mode after the first")
    parser.add_argument("--pipeline-batches", type=int, default=30)
    parser.add_argument("--syndof", help="SYNDOF folder (default: procedural scenes made in a temp dir)")
    parser.add_argument("--scenes", type=int, default=12, help="procedural scenes when --syndof is not given")
    parser.add_argument("--real", default="../shared/data/cuhk_train", help="CUHK-layout folder (default: %(default)s, if present)")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from dmenet.pipelines import training_dataset
    from dmenet.training.demo import imagenet_available

    with tempfile.TemporaryDirectory() as workdir:
        syndof, real, unlabelled, source = _data(args, workdir)
        dataset = training_dataset(syndof, args.batch_size, args.crop_size, real=real, unlabelled=unlabelled, seed=0)
        print(f"device: {'GPU' if tf.config.list_logical_devices('GPU') else 'CPU'} ({os.cpu_count()} cores); "
              f"batch {args.batch_size}, crop {args.crop_size}; SYNDOF {len(syndof.images)} files, real: {source}")
        have_imagenet = imagenet_available()
        results = {}
        for mode in [m.strip().upper() for m in args.modes.split(",") if m.strip()]:
            first, seconds = time_mode(mode, dataset, args.steps, have_imagenet)
            results[mode] = seconds
            print(f"  {mode:5s} step {seconds:8.3f} s  ({1 / seconds:6.3f} steps/s; first step incl. tracing {first:.1f} s)")
        pipeline = time_pipeline(dataset, args.pipeline_batches)
    slowest = max(results.values())
    fastest = min(results.values())
    print(f"  pipeline alone: {pipeline:.2f} batches/s ({1 / pipeline:.3f} s/batch, all three streams)")
    print(f"  ratio pipeline / step throughput: {pipeline * fastest:.1f}× for the fastest mode, "
          f"{pipeline * slowest:.1f}× for the slowest (want ≥ 5)")
    base = results.get("B")
    if base:
        print("  step time relative to mode B: " + ", ".join(f"{m} {s / base:.2f}×" for m, s in results.items()))
    return 0
