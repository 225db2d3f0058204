"""MirroredStrategy over two logical CPU devices trains exactly like one device on the same batch,
with `Model.fit` doing the distribution (sync BN, losses scaled for the global batch).

Logical devices must be configured before TensorFlow initialises, hence the subprocess. The
networks are narrow (width 1/8): the property tested does not depend on their width.
"""
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

SCRIPT = r'''
import json, os
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
from dmenet.networks.blur_net import build_blur_net
from dmenet.networks.content import build_content_net
from dmenet.networks.discriminator import build_discriminator
from dmenet.networks.sharpness import build_sharpness_net
from dmenet.training.config import TrainConfig
from dmenet.training.losses import LossWeights
from dmenet.training.runner import make_optimizer
from dmenet.training.trainer import DMENetTrainer, synchronize_batch_norm

W = 0.125

def build(strategy, initial=None):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        nets = [build_blur_net(width=W), build_discriminator(8, width=W), build_content_net(imagenet=False, width=W),
                build_sharpness_net(width=W)]
        if initial is not None:
            for net, weights in zip(nets, initial):
                net.set_weights(weights)
        if strategy.num_replicas_in_sync > 1:
            synchronize_batch_norm(*nets)
        trainer = DMENetTrainer(*nets, loss_weights=LossWeights.from_config(TrainConfig()))
        trainer.compile(make_optimizer(TrainConfig(), 100, trainer.global_step),
                        make_optimizer(TrainConfig(), 100, trainer.global_step))
        trainer.build_optimizers()
    return trainer, nets

def one_fit_step(trainer):
    history = trainer.fit(tf.data.Dataset.from_tensors(batch).repeat(), epochs=1, steps_per_epoch=1, verbose=0)
    return {k: float(v[-1]) for k, v in history.history.items()}

rng = np.random.default_rng(0)
size = 32
batch = {
    "synthetic_image": rng.random((2, size, size, 3), dtype=np.float32),
    "synthetic_defocus": rng.random((2, size, size, 1), dtype=np.float32),
    "real_image": rng.random((2, size, size, 3), dtype=np.float32),
    "real_mask": (rng.random((2, size, size, 1)) > 0.5).astype(np.float32),
    "unlabelled_image": rng.random((2, size, size, 3), dtype=np.float32),
}
single = tf.distribute.get_strategy()
trainer1, nets1 = build(single)
initial = [net.get_weights() for net in nets1]
logs1 = one_fit_step(trainer1)

mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
trainer2, nets2 = build(mirrored, initial)
logs2 = one_fit_step(trainer2)

def max_update_difference(a, b, start):
    worst = 0.0
    for x, y, s in zip(a, b, start):
        if np.issubdtype(np.asarray(s).dtype, np.floating):
            worst = max(worst, float(np.max(np.abs((x - s) - (y - s)))) if x.size else 0.0)
    return worst

updates = {name: max_update_difference(n1.get_weights(), n2.get_weights(), w0)
           for name, n1, n2, w0 in zip("BDCS", nets1, nets2, initial)}
moved = {name: max(float(np.max(np.abs(a - b))) for a, b in zip(n.get_weights(), w0) if a.size)
         for name, n, w0 in zip("BDCS", nets1, initial)}
print("RESULT" + json.dumps({"replicas": mirrored.num_replicas_in_sync, "single": logs1, "mirrored": logs2,
                             "update_difference": updates, "moved": moved}))
'''


def test_mirrored_two_cpus_matches_single_device():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT")]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    result = json.loads(lines[-1][len("RESULT"):])
    assert result["replicas"] == 2
    single, mirrored = result["single"], result["mirrored"]
    assert set(single) == set(mirrored) and {"loss_G", "loss_D", "loss_B", "loss_C", "loss_S", "loss_adv"} <= set(single)
    for key in single:
        assert mirrored[key] == pytest.approx(single[key], rel=1e-4, abs=1e-6), key
    # the updates themselves agree (the gradients were scaled for the global batch)
    assert result["moved"]["B"] > 1e-6 and result["moved"]["C"] == 0
    for name, difference in result["update_difference"].items():
        assert difference < 1e-5 * max(1.0, result["moved"][name] * 10), (name, difference)
