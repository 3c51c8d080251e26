"""The network is built as the paper describes, and its outputs line up with the priors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ssd.backbones.vgg import VGG16Backbone
from ssd.config import ModelConfig
from ssd.model import ModelError, build_model


def test_vgg_backbone_follows_the_paper() -> None:
    bb = VGG16Backbone(300)
    pools = [m for m in bb.features if isinstance(m, nn.MaxPool2d)]
    assert pools[2].ceil_mode  # pool3: 75 -> 38
    assert (pools[4].kernel_size, pools[4].stride, pools[4].padding) == (3, 1, 1)  # pool5
    fc6 = bb.fc[0]
    assert fc6.kernel_size == (3, 3) and fc6.dilation == (6, 6) and fc6.out_channels == 1024
    assert bb.fc[2].kernel_size == (1, 1)  # fc7
    assert torch.all(bb.l2norm.weight == 20.0)


@pytest.mark.parametrize("backbone", ["vgg16", "efficientnet_lite0"])
def test_forward_returns_raw_predictions_for_every_prior(backbone: str) -> None:
    cfg = ModelConfig(backbone=backbone, backbone_weights=None)
    model = build_model(cfg, num_classes=3).eval()
    s = cfg.resolved_input_size
    with torch.inference_mode():
        logits, offsets = model(torch.rand(2, 3, s, s))
    a = model.priors.shape[0]
    assert logits.shape == (2, a, 4) and offsets.shape == (2, a, 4)
    assert torch.isfinite(logits).all() and torch.isfinite(offsets).all()


def test_head_width_is_k_times_classes_plus_one() -> None:
    model = build_model(ModelConfig(backbone="vgg16", backbone_weights=None), num_classes=20)
    assert [c.out_channels for c in model.head.cls] == [k * 21 for k in (4, 6, 6, 6, 4, 4)]
    assert [c.out_channels for c in model.head.box] == [k * 4 for k in (4, 6, 6, 6, 4, 4)]
    assert model.head.cls[0].kernel_size == (3, 3)


def test_vgg_loads_a_torchvision_state_dict_and_subsamples_fc(tmp_path) -> None:
    from torchvision.models import vgg16

    torch.manual_seed(0)
    ref = vgg16(weights=None)
    path = tmp_path / "vgg16.pth"
    torch.save(ref.state_dict(), path)
    model = build_model(ModelConfig(backbone="vgg16", backbone_weights=str(path)), num_classes=2)
    bb = model.backbone
    assert torch.equal(bb.features[21].weight, ref.features[21].weight)  # conv4_3
    w6 = ref.classifier[0].weight.view(4096, 512, 7, 7)[::4, :, ::3, ::3]
    assert torch.equal(bb.fc[0].weight, w6)


def test_bad_weights_path_is_a_clear_error() -> None:
    with pytest.raises(
        ModelError, match=r"model\.backbone_weights: file 'nope\.pth' does not exist"
    ):
        build_model(ModelConfig(backbone="vgg16", backbone_weights="nope.pth"), num_classes=2)


def test_input_too_small_names_the_key() -> None:
    with pytest.raises(ModelError, match=r"model.input_size=64 is too small"):
        build_model(ModelConfig(backbone="vgg16", input_size=64), num_classes=2)
