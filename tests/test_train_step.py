"""D, S, C and the alternating train_step at 32×32 (C with random VGG weights).

Structure tests use the paper's widths; the step tests use narrow networks (width 1/8), which run
the same code in a fraction of the time."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from dmenet.networks.blur_net import build_blur_net
from dmenet.networks.content import build_content_net
from dmenet.networks.discriminator import build_discriminator
from dmenet.networks.sharpness import build_sharpness_net
from dmenet.training.config import TrainConfig
from dmenet.training.losses import LossWeights, nearest_downsample
from dmenet.training.runner import StepDecay, make_optimizer
from dmenet.training.trainer import BlurPretrainer, DMENetTrainer, parse_mode

SIZE, BATCH, WIDTH = 32, 2, 0.125
WEIGHTS = LossWeights.from_config(TrainConfig())


def tiny_networks(seed):
    keras.utils.set_random_seed(seed)
    return dict(B=build_blur_net(width=WIDTH), D=build_discriminator(round(64 * WIDTH), width=WIDTH),
                C=build_content_net(imagenet=False, width=WIDTH), S=build_sharpness_net(width=WIDTH))


def compiled_trainer(nets):
    trainer = DMENetTrainer(nets["B"], nets["D"], nets["C"], nets["S"], WEIGHTS)
    trainer.compile(make_optimizer(TrainConfig(), 100, trainer.global_step),
                    make_optimizer(TrainConfig(), 100, trainer.global_step))
    trainer.build_optimizers()
    return trainer


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


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "synthetic_image": rng.random((BATCH, SIZE, SIZE, 3), dtype=np.float32),
        "synthetic_defocus": rng.random((BATCH, SIZE, SIZE, 1), dtype=np.float32),
        "real_image": rng.random((BATCH, SIZE, SIZE, 3), dtype=np.float32),
        "real_mask": (rng.random((BATCH, SIZE, SIZE, 1)) > 0.5).astype(np.float32),
        "unlabelled_image": rng.random((BATCH, SIZE, SIZE, 3), dtype=np.float32),
    }


@pytest.fixture(scope="module")
def bdcs():
    nets = tiny_networks(1)
    return compiled_trainer(nets), nets, _batch()


def _snapshot(nets):
    return {k: [np.array(v.numpy()) for v in m.variables] for k, m in nets.items()}


def _changed(before, nets):
    return {k: any(not np.array_equal(a, v.numpy()) for a, v in zip(before[k], m.variables)) for k, m in nets.items()}


def test_d_update_changes_only_d(bdcs):
    trainer, nets, batch = bdcs
    before = _snapshot(nets)
    b = nets["B"]
    features = [b.stateless_call([v.value for v in b.trainable_variables], [v.value for v in b.non_trainable_variables],
                                 batch[key], training=True)[0]["feature"]
                for key in ("synthetic_image", "real_image", "unlabelled_image")]
    logs = tf.function(lambda *f: trainer.discriminator_update(*f, {}))(*features)
    assert set(logs) == {"loss_D", "D_accuracy"}
    assert _changed(before, nets) == {"B": False, "D": True, "C": False, "S": False}


def test_full_step_changes_d_only_through_its_own_update():
    """Two identical trainers: one full step vs the D update alone. D ends equal (the G update never
    touches D), C never moves, B and S move (every trainable variable of S gets a gradient)."""
    full_nets, d_only_nets = tiny_networks(3), tiny_networks(3)
    full, d_only = compiled_trainer(full_nets), compiled_trainer(d_only_nets)
    batch = _batch(1)
    before = _snapshot(full_nets)
    logs = tf.function(full.train_step)(batch)
    assert {"loss_G", "loss_B", "loss_aux", "loss_C", "loss_S", "loss_adv", "loss_D", "D_accuracy", "lr"} <= set(logs)
    assert _changed(before, full_nets) == {"B": True, "D": True, "C": False, "S": True}
    assert all(not np.array_equal(a, v.numpy()) for a, v in zip(before["S"], full_nets["S"].variables) if v.trainable)
    b = d_only_nets["B"]
    features = [b(batch[key], training=True)["feature"] for key in ("synthetic_image", "real_image", "unlabelled_image")]
    tf.function(lambda *f: d_only.discriminator_update(*f, {}))(*features)
    for after_full, after_d in zip(full_nets["D"].variables, d_only_nets["D"].variables):
        np.testing.assert_allclose(after_full.numpy(), after_d.numpy(), rtol=1e-5, atol=1e-7)
    assert int(full.global_step.numpy()) == 1 and not full.health.numpy().any()


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
    assert logs["lr"] == pytest.approx(lr_before) == float(trainer.g_optimizer.learning_rate)


def test_learning_rate_decays_by_0_8_every_decay_period_of_the_step_counter():
    step = tf.Variable(0, dtype=tf.int64)
    optimizer = make_optimizer(TrainConfig(), decay_steps=10, step=step)
    assert isinstance(optimizer.inner_optimizer if hasattr(optimizer, "inner_optimizer") else optimizer, keras.optimizers.Adam)
    assert optimizer.epsilon == 1e-8  # TF1's Adam default, as the original
    for value, expected in ((0, 1e-4), (9, 1e-4), (10, 8e-5), (25, 6.4e-5)):
        step.assign(value)
        assert float(optimizer.learning_rate) == pytest.approx(expected, rel=1e-6)
    assert isinstance(optimizer._learning_rate, StepDecay)


def test_initialisers_follow_the_original():
    """He (variance scaling, fan in) before ReLU-like activations, Xavier on the output layers."""
    b = build_blur_net(width=WIDTH)
    assert isinstance(b.get_layer("u3_c1").kernel_initializer, keras.initializers.HeNormal)
    assert isinstance(b.get_layer("u0_c_res0").kernel_initializer, keras.initializers.HeNormal)
    for name in ("uf_c3", "u4_aux_c2", "u0_aux_c2"):
        assert isinstance(b.get_layer(name).kernel_initializer, keras.initializers.GlorotUniform), name
    d = build_discriminator(width=WIDTH)
    assert isinstance(d.get_layer("d_conv1").kernel_initializer, keras.initializers.HeNormal)
    assert isinstance(d.get_layer("d_logits").kernel_initializer, keras.initializers.GlorotUniform)


def test_pretraining_trains_b_alone_with_mse():
    keras.utils.set_random_seed(2)
    b = build_blur_net(width=WIDTH)
    trainer = BlurPretrainer(b)
    trainer.compile(make_optimizer(TrainConfig(), 100, trainer.global_step))
    trainer.build_optimizers()
    assert trainer.mode == "pretrain"
    rng = np.random.default_rng(1)
    batch = {"synthetic_image": rng.random((2, 32, 32, 3), dtype=np.float32),
             "synthetic_defocus": np.full((2, 32, 32, 1), 0.25, np.float32)}
    aux_before = np.array(b.get_layer("u4_aux_c2").kernel.numpy())
    step = tf.function(trainer.train_step)
    first = float(step(batch)["loss_B"])
    for _ in range(4):
        last = float(step(batch)["loss_B"])
    assert set(step(batch)) == {"loss_B", "lr"}
    assert last < first and int(trainer.global_step.numpy()) == 6
    np.testing.assert_array_equal(b.get_layer("u4_aux_c2").kernel.numpy(), aux_before)  # aux heads untouched
