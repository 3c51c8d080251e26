"""The SSD network.

:class:`SSD` is assembled from collaborators passed in (a backbone returning feature maps,
a head, the default boxes); its ``forward`` returns raw predictions only. The loss
(:mod:`ssd.model.loss`) and the post-processing (:mod:`ssd.model.postprocess`) are separate;
:mod:`ssd.model.builder` maps the config to all of them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ssd.model.heads import SSDHead


class SSD(nn.Module):
    """Single Shot MultiBox Detector.

    Args:
        backbone: module mapping normalised images ``[N, 3, S, S]`` to a list of feature maps;
            it must have ``mean`` and ``std`` (per-channel, for inputs in [0, 1]).
        head: module mapping the feature maps to ``(logits [N, A, C+1], offsets [N, A, 4])``.
        priors: ``[A, 4]`` default boxes (cx, cy, w, h) in [0, 1], in the head's order.
        input_size: side of the square network input.
        variances: box-coding variances ``(center, size)`` the offsets are scaled by
            (:mod:`ssd.model.boxes`); the loss and the post-processing take them from here.
        scoring: how the logits were trained to become scores, ``"softmax"`` (background
            included) or ``"sigmoid"`` (one per class); the post-processing takes it from here.
    """

    priors: Tensor
    mean: Tensor
    std: Tensor

    def __init__(
        self,
        backbone: nn.Module,
        head: SSDHead,
        priors: Tensor,
        input_size: int,
        variances: tuple[float, float] = (0.1, 0.2),
        scoring: str = "softmax",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.input_size = input_size
        self.variances = (float(variances[0]), float(variances[1]))
        self.num_classes = head.num_classes
        self.scoring = scoring
        self.register_buffer("priors", priors, persistent=False)
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(backbone.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Raw predictions for images ``[N, 3, S, S]``, float in [0, 1] (not normalised).

        Returns class logits ``[N, A, C+1]`` (0 = background) and box offsets ``[N, A, 4]``
        relative to ``self.priors`` (variances applied, see :mod:`ssd.model.boxes`).
        """
        x = (images - self.mean) / self.std
        return self.head(self.backbone(x))
