"""Prediction heads (paper §2.1, "Convolutional predictors for detection").

For each feature map, a small convolution predicts ``k (C + 1)`` class scores and ``k 4``
box offsets per location (``k`` default boxes, class 0 = background). Outputs of all maps
are concatenated in the order of :func:`ssd.model.priors.default_boxes`: map, row, column, box.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def _flatten(x: Tensor, k: int) -> Tensor:
    """``[N, k*K, H, W]`` -> ``[N, H*W*k, K]`` (location-major, then box)."""
    n, _, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h * w * k, -1)


def _separable(cin: int, cout: int) -> nn.Sequential:
    """SSDLite predictor: depthwise 3x3 + BN + ReLU6, then a 1x1 conv (MobileNetV2 §6.3)."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU6(inplace=True),
        nn.Conv2d(cin, cout, 1),
    )


class SSDHead(nn.Module):
    """Class and box predictors for every feature map.

    Args:
        in_channels: channels of each feature map.
        boxes_per_location: ``k`` for each map.
        num_classes: object classes, without background.
        kind: ``"conv"`` (3x3 convs, the paper) or ``"ssdlite"`` (depthwise separable).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        boxes_per_location: Sequence[int],
        num_classes: int,
        kind: str = "conv",
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.boxes_per_location = list(boxes_per_location)
        c1 = num_classes + 1
        make = _separable if kind == "ssdlite" else (lambda i, o: nn.Conv2d(i, o, 3, padding=1))
        self.cls = nn.ModuleList(
            make(c, k * c1) for c, k in zip(in_channels, boxes_per_location, strict=True)
        )
        self.box = nn.ModuleList(
            make(c, k * 4) for c, k in zip(in_channels, boxes_per_location, strict=True)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if kind == "ssdlite":
                    nn.init.normal_(m.weight, 0.0, 0.03)  # torchvision SSDLite init
                else:
                    nn.init.xavier_uniform_(m.weight)  # torchvision SSD / Caffe init
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Returns class logits ``[N, A, C+1]`` and box offsets ``[N, A, 4]``."""
        logits, offsets = [], []
        for x, k, cls, box in zip(
            features, self.boxes_per_location, self.cls, self.box, strict=True
        ):
            logits.append(_flatten(cls(x), k))
            offsets.append(_flatten(box(x), k))
        return torch.cat(logits, dim=1), torch.cat(offsets, dim=1)
