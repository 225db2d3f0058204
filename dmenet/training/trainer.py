"""The training model: B learns defocus on SYNDOF while D, C and S adapt it to real photos.

One `train_step` = one D update, then one G update (B and S), on the same batch, as the original:

    L_D = λ_adv · (2·BCE(D(f_s), 1) + BCE(D(f_r), 0) + BCE(D(f_u), 0)) / 2           → D
    L_G = L_B + λ_aux·L_aux + λ_C·L_C + λ_S·L_S + λ_adv·(BCE(D(f_r), 1) + BCE(D(f_u), 1)) / 2
                                                                                      → B, S
B runs once per stream in training mode (each stream normalised with its own batch statistics, as
the original's three separate B calls). Its forward pass is shared by both updates: the D update
happens in between, so the G update's adversarial term is judged by the *updated* D exactly as in
the original's second session run, without recomputing B. D sees batch statistics in both steps
(its BN is always in training mode in the original); in the G step it is called statelessly, so the
G step never changes any of D's variables. C is frozen and always in inference mode.

Modes are strings of parts: "B", "BD", "BDC", "BDCS" (the paper's ablations; other combinations
such as "BDS" work too). `pretrain=True` is the optional first phase: B alone with the MSE of its
final output.
"""
import keras
import tensorflow as tf

from dmenet.training.losses import (
    LossWeights,
    auxiliary_loss,
    bce_with_logits,
    discriminator_accuracy,
    mse,
)

MODES = ("B", "BD", "BDC", "BDCS")


def parse_mode(mode):
    """'BDCS' → {'B', 'D', 'C', 'S'}; B is always there."""
    mode = mode.upper()
    parts = set(mode)
    if "B" not in parts or not parts <= set("BDCS") or len(parts) != len(mode):
        raise ValueError(f"mode must be B followed by any of D, C, S (e.g. {', '.join(MODES)}), not {mode!r}")
    return parts


def batch_norm_layers(model):
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            yield layer


def synchronize_batch_norm(*models):
    """Make BN use the statistics of the whole global batch under tf.distribute (sync BN), so a
    batch split over replicas trains exactly like the same batch on one device."""
    for model in models:
        if model is not None:
            for layer in batch_norm_layers(model):
                layer.synchronized = True


