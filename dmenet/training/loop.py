"""`train(config)`: build everything from a TrainConfig, resume if the run directory has a
checkpoint, train with progress bar and logs, and export B for infer.py.

A step counts one batch of each stream; an epoch is one pass over SYNDOF (as the original), and the
learning rate is multiplied by 0.8 every 20 epochs through the optimisers' own step counters, so a
resumed run continues at exactly the step and learning rate it stopped at.
"""
import contextlib
import signal
import time

import keras
import numpy as np
import tensorflow as tf

from dmenet.encoding import sigma_max_for
from dmenet.pipelines import (
    label_encoding,
    real_labelled_set,
    real_unlabelled_set,
    syndof_set,
    training_dataset,
)
from dmenet.pipelines.streams import check_label_range
from dmenet.training import summaries
from dmenet.training.config import TrainConfig
from dmenet.training.losses import LossWeights
from dmenet.training.run import PhaseCheckpoint, RunDirectory, StepLog, all_finite
from dmenet.training.trainer import DMENetTrainer, parse_mode, synchronize_batch_norm


class TrainingDivergedError(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class ConfigMismatchError(ValueError):
    """Resuming a run directory with settings that would change the model or optimisation."""


# ---------------------------------------------------------------------------- building blocks


def make_strategy(name="auto"):
    """tf.distribute strategy by name; "auto" mirrors over all GPUs when there are several."""
    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()  # reads TF_CONFIG
    raise ValueError(f"unknown strategy {name!r}: auto, default, mirrored or multiworker")


def load_datasets(config, needs_real, needs_unlabelled):
    """Validate the sets the mode needs (all problems reported at once)."""
    syndof = syndof_set(config.syndof_dir, config.syndof_label_format)
    check_label_range(syndof, sigma_max_for(config.max_coc))
    real = unlabelled = None
    if needs_real:
        real = real_labelled_set(config.real_images_dir, config.real_masks_dir, config.mask_polarity)
    if needs_unlabelled:
        unlabelled = real_unlabelled_set(config.unlabelled_dir or config.real_images_dir)
    return syndof, real, unlabelled


def build_networks(config):
    """B (ImageNet encoder unless told otherwise) and the D, C, S the mode asks for."""
    from dmenet.networks.blur_net import build_blur_net, encoder_of
    from dmenet.networks.content import build_content_net
    from dmenet.networks.discriminator import build_discriminator
    from dmenet.networks.sharpness import build_sharpness_net
    from dmenet.weights import load_imagenet_vgg19

    parts = parse_mode(config.mode)
    blur_net = build_blur_net()
    if config.imagenet:
        load_imagenet_vgg19(encoder_of(blur_net), config.vgg19_weights or None)
    content_net = None
    if "C" in parts:
        if not config.imagenet and not config.content_random:
            raise ValueError(
                "mode with C needs ImageNet VGG19 weights (C compares VGG features); give --vgg19-weights, "
                "drop C from --mode, or pass --content-random to use C with random weights (tests/demos only)"
            )
        content_net = build_content_net(config.vgg19_weights or None, imagenet=not config.content_random)
    discriminator = build_discriminator() if "D" in parts else None
    sharpness_net = build_sharpness_net() if "S" in parts else None
    return blur_net, discriminator, content_net, sharpness_net


def make_optimizer(config, decay_steps, lr_scale=1.0):
    """Adam(lr, β1) with lr × decay every `decay_steps` steps (staircase)."""
    schedule = keras.optimizers.schedules.ExponentialDecay(
        config.learning_rate * lr_scale, decay_steps=max(1, decay_steps), decay_rate=config.lr_decay, staircase=True
    )
    optimizer = keras.optimizers.Adam(schedule, beta_1=config.beta1)
    if config.mixed_precision:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def current_learning_rate(optimizer):
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def make_step_function(trainer, strategy, jit_compile=False, method="train_step"):
    """A compiled step over a (distributed) batch; each logged value is summed over replicas,
    which gives the global-batch mean because every replica reports its share (losses.py)."""
    replica_step = getattr(trainer, method)
    if jit_compile:
        replica_step = tf.function(replica_step, jit_compile=True)

    @tf.function
    def step(batch):
        per_replica = strategy.run(replica_step, args=(batch,))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}

    return step


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Let `kill` (SIGTERM) stop training like Ctrl-C: checkpoint, then exit."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------- one phase


