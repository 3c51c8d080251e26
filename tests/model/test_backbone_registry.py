"""Adding a backbone is its own module plus one registry line: here a trivial one, defined
in this file and registered with :func:`ssd.model.backbones.register`, is validated by the
config, built, trained one step, saved, loaded and described, with no other file edited."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from ssd.config import ModelConfig, TrainConfig
from ssd.errors import ConfigError
from ssd.model.backbones import BACKBONES, BackboneSpec, register, spec_for
from ssd.model.builder import build_loss, build_model, describe_model
from ssd.model.weights import load_model, save_detector


class TinyBackbone(nn.Module):
    """Two stride-4 stages: maps of side S/4 and S/16."""

    mean = (0.5, 0.5, 0.5)
    std = (0.25, 0.25, 0.25)

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(8, 16, 3, stride=4, padding=1), nn.ReLU())
        self.out_channels = [8, 16]

    def forward(self, x: Tensor) -> list[Tensor]:
        first = self.a(x)
        return [first, self.b(first)]


SPEC = BackboneSpec(
    name="tiny",
    module=TinyBackbone,
    build=lambda input_size, fine_map: TinyBackbone(),
    input_size=64,
    head="conv",
    min_input_size=32,
    aspect_ratios=lambda num_maps: [[2.0] for _ in range(num_maps)],
    load_pretrained=lambda backbone, weights: "none (a test backbone)",
)


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> BackboneSpec:
    monkeypatch.setitem(BACKBONES, "tiny", BACKBONES.get("tiny", SPEC))  # restored after
    return register(SPEC)  # the one line a new backbone adds


def test_a_registered_backbone_builds_trains_saves_and_loads(
    tiny: BackboneSpec, tmp_path: Path
) -> None:
    cfg = ModelConfig(backbone="tiny")
    assert (cfg.resolved_input_size, cfg.resolved_head) == (64, "conv")  # from its spec
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=2)
    assert spec_for(model.backbone) is tiny
    desc = describe_model(cfg, 2)
    assert desc["feature_maps"] == [[16, 16], [4, 4]]
    assert desc["num_priors"] == (16 * 16 + 4 * 4) * 4  # {1, 2, 1/2} + the extra square

    loss = build_loss(model, TrainConfig())
    logits, offsets = model(torch.rand(2, 3, 64, 64))
    targets = [
        {"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[20.0, 10.0, 60.0, 30.0]]), "labels": torch.tensor([2])},
    ]
    out = loss(logits, offsets, targets)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and model.backbone.a[0].weight.grad is not None

    path = save_detector(tmp_path / "det", model, cfg, ["cat", "dog"])
    loaded, loaded_cfg, names = load_model(path)
    assert loaded_cfg.backbone == "tiny" and names == ["cat", "dog"]
    model.eval()
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(loaded(x), model(x))


def test_an_unknown_backbone_names_the_registered_ones(tiny: BackboneSpec) -> None:
    with pytest.raises((ConfigError, ValueError), match="tiny"):
        ModelConfig(backbone="resnet")
