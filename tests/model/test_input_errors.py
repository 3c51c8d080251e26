"""Bad weights, configs and servers end in one message, never a traceback: detector and
backbone weights, model.json, --params, non-finite values, deep nesting, long names, an
MLflow server that does not answer."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ssd.cli import app
from ssd.config import ModelConfig, load_config
from ssd.errors import ConfigError, ModelError, WeightsError
from ssd.model.builder import build_model
from ssd.model.weights import load_model, save_detector

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from data_builders import good_voc

NAMES = ["cat", "dog", "bird"]


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def detectors(tmp_path_factory) -> dict[str, Path]:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("detectors")
    cfg = ModelConfig(input_size=128, backbone_weights=None)
    a = save_detector(root / "a", build_model(cfg, 3), cfg, NAMES)
    b = save_detector(root / "b", build_model(cfg, 5), cfg, [*NAMES, "x", "y"])
    return {"a": a, "b": b}


def _broken(detectors: dict[str, Path], tmp_path: Path, how: str) -> Path:
    d = tmp_path / how
    shutil.copytree(detectors["a"], d)
    weights, meta = d / "model.safetensors", d / "model.json"
    if how == "other-architecture":
        shutil.copy(detectors["b"] / "model.safetensors", weights)
    elif how == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif how == "not-safetensors":
        torch.save({"w": torch.zeros(3)}, weights)
    elif how == "json-not-an-object":
        meta.write_text(json.dumps([json.loads(meta.read_text())]))
    elif how == "json-nested-deep":
        meta.write_text("[" * 100_000 + "]" * 100_000)
    return d


@pytest.mark.parametrize(
    ("how", "needle"),
    [
        ("other-architecture", "does not hold the weights of the model its model.json describes"),
        ("truncated", "is not a readable safetensors file"),
        ("not-safetensors", "is not a readable safetensors file"),
        ("json-not-an-object", "must be a JSON object"),
        ("json-nested-deep", "is not valid JSON"),
    ],
)
def test_broken_detectors_fail_with_one_message(detectors, tmp_path, how, needle) -> None:
    bad = _broken(detectors, tmp_path, how)
    with pytest.raises(WeightsError, match=needle):
        load_model(bad)
    code, output = _cli("export", "--model", str(bad), "--out", str(tmp_path / "x.onnx"))
    assert code == 2 and needle in output and len(output.strip().splitlines()) == 1


def test_evaluate_with_weights_of_another_architecture(detectors, tmp_path) -> None:
    from ssd.config import DataConfig
    from ssd.data.prepare import prepare_dataset

    src = good_voc(tmp_path / "voc")
    prepare_dataset(
        DataConfig(source="voc", path=str(src), name="ds", prepared_root=str(tmp_path / "p"))
    )
    bad = _broken(detectors, tmp_path, "other-architecture")
    code, output = _cli(
        "evaluate", "--model", str(bad), "--out", str(tmp_path / "r"),
        "--set", f"data.prepared_root={tmp_path / 'p'}", "--set", "data.name=ds",
    )  # fmt: skip
    assert code == 2 and "does not hold the weights" in output
    assert len(output.strip().splitlines()) == 1


class _Payload:
    """Unpickling this would create a file: the test checks it never is."""

    marker = ""

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "vgg16"])
def test_a_pickle_payload_as_backbone_weights_is_refused_without_running(
    tmp_path, backbone: str
) -> None:
    payload = _Payload()
    payload.marker = str(tmp_path / "ran")
    torch.save({"features.0.weight": payload}, tmp_path / "evil.pt")
    cfg = ModelConfig(backbone=backbone, input_size=160, backbone_weights=str(tmp_path / "evil.pt"))
    with pytest.raises(ModelError) as err:
        build_model(cfg, 3)
    message = str(err.value)
    assert "was not loaded" in message and "weights_only" not in message
    assert "\n" not in message and not (tmp_path / "ran").exists()


def test_truncated_or_foreign_backbone_weights(tmp_path) -> None:
    from safetensors.torch import save_file

    save_file({"features.0.weight": torch.zeros(64, 3, 3, 3)}, str(tmp_path / "w.safetensors"))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes((tmp_path / "w.safetensors").read_bytes()[:-20])
    torch.save({"conv.weight": torch.zeros(2)}, tmp_path / "resnet.pt")
    for path, needle in ((cut, "cannot be used"), (tmp_path / "resnet.pt", "cannot be used")):
        cfg = ModelConfig(backbone="vgg16", input_size=160, backbone_weights=str(path))
        with pytest.raises(ModelError, match=needle):
            build_model(cfg, 3)


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    "override",
    ["train.lr=.inf", "train.lr=.nan", "model.priors.min_scale=.nan", "train.grad_clip=-.inf"],
)
def test_non_finite_values_are_refused(override: str) -> None:
    code, output = _cli("info", "--set", override)
    assert code == 2 and "finite number" in output


def test_params_that_are_not_a_yaml_file(tmp_path) -> None:
    binary = tmp_path / "weights.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    deep = tmp_path / "deep.yaml"
    deep.write_text("data: " + "[" * 100_000 + "]" * 100_000 + "\n")
    long_name = tmp_path / ("p" * 300 + ".yaml")
    for path, needle in (
        (tmp_path, "is a folder"),
        (binary, "is not a text (YAML) file"),
        (deep, "nested too deeply"),
        (long_name, "cannot be read: File name too long"),
    ):
        code, output = _cli("info", "--params", str(path))
        assert code == 2 and needle in output, output
        assert len(output.strip().splitlines()) == 1
    with pytest.raises(ConfigError, match="NUL"):
        load_config("params\x00.yaml")


# ------------------------------------------------------------------ MLflow server


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_register_against_a_server_that_does_not_answer(detectors, tmp_path) -> None:
    from ssd.config import DataConfig
    from ssd.data.prepare import prepare_dataset

    src = good_voc(tmp_path / "voc")
    prepare_dataset(
        DataConfig(source="voc", path=str(src), name="ds", prepared_root=str(tmp_path / "p"))
    )
    shutil.copytree(detectors["a"], tmp_path / "m" / "ds" / "ssd")
    (tmp_path / "r" / "ds").mkdir(parents=True)
    (tmp_path / "r" / "ds" / "metrics.json").write_text(json.dumps({"map": 0.5, "split": "test"}))
    uri = f"http://127.0.0.1:{_closed_port()}"
    start = time.perf_counter()
    saved = dict(os.environ)
    for key in [k for k in os.environ if k.startswith("MLFLOW_HTTP")]:
        del os.environ[key]  # MLflow's own defaults: retries for minutes unless bounded
    try:
        code, output = _cli(
            "register",
            "--set", f"data.prepared_root={tmp_path / 'p'}", "--set", "data.name=ds",
            "--set", f"train.out_dir={tmp_path / 'm'}",
            "--set", f"evaluate.out_dir={tmp_path / 'r'}",
            "--set", f"tracking.tracking_uri={uri}",
        )  # fmt: skip
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert time.perf_counter() - start < 30
    assert code == 1 and f"the MLflow server at {uri} does not answer" in output
    assert "make mlflow-ui" in output and len(output.strip().splitlines()) == 1
