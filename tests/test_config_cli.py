"""Typed config and the CLI: clear errors for bad keys and values, `ssd info`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ssd.cli import app
from ssd.config import load_config
from ssd.errors import ConfigError

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
    from ssd.model.builder import describe_model

    expected = describe_model(load_config("params.yaml").model)["num_priors"]
    assert "num_priors" in result.output and str(expected) in result.output


def test_info_counts_the_classes_of_the_prepared_dataset(tmp_path) -> None:
    """A prepared 6-class dataset: ssd info describes the 6-class model ssd train builds."""
    prepared = tmp_path / "prepared" / "six"
    prepared.mkdir(parents=True)
    (prepared / "classes.json").write_text(json.dumps([f"c{i}" for i in range(6)]))
    sets = ["--set", "data.name=six", "--set", f"data.prepared_root={tmp_path / 'prepared'}"]
    result = runner.invoke(app, ["info", "--json", *sets])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["num_classes"] == 6
    fixed = runner.invoke(app, ["info", "--json", *sets, "--set", "model.num_classes=3"])
    assert json.loads(fixed.output)["num_classes"] == 3  # the config's value wins


def test_every_help_text_is_printed_whole() -> None:
    """Rich markup eats "[x,y,w,h]" in a help text (it printed "bbox: , score"): every
    option's help reaches the screen word for word."""
    import typer.main

    group = typer.main.get_command(app)
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        shown = " ".join(
            runner.invoke(app, [name, "--help"], env={"COLUMNS": "400"}).output.split()
        ).replace("│", " ")
        shown = " ".join(shown.split())
        for param in command.params:
            text = " ".join((getattr(param, "help", None) or "").split())
            assert text in shown, (name, param.name, text)


def test_keys_of_the_old_layout_stop_with_their_new_place(tmp_path) -> None:
    p = tmp_path / "params.yaml"
    p.write_text(
        "model:\n  nms_threshold: 0.3\n  iou_threshold: 0.6\n"
        "data:\n  augment:\n    hflip_p: 0.1\nevaluate:\n  box_tolerance_px: 2\n"
    )
    result = runner.invoke(app, ["info", "--params", str(p)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    out = result.output
    assert "'model.nms_threshold' moved to 'postprocess.nms_threshold'" in out
    assert "'model.iou_threshold' moved to 'train.iou_threshold'" in out
    assert "'data.augment' moved to 'train.augment'" in out
    assert "'evaluate.box_tolerance_px' was removed" in out


def test_every_output_is_keyed_by_the_dataset_name() -> None:
    a = load_config(None, ["data.name=a"]).layout
    b = load_config(None, ["data.name=b", "train.out_dir=runs", "evaluate.out_dir=out"]).layout
    assert (str(a.prepared), str(a.detector), str(a.best), str(a.metrics), str(a.registry)) == (
        "data/prepared/a",
        "models/a/ssd",
        "models/a/best",
        "reports/a/metrics.json",
        "reports/a/registry.json",
    )
    assert (str(b.models), str(b.reports)) == ("runs/b", "out/b")
    assert load_config(None, ["data.name=b"]).registered_model_name == "ssd-b"


def test_priors_and_model_code_know_nothing_of_the_config() -> None:
    """Config -> objects happens in ssd/model/builder.py only (no priors <-> model cycle)."""
    import ast

    from stage_code import REPO, imported_modules

    for module in ("priors", "network", "loss", "postprocess", "heads", "boxes", "matching"):
        tree = ast.parse((REPO / "ssd" / "model" / f"{module}.py").read_text())
        imports = imported_modules(tree.body)
        assert "ssd.config" not in imports, module
        assert "ssd.model.builder" not in imports, module
    assert "ssd.model.network" not in imported_modules(
        ast.parse((REPO / "ssd/model/priors.py").read_text()).body
    )


@pytest.mark.parametrize(
    "path",
    ["params.yaml", "configs/bccd.yaml", "configs/bccd_coco.yaml", "configs/ssd300_vgg16.yaml"],
)
def test_shipped_params_files_hold_every_key_dvc_yaml_names(path: str) -> None:
    """Each can be the pipeline's params.yaml: DVC stops on a listed key the file lacks."""
    import yaml
    from stage_code import REPO

    raw = yaml.safe_load((REPO / path).read_text())
    load_config(REPO / path)  # valid
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage in stages.values():
        for key in stage.get("params", []):
            node = raw
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"{path} lacks {key}"
                node = node[part]
