"""Sample images during training: what B makes of a fixed batch, next to inputs and labels."""
import numpy as np
import tensorflow as tf

from dmenet.image_io import atomic_path


def sample_panels(trainer, batch):
    """{name: (N, H, W, C) float images in [0, 1]} from B (and S) in inference mode."""
    blur_net = trainer.blur_net
    panels = {
        "1_synthetic_input": batch["synthetic_image"],
        "2_synthetic_defocus_out": blur_net(batch["synthetic_image"], training=False)["defocus"],
        "3_synthetic_defocus_label": batch["synthetic_defocus"],
    }
    if "real_image" in batch and trainer.needs_real:
        real_out = blur_net(batch["real_image"], training=False)["defocus"]
        panels["4_real_input"] = batch["real_image"]
        panels["5_real_defocus_out"] = real_out
        if trainer.sharpness_net is not None:
            panels["6_real_blurred_prob"] = tf.sigmoid(trainer.sharpness_net(real_out, training=False))
        panels["7_real_mask"] = batch["real_mask"]
    return {k: tf.clip_by_value(tf.cast(v, tf.float32), 0.0, 1.0) for k, v in panels.items()}


def save_sample_sheet(panels, path):
    """One PNG: a row per example, a column per panel (maps in a fixed 0–1 grey scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(panels)
    rows = int(panels[names[0]].shape[0])
    figure, axes = plt.subplots(rows, len(names), figsize=(2 * len(names), 2 * rows), squeeze=False)
    for column, name in enumerate(names):
        images = np.asarray(panels[name])
        for row in range(rows):
            image = images[row]
            axis = axes[row][column]
            if image.shape[-1] == 1:
                axis.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
            else:
                axis.imshow(image)
            axis.set_axis_off()
            if row == 0:
                axis.set_title(name.split("_", 1)[1].replace("_", " "), fontsize=7)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=80)
    plt.close(figure)