class DMENetTrainer(keras.Model):
    """Holds B (and D, C, S as the mode asks) and trains them with a custom `train_step`."""

    def __init__(
        self,
        blur_net,
        discriminator=None,
        content_net=None,
        sharpness_net=None,
        loss_weights=LossWeights(),
        pretrain=False,
        name="dmenet_trainer",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.blur_net = blur_net
        self.discriminator = None if pretrain else discriminator
        self.content_net = None if pretrain else content_net
        self.sharpness_net = None if pretrain else sharpness_net
        self.loss_weights = loss_weights
        self.pretrain = pretrain
        if self.content_net is not None:
            self.content_net.trainable = False

    @property
    def mode(self):
        if self.pretrain:
            return "pretrain"
        return "B" + "".join(p for p, net in (("D", self.discriminator), ("C", self.content_net), ("S", self.sharpness_net)) if net is not None)

    @property
    def needs_real(self):
        return self.discriminator is not None or self.sharpness_net is not None

    @property
    def needs_unlabelled(self):
        return self.discriminator is not None

    @property
    def generator_variables(self):
        """What the G optimiser updates: B's and S's trainable variables."""
        variables = list(self.blur_net.trainable_variables)
        if self.sharpness_net is not None:
            variables += self.sharpness_net.trainable_variables
        return variables

    def compile(self, g_optimizer, d_optimizer=None, **kwargs):
        super().compile(**kwargs)
        if self.discriminator is not None and d_optimizer is None:
            raise ValueError("a mode with D needs d_optimizer")
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer

    def build_optimizers(self):
        """Create optimiser slots up front (inside the strategy scope, before the first step)."""
        self.g_optimizer.build(self.generator_variables)
        if self.discriminator is not None:
            self.d_optimizer.build(self.discriminator.trainable_variables)

    def call(self, image, training=False):
        return self.blur_net(image, training=training)

    # ------------------------------------------------------------------ one iteration

    def train_step(self, batch):
        """One D update, then one G update (B + S), on the same batch."""
        return self._step(batch, update_discriminator=True, update_generator=True)

    def discriminator_step(self, batch):
        """Only the D update (B's state untouched); for tests and diagnostics."""
        return self._step(batch, update_discriminator=True, update_generator=False)

    def generator_step(self, batch):
        """Only the G update (D untouched); for tests and diagnostics."""
        return self._step(batch, update_discriminator=False, update_generator=True)

    def _step(self, batch, update_discriminator, update_generator):
        if self.pretrain:
            return self._pretrain_step(batch)
        w = self.loss_weights
        blur = self.blur_net if update_generator else self._stateless(self.blur_net)
        with tf.GradientTape() as tape:
            synthetic = blur(batch["synthetic_image"], training=True)
            real = blur(batch["real_image"], training=True) if self.needs_real else None
            unlabelled = blur(batch["unlabelled_image"], training=True) if self.needs_unlabelled else None

            logs = {}
            if self.discriminator is not None and update_discriminator:
                with tape.stop_recording():
                    logs.update(self._discriminator_update(synthetic["feature"], real["feature"], unlabelled["feature"]))
            if not update_generator:
                return logs

            label = batch["synthetic_defocus"]
            losses = {"loss_B": mse(synthetic["defocus"], label)}
            losses["loss_aux"] = w.aux * auxiliary_loss(synthetic["aux"], label)
            if self.content_net is not None:
                losses["loss_C"] = w.content * mse(self._content(synthetic["defocus"]), self._content(label))
            if self.sharpness_net is not None:
                logits = self.sharpness_net(real["defocus"], training=True)
                losses["loss_S"] = w.sharpness * bce_with_logits(logits, batch["real_mask"])
            if self.discriminator is not None:
                judge = self._stateless(self.discriminator)
                fool_real = bce_with_logits(judge(real["feature"], training=True), 1.0)
                fool_unlabelled = bce_with_logits(judge(unlabelled["feature"], training=True), 1.0)
                losses["loss_adv"] = w.adversarial * (fool_real + fool_unlabelled) / 2.0
            loss_g = tf.add_n(list(losses.values()))
            scaled = self.g_optimizer.scale_loss(loss_g)
        variables = self.generator_variables
        self.g_optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        return {"loss_G": loss_g, **losses, **logs}

    def _discriminator_update(self, feature_synthetic, feature_real, feature_unlabelled):
        """One update of D on stopped features: synthetic → 1, real and unlabelled → 0."""
        w = self.loss_weights
        features = [tf.stop_gradient(f) for f in (feature_synthetic, feature_real, feature_unlabelled)]
        with tf.GradientTape() as tape:
            logits_s, logits_r, logits_u = (self.discriminator(f, training=True) for f in features)
            loss_d = w.adversarial * (
                2.0 * bce_with_logits(logits_s, 1.0) + bce_with_logits(logits_r, 0.0) + bce_with_logits(logits_u, 0.0)
            ) / 2.0
            scaled = self.d_optimizer.scale_loss(loss_d)
        variables = self.discriminator.trainable_variables
        self.d_optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        accuracy = discriminator_accuracy(logits_s, tf.concat([logits_r, logits_u], axis=0))
        return {"loss_D": loss_d, "D_accuracy": accuracy}

    @staticmethod
    def _stateless(model):
        """`model` called in training mode (batch statistics) without changing any of its
        variables: how the G step consults D, and how a D-only step runs B."""

        def call(x, training=True):
            outputs, _ = model.stateless_call(
                [v.value for v in model.trainable_variables],
                [v.value for v in model.non_trainable_variables],
                x,
                training=training,
            )
            return outputs

        return call

    def _content(self, defocus_map):
        return self.content_net(tf.cast(defocus_map, self.content_net.compute_dtype), training=False)

    def _pretrain_step(self, batch):
        with tf.GradientTape() as tape:
            output = self.blur_net(batch["synthetic_image"], training=True)
            loss_b = mse(output["defocus"], batch["synthetic_defocus"])
            scaled = self.g_optimizer.scale_loss(loss_b)
        variables = self.blur_net.trainable_variables
        # the auxiliary heads take no part in this loss: leave them out rather than feed None
        pairs = [(g, v) for g, v in zip(tape.gradient(scaled, variables), variables) if g is not None]
        self.g_optimizer.apply_gradients(pairs)
        return {"loss_B": loss_b}
