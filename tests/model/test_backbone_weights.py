"""The EfficientNet-Lite0 ImageNet weights load correctly: the network sees a cat."""

from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as TF

from ssd.config import ModelConfig
from ssd.model.backbones.efficientnet_lite import EfficientNetLite0, load_lite0_weights
from ssd.model.builder import build_model

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_lite0_with_shipped_classifier_labels_chelsea_as_a_cat() -> None:
    from skimage import data

    net = EfficientNetLite0().eval()
    missing, unexpected = load_lite0_weights(net)
    assert missing == [] and unexpected == []
    img = torch.from_numpy(data.chelsea()).permute(2, 0, 1)
    x = TF.resize(TF.to_dtype(img, torch.float32, scale=True), [224, 224], antialias=True)
    x = (x - torch.tensor(net.mean)[:, None, None]) / torch.tensor(net.std)[:, None, None]
    with torch.inference_mode():
        probs = net(x[None]).softmax(-1)[0]
    top = int(probs.argmax())
    assert top in IMAGENET_CATS, f"top-1 class {top} is not a cat"
    assert probs[list(IMAGENET_CATS)].sum() > 0.5


def test_detector_backbone_starts_from_the_imagenet_weights() -> None:
    ref = EfficientNetLite0()
    load_lite0_weights(ref)
    model = build_model(ModelConfig(backbone="efficientnet_lite0"), num_classes=2)
    body = model.backbone.body
    assert torch.equal(body._conv_stem.weight, ref._conv_stem.weight)
    assert torch.equal(body._blocks[15]._project_conv.weight, ref._blocks[15]._project_conv.weight)
