"""Every training setting in one dataclass, with the paper's values as defaults (DESIGN §3).

This is the only place a default lives: each field carries its command-line flag and help text, and
train.py builds its parser from these fields (`add_config_arguments`), so the CLI, the config file
and the code cannot disagree. The run directory stores the config as config.json; a resumed run
must agree with it on everything that shapes the model or the optimisation (`RESUME_MUST_MATCH`).
"""
import argparse
import dataclasses
import json
import pathlib

from dmenet.datasets import POLARITIES, canonical_polarity
from dmenet.files.images import atomic_path
from dmenet.units import DEFAULT_MAX_COC

RESUME_MUST_MATCH = (
    "mode", "batch_size", "crop_size", "learning_rate", "beta1", "lr_decay", "decay_every_epochs",
    "lambda_aux", "lambda_content", "lambda_sharpness", "lambda_adversarial", "lambda_d_lr",
    "syndof_label_format", "max_coc", "pretrain_batch_size", "imagenet", "content_random", "noise", "width",
)
LABEL_FORMATS = ("sigma10", "coc15")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")


def setting(default, help, flag=None, group="optimisation", **argparse_options):
    """A config field with its CLI flag (default: --field-name) and help text."""
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag, "group": group, **argparse_options})


@dataclasses.dataclass
class TrainConfig:
    """Every training setting; the defaults are the paper's (DESIGN §3).

    Example:
        >>> config = TrainConfig(syndof_dir="SYNDOF", real_images_dir="CUHK/image", real_masks_dir="CUHK/gt")
        >>> config.save("runs/bdcs/config.json")
    """

    run_dir: str = setting("runs/dmenet", "checkpoints, logs, config and the exported B", group="run")
    # data (DESIGN §3: SYNDOF, CUHK train split, Flickr)
    syndof_dir: str = setting("", "SYNDOF folder (image/, blur_map/)", "--syndof", "data")
    syndof_label_format: str = setting(
        "sigma10", "sigma10: maps hold σ·10 (current SYNDOF); coc15: the older set read /15 (official checkpoint)",
        "--syndof-labels", "data", choices=LABEL_FORMATS)
    max_coc: int = setting(DEFAULT_MAX_COC, "SYNDOF's max CoC; σ_max = (max_coc − 1)/4", group="data")
    real_images_dir: str = setting("", "real defocused photos (CUHK image/)", "--real-images", "data")
    real_masks_dir: str = setting("", "their binary blur masks (CUHK gt/)", "--real-masks", "data")
    mask_polarity: str = setting("blurred-white", "which class a mask's bright value marks (CUHK: blurred-white; "
                                 "DUT: sharp-white)", group="data", choices=POLARITIES)
    unlabelled_dir: str = setting("", "real photos without labels (Flickr); default: the real images",
                                  "--unlabelled", "data")
    noise: bool = setting(False, "the original's optional noise augmentation of the input photos "
                          "(0.75·image + 0.25 + 0.0625·N(0, 1))", group="data")
    # model and losses
    mode: str = setting("BDCS", "B, BD, BDC or BDCS (the full model)", group="model", type=str.upper)
    lambda_aux: float = setting(1.0, "weight of the auxiliary MSEs", group="model")
    lambda_content: float = setting(1e-4, "λ_C, content (VGG feature) loss", group="model")
    lambda_sharpness: float = setting(2e-2, "λ_S, sharpness calibration loss", group="model")
    lambda_adversarial: float = setting(1e-3, "λ_adv, adversarial loss (both sides)", group="model")
    lambda_d_lr: float = setting(1.0, "D's learning rate = lr × this", group="model")
    imagenet: bool = setting(True, "start B's encoder from random weights (much worse; for experiments)",
                             "--no-imagenet", "model")
    content_random: bool = setting(False, "use C with random VGG weights (tests/demos only)", group="model")
    vgg19_weights: str = setting("", "Keras VGG19 notop .h5 for B's encoder and C (else Keras' cache / download)",
                                 group="model")
    width: float = setting(1.0, "scale every network's filters by this (quick experiments and tests; the paper's "
                           "networks are 1, which ImageNet weights need)", group="model")
    # optimisation
    batch_size: int = setting(3, "global batch per stream")
    crop_size: int = setting(240, "square crops, a multiple of 16")
    learning_rate: float = setting(1e-4, "Adam's learning rate")
    beta1: float = setting(0.9, "Adam's β1")
    lr_decay: float = setting(0.8, "lr × this every --decay-every epochs")
    decay_every_epochs: int = setting(20, "epochs between learning-rate decays", "--decay-every")
    epochs: int = setting(100, "the paper gives no total; train until the curves flatten")
    steps_per_epoch: int = setting(0, "0: one pass over SYNDOF (images // batch), as the original")
    max_steps: int = setting(0, "stop after this many steps (overrides --epochs)")
    pretrain_epochs: int = setting(0, "B-only MSE phase first (batch --pretrain-batch-size)")
    pretrain_batch_size: int = setting(8, "batch of the pretraining phase")
    pretrain_max_steps: int = setting(0, "stop pretraining after this many steps")
    seed: int = setting(0, "seed of weights, crops and shuffling")
    # bookkeeping and hardware
    checkpoint_every: int = setting(300, "steps between checkpoints", group="run")
    keep_checkpoints: int = setting(3, "checkpoints kept", group="run")
    tensorboard_every: int = setting(5, "steps between TensorBoard scalars", group="run")
    sample_every: int = setting(1000, "steps between sample sheets", group="run")
    strategy: str = setting("auto", "tf.distribute: auto mirrors over all local GPUs; multiworker spans processes "
                                  "and machines (TF_CONFIG or a SLURM job step; docs/training.md, 'Multi-worker training')", group="run",
                                  choices=STRATEGIES)
    mixed_precision: bool = setting(False, "float16 compute with loss scaling (GPUs)", group="run")
    remat: bool = setting(False, "recompute B's blocks during backpropagation instead of storing their activations "
                          "(less memory for one more forward pass of B per step; same results)", group="run")
    jit_compile: bool = setting(False, "compile the step with XLA", "--xla", "run")

    def __post_init__(self):
        self.mask_polarity = canonical_polarity(self.mask_polarity)  # also the names older runs stored
        self.mode = self.mode.upper()

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
        return [f"{k}: run has {theirs.get(k)!r}, now {mine[k]!r}" for k in RESUME_MUST_MATCH if mine[k] != theirs.get(k)]


