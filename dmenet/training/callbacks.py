"""The run's guarantees as Keras callbacks, in the order `fit` should call them after each step:

    NonFiniteGuard   stop at the first NaN/inf (input, loss, gradient or weights), name it
    StepLogger       one JSON line per step (RUN_DIR/log.jsonl), cut back on resume
    StepTensorBoard  Keras' TensorBoard callback, numbered by the run's step
    SampleSheets     GANMonitor-style images of B's output (PNG sheet + TensorBoard)
    StepCheckpoint   checkpoint every N steps and at the last, stop at the asked step
    GracefulStop     SIGTERM / Ctrl-C: finish the step, checkpoint, stop

Every callback reads the model's `global_step` (dmenet.training.trainer), never Keras' batch index,
so a resumed run continues every count where it stopped.
"""
import signal
import time

import keras
import numpy as np
import tensorflow as tf

from dmenet.training.run import StepLog


class TrainingDivergedError(RuntimeError):
    """A quantity became NaN or infinite; the last good checkpoint is kept."""


def _step(model):
    return int(model.global_step.numpy())


def _floats(logs):
    return {k: float(v) for k, v in (logs or {}).items()}


class NonFiniteGuard(keras.callbacks.Callback):
    """Stop with a clear message at the first step where anything became NaN or infinite.

    Names the first quantity in the order it arises (an input tensor, a loss, a gradient, the
    updated weights; see the model's `health_checks`), the step, and the last good checkpoint,
    which stays the latest one: the guard runs before the logger and the checkpoint callback, so
    the bad step is neither logged nor saved.
    """

    def __init__(self, phase, checkpoint):
        super().__init__()
        self.phase, self.checkpoint = phase, checkpoint

    def on_train_batch_end(self, batch, logs=None):
        values = _floats(logs)
        flags = self.model.health.numpy()
        bad_logs = [k for k, v in values.items() if not np.isfinite(v)]
        if not flags.any() and not bad_logs:
            return
        step = _step(self.model)
        first = self.model.health_checks[int(np.argmax(flags > 0))] if flags.any() else "loss_G"
        stage, _, part = first.partition("_")
        if first in ("synthetic_image", "synthetic_defocus", "real_image", "real_mask", "unlabelled_image"):
            what = (f"the input batch '{first}' holds NaN or infinity (the pipeline skips image files with "
                    "non-finite pixels: is the data made in memory?)")
        elif stage == "loss":
            terms = [k for k in bad_logs if k.startswith("loss_")] or [first]
            shown = ", ".join(f"{k}={values[k]:g}" for k in terms if k in values)
            what = f"{', '.join(terms)} became NaN or infinite ({shown})"
        else:
            what = f"the {stage}s of {part}'s update became NaN or infinite while every loss was finite"
        last = self.checkpoint.last_saved
        raise TrainingDivergedError(
            f"[{self.phase}] step {step}: {what}. Stopped; the last good checkpoint (step {last}) in "
            f"{self.checkpoint.directory} is kept. Lower --learning-rate, check the data, or resume to retry from there."
        )


class StepLogger(keras.callbacks.Callback):
    """One JSON line per step: phase, step, epoch (passes over SYNDOF), lr, every loss, seconds."""

    def __init__(self, phase, log_path, steps_per_epoch):
        super().__init__()
        self.phase, self.log, self.steps_per_epoch = phase, StepLog(log_path), steps_per_epoch

    def on_train_begin(self, logs=None):
        self.log.truncate_phase(self.phase, _step(self.model))  # steps redone after a resume are logged once

    def on_train_batch_begin(self, batch, logs=None):
        self.began = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        step = _step(self.model)
        self.log.append({"phase": self.phase, "step": step, "epoch": (step - 1) // self.steps_per_epoch,
                         **_floats(logs), "seconds": time.perf_counter() - self.began})


class StepTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback with batch scalars numbered by the run's step, so a resumed run
    continues its curves instead of restarting them at 1 (Keras counts batches from each fit call)."""

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._global_train_batch = _step(self.model)


class SampleSheets(keras.callbacks.Callback):
    """Every `every` steps and at the last: what B makes of a fixed batch, next to inputs and labels,
    as one PNG in `png_dir` and as images in TensorBoard (`log_dir`)."""

    def __init__(self, batch, every, last_step, png_dir, log_dir, phase):
        super().__init__()
        self.batch, self.every, self.last_step, self.phase = batch, every, last_step, phase
        self.png_dir, self.log_dir = png_dir, log_dir

    def on_train_begin(self, logs=None):
        self.writer = tf.summary.create_file_writer(str(self.log_dir))

    def on_train_batch_end(self, batch, logs=None):
        step = _step(self.model)
        if step % self.every and step != self.last_step:
            return
        panels = sample_panels(self.model, self.batch)
        with self.writer.as_default():
            for name, images in panels.items():
                tf.summary.image(name, images, step=step, max_outputs=3)
        self.writer.flush()
        save_sample_sheet(panels, self.png_dir / f"{self.phase}_{step:07d}.png")

    def on_train_end(self, logs=None):
        self.writer.close()


class StepCheckpoint(keras.callbacks.Callback):
    """Checkpoint every `every` steps and at `last_step`, then stop `fit` there (step-exact, also
    when a resumed run starts mid-epoch). `checkpoint` is a dmenet.training.run.PhaseCheckpoint."""

    def __init__(self, checkpoint, every, last_step):
        super().__init__()
        self.checkpoint, self.every, self.last_step = checkpoint, every, last_step
        self.directory = checkpoint.directory
        self.last_saved = 0

    def restore(self):
        """Restore the latest checkpoint (before fit); returns its step, 0 for a fresh run."""
        self.last_saved = self.checkpoint.restore()
        return self.last_saved

    def save_now(self):
        if _step(self.model) > self.last_saved:
            self.last_saved = self.checkpoint.save()
        return self.last_saved

    def on_train_batch_end(self, batch, logs=None):
        step = _step(self.model)
        if step % self.every == 0 or step >= self.last_step:
            self.save_now()
        if step >= self.last_step:
            self.model.stop_training = True


class GracefulStop(keras.callbacks.Callback):
    """SIGTERM (`kill`) or Ctrl-C: finish the running step, checkpoint it, stop `fit`. A second
    Ctrl-C interrupts at once. `stopped_at` holds the step when it happened, else None."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, saver):
        super().__init__()
        self.saver, self.requested, self.stopped_at, self.previous = saver, None, None, {}

    def _request(self, signum, frame):
        self.requested = signum
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def on_train_begin(self, logs=None):
        for signum in self.SIGNALS:
            try:
                self.previous[signum] = signal.signal(signum, self._request)
            except ValueError:  # not the main thread: leave signals alone
                return

    def on_train_batch_end(self, batch, logs=None):
        if self.requested is not None:
            self.stopped_at = self.saver.save_now()
            self.model.stop_training = True

    def restore_handlers(self):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def on_train_end(self, logs=None):
        self.restore_handlers()


def sample_panels(model, batch):
    """{name: (N, H, W, C) float images in [0, 1]} from B (and S) in inference mode."""
    blur_net = model.blur_net
    panels = {
        "1_synthetic_input": batch["synthetic_image"],
        "2_synthetic_defocus_out": blur_net(batch["synthetic_image"], training=False)["defocus"],
        "3_synthetic_defocus_label": batch["synthetic_defocus"],
    }
    if "real_image" in batch and model.needs_real:
        real_out = blur_net(batch["real_image"], training=False)["defocus"]
        panels["4_real_input"] = batch["real_image"]
        panels["5_real_defocus_out"] = real_out
        if model.sharpness_net is not None:
            panels["6_real_blurred_prob"] = tf.sigmoid(model.sharpness_net(real_out, training=False))
        panels["7_real_mask"] = batch["real_mask"]
    return {k: tf.clip_by_value(tf.cast(v, tf.float32), 0.0, 1.0) for k, v in panels.items()}


def save_sample_sheet(panels, path):
    """One PNG: a row per example, a column per panel (maps in a fixed 0–1 grey scale)."""
    from dmenet.files.figures import new_figure, save_figure

    names = list(panels)
    rows = int(panels[names[0]].shape[0])
    figure, axes = new_figure(rows, len(names), figsize=(2 * len(names), 2 * rows), squeeze=False)
    for column, name in enumerate(names):
        images = np.asarray(panels[name])
        for row in range(rows):
            axis = axes[row][column]
            image = images[row]
            axis.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1) if image.shape[-1] == 1 else axis.imshow(image)
            axis.set_axis_off()
            if row == 0:
                axis.set_title(name.split("_", 1)[1].replace("_", " "), fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(figure, path, dpi=80)
