"""What load_model trusts in a detector folder: finite weights only (finite or nothing holds
at load as at save), and shapes compared before the model is allocated."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from ssd.config import ModelConfig
from ssd.errors import WeightsError
from ssd.model import weights as weights_module
from ssd.model.builder import build_model
from ssd.model.weights import load_model, save_detector


@pytest.fixture(scope="module")
def detector(tmp_path_factory):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="efficientnet_lite0", input_size=128, backbone_weights=None)
    model = build_model(cfg, num_classes=3).eval()
    return save_detector(tmp_path_factory.mktemp("det") / "det", model, cfg, ["a", "b", "c"])


def _copy(detector, tmp_path):  # type: ignore[no-untyped-def]
    out = tmp_path / "det"
    out.mkdir()
    for f in detector.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    return out


def test_weights_with_nan_or_inf_are_refused_at_load_naming_the_tensors(detector, tmp_path) -> None:
    out = _copy(detector, tmp_path)
    state = load_file(str(out / "model.safetensors"))
    names = sorted(k for k, v in state.items() if v.is_floating_point())
    state[names[0]].view(-1)[0] = float("nan")
    state[names[1]].view(-1)[:2] = float("inf")
    save_file(state, str(out / "model.safetensors"), metadata={"format": "ssd", "version": "2"})
    with pytest.raises(WeightsError) as err:
        load_model(out)
    message = str(err.value)
    assert "holds 3 inf/NaN values in 2 tensors" in message
    assert names[0] in message and names[1] in message
    assert "is not loaded; use an earlier checkpoint" in message


def test_a_model_json_naming_more_classes_is_refused_before_the_model_is_allocated(
    detector, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,000 classes for weights of 3: the mismatch is found on a model built on the meta
    device (no memory); the real model is never built."""
    out = _copy(detector, tmp_path)
    meta = json.loads((out / "model.json").read_text())
    meta["class_names"] = [f"c{i}" for i in range(1000)]
    (out / "model.json").write_text(json.dumps(meta))
    built_on: list[str] = []
    build = weights_module.build_model

    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        model = build(*args, **kwargs)
        built_on.append(next(model.parameters()).device.type)
        return model

    monkeypatch.setattr(weights_module, "build_model", recording)
    with pytest.raises(WeightsError, match=r"1000 classes.*of another shape"):
        load_model(out)
    assert built_on == ["meta"]


def test_a_model_json_naming_200000_classes_is_refused_at_once(detector, tmp_path) -> None:
    out = _copy(detector, tmp_path)
    meta = json.loads((out / "model.json").read_text())
    meta["class_names"] = [f"c{i}" for i in range(200_000)]
    (out / "model.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="names 200000 classes, more than the 2000"):
        load_model(out)
