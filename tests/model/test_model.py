"""The network is built as the paper describes, and its outputs line up with the priors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ssd.config import ModelConfig
from ssd.errors import ModelError
from ssd.model.backbones.vgg import VGG16Backbone
from ssd.model.builder import build_model


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


def test_fine_map_adds_a_stride_8_map_and_leaves_the_others_unchanged() -> None:
    from ssd.model.backbones.efficientnet_lite import EfficientNetLite0Backbone

    torch.manual_seed(0)
    plain = EfficientNetLite0Backbone(320).eval()
    fine = EfficientNetLite0Backbone(320, fine_map=True).eval()
    fine.load_state_dict(plain.state_dict())  # same parameters: tapping adds none
    x = torch.rand(1, 3, 320, 320)
    with torch.inference_mode():
        a, b = plain(x), fine(x)
    assert b[0].shape == (1, 240, 40, 40)  # block 5's expansion: 40 channels x 6, stride 8
    assert fine.out_channels == [240, *plain.out_channels]
    assert len(b) == len(a) + 1
    for got, want in zip(b[1:], a, strict=True):
        torch.testing.assert_close(got, want)

    cfg = ModelConfig(
        backbone_weights=None, fine_map=True, priors={"first_scale": 0.05, "min_scale": 0.1}
    )
    model = build_model(cfg, num_classes=3)
    assert len(model.priors) == 6 * (40 * 40 + 20 * 20 + 10 * 10 + 5 * 5 + 3 * 3 + 2 * 2 + 1)
    # the stride-8 map's boxes come first, with side 0.05 * 320 = 16 px for the first square
    first = model.priors[0]
    assert torch.allclose(first[2:], torch.tensor([0.05, 0.05]))


def test_fine_map_on_vgg_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match=r"model.fine_map is for efficientnet_lite0"):
        build_model(ModelConfig(backbone="vgg16", fine_map=True), num_classes=2)