def run_phase(phase, trainer, dataset, strategy, checkpoint, total_steps, steps_per_epoch, config, run, progress=True):
    """Train `trainer` until `total_steps` (resuming from `checkpoint`); returns the last log."""
    from tqdm import tqdm

    start = checkpoint.restore()
    if start:
        print(f"[{phase}] resumed at step {start} (lr {current_learning_rate(trainer.g_optimizer):.3g})")
    step_log = StepLog(run.log_path)
    step_log.truncate_phase(phase, start)
    if start >= total_steps:
        return {}
    step_function = make_step_function(trainer, strategy, config.jit_compile)
    batches = iter(strategy.experimental_distribute_dataset(dataset))
    sample_batch = next(iter(dataset))
    writer = tf.summary.create_file_writer(str(run.tensorboard_dir / phase))
    guarded = trainer.generator_variables + (trainer.discriminator.variables if trainer.discriminator is not None else [])
    last_good = start
    logs = {}
    bar = tqdm(total=total_steps, initial=start, desc=f"{phase} {trainer.mode}", disable=not progress, unit="step")
    try:
        with sigterm_as_interrupt():
            for step in range(start + 1, total_steps + 1):
                lr = current_learning_rate(trainer.g_optimizer)
                began = time.perf_counter()
                logs = {k: float(v) for k, v in step_function(next(batches)).items()}
                seconds = time.perf_counter() - began
                bad = [k for k, v in logs.items() if not np.isfinite(v)]
                if bad:
                    raise TrainingDivergedError(
                        f"[{phase}] step {step}: {', '.join(bad)} became NaN or infinite "
                        f"({', '.join(f'{k}={logs[k]:g}' for k in bad)}). Stopped; the last good checkpoint "
                        f"(step {last_good}) in {checkpoint.directory} is kept. Lower --learning-rate, check the "
                        "data, or resume to retry from there."
                    )
                record = {"phase": phase, "step": step, "epoch": (step - 1) // steps_per_epoch, "lr": lr, **logs, "seconds": seconds}
                step_log.append(record)
                if step % config.tensorboard_every == 0 or step == total_steps:
                    with writer.as_default():
                        for key, value in record.items():
                            if key not in ("phase", "step"):
                                summaries.scalar(key, value, step)
                if step % config.sample_every == 0 or step == total_steps:
                    write_samples(trainer, sample_batch, writer, run.samples_dir / f"{phase}_{step:07d}.png", step)
                if step % config.checkpoint_every == 0 or step == total_steps:
                    last_good = save_checkpoint(checkpoint, step, guarded, finished=step == total_steps)
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items() if k in ("loss_G", "loss_B", "loss_D")})
    except KeyboardInterrupt:
        done = int(trainer.g_optimizer.iterations.numpy())
        if done > last_good:
            save_checkpoint(checkpoint, done, guarded)
        print(f"\n[{phase}] interrupted; checkpoint at step {done} in {checkpoint.directory}; run again to resume")
        raise
    finally:
        bar.close()
        writer.flush()
    return logs


def save_checkpoint(checkpoint, step, variables, finished=False):
    if not all_finite(variables):
        raise TrainingDivergedError(
            f"weights hold NaN or infinity at step {step}; not saved. The previous checkpoint in "
            f"{checkpoint.directory} is kept."
        )
    checkpoint.save(step, finished=finished)
    return step


def write_samples(trainer, batch, writer, png_path, step):
    """Sample images (synthetic input / output / label, real input / output / S / mask) to
    TensorBoard and as one PNG sheet, from B in inference mode."""
    from dmenet.training.samples import sample_panels, save_sample_sheet

    panels = sample_panels(trainer, batch)
    with writer.as_default():
        for name, images in panels.items():
            summaries.images(name, images, step)
    save_sample_sheet(panels, png_path)


# ---------------------------------------------------------------------------- whole run


