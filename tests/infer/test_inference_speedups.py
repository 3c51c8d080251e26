"""Inference speed-ups change nothing: folded BatchNorm and grouped NMS give the same output."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import batched_nms

from ssd.config import ModelConfig
from ssd.model.builder import build_model
from ssd.model.fusion import fold_batchnorm
from ssd.model.postprocess import grouped_nms


def test_folded_batchnorm_gives_the_same_predictions() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(input_size=160, backbone_weights=None), num_classes=3)
    model.train()
    with torch.no_grad():  # non-trivial running statistics
        for _ in range(3):
            model(torch.rand(4, 3, 160, 160))
    model.eval()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # original untouched
    x = torch.rand(2, 3, 160, 160)
    with torch.inference_mode():
        for a, b in zip(model(x), folded(x), strict=True):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_grouped_nms_equals_batched_nms_on_many_boxes() -> None:
    g = torch.Generator().manual_seed(0)
    n = 6000  # above batched_nms's 4000-coordinate switch
    xy = torch.rand(n, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=g) * 40], dim=1)
    scores = torch.rand(n, generator=g)
    groups = torch.randint(0, 37, (n,), generator=g)
    ours = grouped_nms(boxes, scores, groups, 0.45)
    ref = batched_nms(boxes, scores, groups, 0.45)
    assert set(ours.tolist()) == set(ref.tolist())
    # same order up to exact score ties (whose order batched_nms leaves unspecified)
    assert torch.equal(scores[ours], scores[ref])