GROUP_TITLES = {"run": "run, bookkeeping and hardware", "data": "data", "model": "model and losses",
                "optimisation": "optimisation"}


def add_config_arguments(parser):
    """One option per TrainConfig field, `dest` = the field's name; options not given stay unset
    (argparse.SUPPRESS), so `TrainConfig(**vars(args))`-style construction keeps the defaults above.

    Example:
        >>> parser = argparse.ArgumentParser(); add_config_arguments(parser)
        >>> TrainConfig(**config_values(parser.parse_args(["--mode", "bd"]))).mode
        'BD'
    """
    groups = {}
    for field in dataclasses.fields(TrainConfig):
        meta = dict(field.metadata)
        group = meta.pop("group")
        if group not in groups:
            groups[group] = parser.add_argument_group(GROUP_TITLES[group])
        flag = meta.pop("flag") or "--" + field.name.replace("_", "-")
        options = {"dest": field.name, "default": argparse.SUPPRESS, "help": meta.pop("help")}
        if field.type in (bool, "bool"):
            options["action"] = "store_false" if field.default else "store_true"
        else:
            options["type"] = meta.pop("type", None) or type(field.default)
            options["help"] += f" (default {field.default!r})" if field.default != "" else ""
        groups[group].add_argument(flag, **options, **meta)
    return parser


def config_values(args):
    """The TrainConfig fields set on the command line."""
    names = {field.name for field in dataclasses.fields(TrainConfig)}
    return {name: value for name, value in vars(args).items() if name in names}


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
