"""Every training setting in one dataclass, with the paper's values as defaults (DESIGN §3).

The run directory stores it as config.json; a resumed run must agree with it on everything that
shapes the model or the optimisation (`RESUME_MUST_MATCH`).
"""
import dataclasses
import json
import pathlib

from dmenet.encoding import DEFAULT_MAX_COC
from dmenet.image_io import atomic_path

RESUME_MUST_MATCH = (
    "mode", "batch_size", "crop_size", "learning_rate", "beta1", "lr_decay", "decay_every_epochs",
    "lambda_aux", "lambda_content", "lambda_sharpness", "lambda_adversarial", "lambda_d_lr",
    "syndof_label_format", "max_coc", "pretrain_batch_size", "imagenet", "content_random",
)


@dataclasses.dataclass
class TrainConfig:
    run_dir: str = "runs/dmenet"
    # data (DESIGN §3: SYNDOF, CUHK train split, Flickr)
    syndof_dir: str = ""
    syndof_label_format: str = "sigma10"  # or "coc15", the older SYNDOF of the official checkpoint
    max_coc: int = DEFAULT_MAX_COC
    real_images_dir: str = ""
    real_masks_dir: str = ""
    mask_polarity: str = "255-blurred"
    unlabelled_dir: str = ""
    # model and losses
    mode: str = "BDCS"
    lambda_aux: float = 1.0
    lambda_content: float = 1e-4
    lambda_sharpness: float = 2e-2
    lambda_adversarial: float = 1e-3
    lambda_d_lr: float = 1.0
    imagenet: bool = True  # ImageNet VGG19 for B's encoder (and C); False only when asked
    content_random: bool = False  # C with random weights: only for tests and demos, when asked
    vgg19_weights: str = ""
    # optimisation
    batch_size: int = 3
    crop_size: int = 240
    learning_rate: float = 1e-4
    beta1: float = 0.9
    lr_decay: float = 0.8
    decay_every_epochs: int = 20
    epochs: int = 100  # the paper does not state a total; train until the curves flatten
    steps_per_epoch: int = 0  # 0: one pass over SYNDOF (len // batch), as the original
    max_steps: int = 0  # 0: epochs × steps_per_epoch; set for short runs
    pretrain_epochs: int = 0  # optional B-only MSE phase before the main one
    pretrain_batch_size: int = 8
    pretrain_max_steps: int = 0
    seed: int = 0
    # bookkeeping
    checkpoint_every: int = 300
    keep_checkpoints: int = 3
    tensorboard_every: int = 5
    sample_every: int = 1000
    # hardware
    strategy: str = "auto"  # auto | default | mirrored | multiworker
    mixed_precision: bool = False
    jit_compile: bool = False

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**values)

    def save(self, path):
        with atomic_path(path) as temporary:
            pathlib.Path(temporary).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path):
        return cls.from_dict(json.loads(pathlib.Path(path).read_text()))

    def mismatches(self, other):
        """Settings in RESUME_MUST_MATCH on which two configs differ, as readable lines."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{k}: run has {theirs[k]!r}, now {mine[k]!r}" for k in RESUME_MUST_MATCH if mine[k] != theirs[k]]


def dataset_root_paths(root):
    """The original layout under one root: train/SYNDOF, train/CUHK (image/, gt/), train/Flickr."""
    root = pathlib.Path(root)
    train = root / "train" if (root / "train").is_dir() else root
    return {
        "syndof_dir": str(train / "SYNDOF"),
        "real_images_dir": str(train / "CUHK" / "image"),
        "real_masks_dir": str(train / "CUHK" / "gt"),
        "unlabelled_dir": str(train / "Flickr"),
    }
