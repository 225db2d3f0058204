"""D, S, C and the alternating train_step on real networks at 32×32 (C with random VGG weights)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from dmenet.networks.blur_net import build_blur_net
from dmenet.networks.content import build_content_net
from dmenet.networks.discriminator import build_discriminator
from dmenet.networks.sharpness import build_sharpness_net
from dmenet.training.config import TrainConfig
from dmenet.training.loop import make_optimizer
from dmenet.training.losses import LossWeights, nearest_downsample
from dmenet.training.trainer import DMENetTrainer, parse_mode

SIZE, BATCH = 32, 2


def _bn_layers(model):
    return [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]


def test_discriminator_structure():
    d = build_discriminator()
    convs = [l for l in d.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [64, 128, 256, 512, 1]
    assert all(c.kernel_size == (4, 4) and c.strides == (2, 2) and not c.use_bias for c in convs)
    assert all(not bn.scale and bn.epsilon == 1e-5 and bn.momentum == 0.9 for bn in _bn_layers(d))
    assert d(np.zeros((1, 64, 64, 64), np.float32)).shape == (1, 2, 2, 1)


def test_sharpness_net_is_per_pixel():
    s = build_sharpness_net()
    convs = [l for l in s.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [64, 64, 64, 32, 32, 32, 16, 16, 16, 1]
    assert all(c.kernel_size == (1, 1) and c.use_bias for c in convs)
    assert len(_bn_layers(s)) == 9
    # 1×1 only: changing one input pixel changes exactly that output pixel (inference mode)
    x = np.random.default_rng(0).random((1, 8, 8, 1)).astype(np.float32)
    y = x.copy()
    y[0, 3, 5, 0] += 0.5
    diff = np.abs(s(x, training=False) - s(y, training=False))[0, ..., 0]
    assert diff[3, 5] > 0 and np.count_nonzero(diff) == 1


def test_content_net_is_frozen_vgg_conv4_4():
    c = build_content_net(imagenet=False)
    assert not c.trainable_variables
    assert c(np.zeros((1, 32, 32, 1), np.float32)).shape == (1, 4, 4, 512)
    names = {l.name for l in c._flatten_layers()}
    assert "block4_conv4" in names and "block5_conv1" not in names


def test_nearest_downsample_matches_aligned_corners():
    label = tf.reshape(tf.range(32 * 32, dtype=tf.float32), [1, 32, 32, 1])
    small = nearest_downsample(label, (4, 4)).numpy()[0, ..., 0]
    rows = np.round(np.arange(4) * 31 / 3).astype(int)
    np.testing.assert_array_equal(small, label.numpy()[0, ..., 0][np.ix_(rows, rows)])


def test_modes():
    assert parse_mode("bdcs") == {"B", "D", "C", "S"}
    with pytest.raises(ValueError, match="mode"):
        parse_mode("DS")


@pytest.fixture(scope="module")
def bdcs():
    keras.utils.set_random_seed(1)
    nets = dict(B=build_blur_net(), D=build_discriminator(), C=build_content_net(imagenet=False), S=build_sharpness_net())
    trainer = DMENetTrainer(nets["B"], nets["D"], nets["C"], nets["S"], LossWeights())
    config = TrainConfig()
    trainer.compile(make_optimizer(config, 100), make_optimizer(config, 100))
    trainer.build_optimizers()
    rng = np.random.default_rng(0)
    batch = {
        "synthetic_image": rng.random((BATCH, SIZE, SIZE, 3), dtype=np.float32),
        "synthetic_defocus": rng.random((BATCH, SIZE, SIZE, 1), dtype=np.float32),
        "real_image": rng.random((BATCH, SIZE, SIZE, 3), dtype=np.float32),
        "real_mask": (rng.random((BATCH, SIZE, SIZE, 1)) > 0.5).astype(np.float32),
        "unlabelled_image": rng.random((BATCH, SIZE, SIZE, 3), dtype=np.float32),
    }
    return trainer, nets, batch


def _snapshot(nets):
    return {k: [np.array(v.numpy()) for v in m.variables] for k, m in nets.items()}


def _changed(before, nets):
    return {k: any(not np.array_equal(a, v.numpy()) for a, v in zip(before[k], m.variables)) for k, m in nets.items()}


def test_d_step_changes_only_d(bdcs):
    trainer, nets, batch = bdcs
    before = _snapshot(nets)
    logs = tf.function(trainer.discriminator_step)(batch)
    assert set(logs) == {"loss_D", "D_accuracy"}
    assert _changed(before, nets) == {"B": False, "D": True, "C": False, "S": False}


def test_g_step_changes_b_and_s_never_d_or_c(bdcs):
    trainer, nets, batch = bdcs
    before = _snapshot(nets)
    logs = tf.function(trainer.generator_step)(batch)
    assert {"loss_G", "loss_B", "loss_aux", "loss_C", "loss_S", "loss_adv"} <= set(logs)
    assert _changed(before, nets) == {"B": True, "D": False, "C": False, "S": True}
    # every trainable variable of B and S got a gradient (all four parts are in the graph)
    assert all(not np.array_equal(a, v.numpy()) for a, v in zip(before["S"], nets["S"].variables) if v.trainable)


def test_full_step_reports_the_loss_equations(bdcs):
    trainer, nets, batch = bdcs
    b = nets["B"]
    w = trainer.loss_weights
    # B's training-mode outputs before the step, computed without touching its state
    out, _ = b.stateless_call([v.value for v in b.trainable_variables], [v.value for v in b.non_trainable_variables],
                              batch["synthetic_image"], training=True)
    expected_b = float(np.mean((np.asarray(out["defocus"]) - batch["synthetic_defocus"]) ** 2))
    lr_before = float(trainer.g_optimizer.learning_rate)
    logs = {k: float(v) for k, v in tf.function(trainer.train_step)(batch).items()}
    assert all(np.isfinite(v) for v in logs.values())
    np.testing.assert_allclose(logs["loss_B"], expected_b, rtol=1e-4)
    total = sum(logs[k] for k in ("loss_B", "loss_aux", "loss_C", "loss_S", "loss_adv"))
    np.testing.assert_allclose(logs["loss_G"], total, rtol=1e-5)
    # λ_S·BCE: BCE of a 0/1 mask is ≥ 0 and near log 2 for an untrained S
    assert 0 < logs["loss_S"] < w.sharpness * 2.0
    assert 0 <= logs["D_accuracy"] <= 1
    assert float(trainer.g_optimizer.learning_rate) == pytest.approx(lr_before)


def test_learning_rate_decays_by_0_8_every_decay_period():
    config = TrainConfig()
    optimizer = make_optimizer(config, decay_steps=10)
    schedule = optimizer.learning_rate if callable(optimizer.learning_rate) else optimizer._learning_rate
    for step, expected in ((0, 1e-4), (9, 1e-4), (10, 8e-5), (25, 6.4e-5)):
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-6)


def test_pretraining_trains_b_alone_with_mse():
    keras.utils.set_random_seed(2)
    b = build_blur_net()
    trainer = DMENetTrainer(b, build_discriminator(), pretrain=True)
    trainer.compile(make_optimizer(TrainConfig(), 100))
    trainer.build_optimizers()
    assert trainer.mode == "pretrain" and trainer.discriminator is None
    rng = np.random.default_rng(1)
    batch = {"synthetic_image": rng.random((2, 32, 32, 3), dtype=np.float32),
             "synthetic_defocus": np.full((2, 32, 32, 1), 0.25, np.float32)}
    step = tf.function(trainer.train_step)
    first = float(step(batch)["loss_B"])
    for _ in range(4):
        last = float(step(batch)["loss_B"])
    assert set(step(batch)) == {"loss_B"}
    assert last < first
