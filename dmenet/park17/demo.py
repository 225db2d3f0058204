"""`python train.py --method park17 --demo`: train Park's classifier from sharp photos the project ships.

The photos are scikit-image's bundled sample photographs (sharp, in focus, no download), written as
PNGs into the run folder; training then runs with `training.DEMO_SETTINGS` and a shorter schedule.
"""
import pathlib

import numpy as np

# scikit-image's bundled colour photographs that are sharp throughout.
DEMO_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")
DEMO_STEPS = 1500


def write_demo_photos(folder):
    """The bundled photos as PNGs in ``folder`` (kept when already there); returns the folder."""
    import skimage.data

    from dmenet.files.images import write_png

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in DEMO_PHOTOS:
        path = folder / f"{name}.png"
        if not path.is_file():
            write_png(path, np.asarray(getattr(skimage.data, name)(), np.uint8))
    return folder


def run_park17_demo(run_dir="runs/park17_demo", steps=DEMO_STEPS, verbose=1):
    """Write the demo photos and train on them; returns `train_park17`'s summary.

    Example:
        >>> summary = run_park17_demo("runs/park17_demo", steps=300)
        >>> summary["history"][-1]["val_accuracy"]
    """
    from dmenet.park17.training import DEMO_SETTINGS, train_park17

    run_dir = pathlib.Path(run_dir)
    photos = write_demo_photos(run_dir / "demo_photos")
    return train_park17(photos, run_dir, **{**DEMO_SETTINGS, "steps": steps, "verbose": verbose})