def steps_for(config, syndof_count, batch_size, epochs, max_steps):
    per_epoch = config.steps_per_epoch or max(1, syndof_count // batch_size)
    total = max_steps or epochs * per_epoch
    return per_epoch, total


def check_resumable(config, run):
    if run.config_path.exists():
        previous = TrainConfig.load(run.config_path)
        problems = config.mismatches(previous)
        if problems:
            raise ConfigMismatchError(
                f"{run.path} holds a run with different settings; use another --run-dir or the same settings:\n  "
                + "\n  ".join(problems)
            )
    config.save(run.config_path)


def train(config, progress=True):
    """Run (or resume) a whole training; returns a summary dict. Exports B at the end."""
    from dmenet.checkpoints import save_blur_net

    run = RunDirectory(config.run_dir)
    check_resumable(config, run)
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    parts = parse_mode(config.mode)
    syndof, real, unlabelled = load_datasets(config, needs_real=bool(parts & {"D", "S"}), needs_unlabelled="D" in parts)
    sigma_max = sigma_max_for(config.max_coc)
    encoding = label_encoding(config.syndof_label_format, sigma_max)
    strategy = make_strategy(config.strategy)
    weights = LossWeights(config.lambda_aux, config.lambda_content, config.lambda_sharpness, config.lambda_adversarial, config.lambda_d_lr)

    with strategy.scope():
        blur_net, discriminator, content_net, sharpness_net = build_networks(config)
        if strategy.num_replicas_in_sync > 1:
            synchronize_batch_norm(blur_net, discriminator, sharpness_net)
        per_epoch, total = steps_for(config, len(syndof.images), config.batch_size, config.epochs, config.max_steps)
        trainer = DMENetTrainer(blur_net, discriminator, content_net, sharpness_net, weights)
        trainer.compile(
            make_optimizer(config, config.decay_every_epochs * per_epoch),
            make_optimizer(config, config.decay_every_epochs * per_epoch, config.lambda_d_lr) if discriminator else None,
        )
        trainer.build_optimizers()
        main_checkpoint = PhaseCheckpoint(
            run.checkpoint_dir("main"), config.keep_checkpoints, blur_net=blur_net, discriminator=discriminator,
            sharpness_net=sharpness_net, g_optimizer=trainer.g_optimizer, d_optimizer=trainer.d_optimizer,
        )
        pretrain_steps = 0
        if (config.pretrain_epochs or config.pretrain_max_steps) and main_checkpoint.manager.latest_checkpoint is None:
            pre_epoch, pretrain_steps = steps_for(
                config, len(syndof.images), config.pretrain_batch_size, config.pretrain_epochs, config.pretrain_max_steps
            )
            pretrainer = DMENetTrainer(blur_net, pretrain=True)
            pretrainer.compile(make_optimizer(config, config.decay_every_epochs * pre_epoch))
            pretrainer.build_optimizers()
            pre_checkpoint = PhaseCheckpoint(
                run.checkpoint_dir("pretrain"), config.keep_checkpoints, blur_net=blur_net, g_optimizer=pretrainer.g_optimizer
            )

    if pretrain_steps:
        data = training_dataset(syndof, config.pretrain_batch_size, config.crop_size, seed=config.seed, sigma_max=sigma_max)
        run_phase("pretrain", pretrainer, data, strategy, pre_checkpoint, pretrain_steps, pre_epoch, config, run, progress)

    # a resumed run draws new crops instead of replaying the ones it started with
    resumed_at = int(tf.train.load_variable(main_checkpoint.manager.latest_checkpoint, "step/.ATTRIBUTES/VARIABLE_VALUE")) \
        if main_checkpoint.manager.latest_checkpoint else 0
    data = training_dataset(
        syndof, config.batch_size, config.crop_size, real=real, unlabelled=unlabelled, seed=config.seed + resumed_at,
        sigma_max=sigma_max,
    )
    last = run_phase("main", trainer, data, strategy, main_checkpoint, total, per_epoch, config, run, progress)
    main_checkpoint.restore()  # the exported B is the last checkpoint's, whatever happened after it
    step = int(main_checkpoint.step.numpy())
    save_blur_net(
        blur_net, run.blur_net_path, encoding,
        {"mode": trainer.mode, "step": step, "epoch": step / per_epoch, "run_dir": str(run.path), "trained_by": "train.py"},
    )
    return {"run_dir": str(run.path), "blur_net": str(run.blur_net_path), "step": step, "total_steps": total,
            "steps_per_epoch": per_epoch, "mode": trainer.mode, "encoding": encoding.to_dict(), "last_logs": last}
