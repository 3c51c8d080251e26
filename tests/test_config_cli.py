"""Typed config and the CLI: clear errors for bad keys and values, `ssd info`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ssd.cli import app
from ssd.config import ConfigError, load_config

runner = CliRunner()


def test_overrides_are_typed_and_dotted(tmp_path) -> None:
    p = tmp_path / "params.yaml"
    p.write_text("model:\n  backbone: vgg16\ntrain:\n  lr: 0.1\n")
    cfg = load_config(p, ["train.lr=0.01", "model.priors.steps=[8, 16, 32, 64, 100, 300]"])
    assert cfg.train.lr == 0.01 and cfg.model.backbone == "vgg16"
    assert cfg.model.priors.steps == [8, 16, 32, 64, 100, 300]


def test_unknown_key_names_the_valid_keys(tmp_path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, ["train.learning_rate=0.1"])
    msg = str(err.value)
    assert "unknown key 'train.learning_rate'" in msg and "lr" in msg and "momentum" in msg


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("model.backbone=resnet", "must be one of"),
        ("model.priors.min_scale=-0.2", "model.priors.min_scale"),
        ("model.priors.aspect_ratios=[[2, 0]]", "aspect ratios must be finite numbers > 0"),
        ("train.lr=fast", "train.lr"),
    ],
)
def test_bad_values_fail_with_one_message(override: str, needle: str) -> None:
    result = runner.invoke(app, ["info", "--set", override])
    assert result.exit_code == 2
    assert needle in result.output
    assert "Traceback" not in result.output


def test_info_json_describes_ssd300() -> None:
    result = runner.invoke(app, ["info", "--json", "--params", "configs/ssd300_vgg16.yaml"])
    assert result.exit_code == 0, result.output
    desc = json.loads(result.output)
    assert desc["num_priors"] == 8732
    assert desc["feature_maps"] == [[38, 38], [19, 19], [10, 10], [5, 5], [3, 3], [1, 1]]
    assert desc["boxes_per_location"] == [4, 6, 6, 6, 4, 4]
    assert desc["num_parameters"] > 20_000_000


def test_info_table_is_readable() -> None:
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0
    from ssd.config import load_config
    from ssd.model import describe_model

    expected = describe_model(load_config("params.yaml").model)["num_priors"]
    assert "num_priors" in result.output and str(expected) in result.output
