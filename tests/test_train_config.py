"""Settings: paper defaults, the original dataset layout, CLI mapping, and refusing a mismatched resume."""
import json

import pytest

from dmenet.training.config import TrainConfig, dataset_root_paths


def test_defaults_are_the_papers():
    c = TrainConfig()
    assert (c.mode, c.batch_size, c.crop_size, c.learning_rate, c.beta1) == ("BDCS", 3, 240, 1e-4, 0.9)
    assert (c.lr_decay, c.decay_every_epochs, c.pretrain_batch_size) == (0.8, 20, 8)
    assert (c.lambda_aux, c.lambda_content, c.lambda_sharpness, c.lambda_adversarial, c.lambda_d_lr) == (1.0, 1e-4, 2e-2, 1e-3, 1.0)
    assert c.imagenet and not c.content_random


def test_original_layout(tmp_path):
    (tmp_path / "train").mkdir()
    paths = dataset_root_paths(tmp_path)
    assert paths["syndof_dir"] == str(tmp_path / "train" / "SYNDOF")
    assert paths["real_masks_dir"] == str(tmp_path / "train" / "CUHK" / "gt")
    assert paths["unlabelled_dir"] == str(tmp_path / "train" / "Flickr")


def test_cli_maps_to_config(tmp_path):
    from dmenet.cli import train

    config = train.config_from_args(train.parse_args(["--data-root", str(tmp_path), "--mode", "bd", "--batch-size", "4",
                                                      "--lambda-adversarial", "0.01", "--no-imagenet", "--xla"]))
    assert config.mode == "BD" and config.batch_size == 4 and config.lambda_adversarial == 0.01
    assert not config.imagenet and config.jit_compile and config.syndof_dir.endswith("SYNDOF")
    with pytest.raises(SystemExit):
        train.config_from_args(train.parse_args([]))


def test_every_setting_has_one_option_named_after_it_and_one_default():
    """The CLI is derived from TrainConfig: each field is an option whose dest is the field, and an
    option not given leaves the config's own default in place."""
    import dataclasses

    from dmenet.cli import train

    assert train.config_from_args(train.parse_args(["--syndof", "S"])) == TrainConfig(syndof_dir="S")
    for field in dataclasses.fields(TrainConfig):
        flag = field.metadata["flag"] or "--" + field.name.replace("_", "-")
        value = {bool: None, int: "7", float: "0.5", str: "x"}[field.type]
        if field.metadata.get("choices"):
            value = field.metadata["choices"][-1]
        args = train.parse_args([flag] if value is None else [flag, value])
        assert list(vars(args)).count(field.name) == 1 and field.name in vars(args), field.name


def test_older_mask_polarity_names_still_load(tmp_path):
    saved = TrainConfig().to_dict() | {"mask_polarity": "255-sharp"}
    (tmp_path / "c.json").write_text(json.dumps(saved))
    assert TrainConfig.load(tmp_path / "c.json").mask_polarity == "sharp-white"


def test_resume_with_other_model_settings_is_refused(tmp_path):
    from dmenet.training.runner import ConfigMismatchError, train

    TrainConfig(run_dir=str(tmp_path), crop_size=240).save(tmp_path / "config.json")
    with pytest.raises(ConfigMismatchError, match="crop_size: run has 240, now 64"):
        train(TrainConfig(run_dir=str(tmp_path), crop_size=64))
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["crop_size"] == 240


def test_config_round_trip_rejects_unknown_keys(tmp_path):
    config = TrainConfig(mode="BD", seed=7)
    config.save(tmp_path / "c.json")
    assert TrainConfig.load(tmp_path / "c.json") == config
    with pytest.raises(ValueError, match="unknown training settings: typo"):
        TrainConfig.from_dict({**config.to_dict(), "typo": 1})
