"""Config -> objects, in one place (as detectron2's ``from_config``).

Every component (:class:`~ssd.model.network.SSD`, the backbones,
:func:`ssd.model.priors.default_boxes`, :class:`~ssd.model.loss.MultiBoxLoss`,
:class:`~ssd.model.postprocess.PostProcessor`) takes explicit arguments and knows nothing
of the config; the functions here read one config section each and build them.
Config -> default boxes is written once: :func:`prior_layout`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ssd.config import ModelConfig, PostprocessConfig, TrainConfig
from ssd.errors import ModelError
from ssd.model.backbones import BACKBONES, BackboneSpec
from ssd.model.heads import SSDHead
from ssd.model.loss import MultiBoxLoss
from ssd.model.network import SSD
from ssd.model.postprocess import PostProcessor
from ssd.model.priors import (
    boxes_per_location,
    default_boxes,
    paper_scales,
    tf_box_specs,
    tf_grid_anchors,
)

log = logging.getLogger(__name__)

DEFAULT_NUM_CLASSES = 20  # used by `ssd info` when neither config nor data says (VOC)


# ----------------------------------------------------------------------------- default boxes


def backbone_spec(cfg: ModelConfig) -> BackboneSpec:
    """The spec of ``model.backbone`` (the config validated the name)."""
    return BACKBONES[cfg.backbone]


def build_backbone(cfg: ModelConfig) -> nn.Module:
    """The configured backbone with random weights (see :func:`load_backbone_weights`)."""
    spec = backbone_spec(cfg)
    size = cfg.resolved_input_size
    if size < spec.min_input_size:
        raise ModelError(
            f"model.input_size={size} is too small for the {cfg.backbone} backbone's feature maps; "
            f"use at least {spec.min_input_size} (paper: 300 or 512; SSDLite: 320)"
        )
    return spec.build(size, cfg.fine_map)


def feature_map_sizes(cfg: ModelConfig) -> list[tuple[int, int]]:
    """``(h, w)`` of every feature map, by a dry forward pass on the meta device (no compute)."""
    with torch.device("meta"):
        backbone = build_backbone(cfg).eval()
        size = cfg.resolved_input_size
        feats = backbone(torch.empty(1, 3, size, size))
    return [(int(f.shape[-2]), int(f.shape[-1])) for f in feats]


@dataclass(frozen=True)
class PriorLayout:
    """Everything that fixes the default boxes of a model config (paper §2.2).

    ``scales`` has one value per map plus one; ``aspect_ratios`` per map the ratios besides 1.
    ``kind`` ``"tf"``: TensorFlow's anchor layout (:func:`ssd.model.priors.tf_grid_anchors`)
    between ``scales[0]`` and ``scales[-2]``; ``aspect_ratios`` then lists the ratio of every
    box of a location (the interpolated square's 1 included).
    """

    feature_maps: list[tuple[int, int]]
    scales: list[float]
    aspect_ratios: list[list[float]]
    steps: list[float] | None
    input_size: int
    clip: str
    kind: str = "paper"

    def boxes(
        self, scales: list[float] | None = None, aspect_ratios: list[list[float]] | None = None
    ) -> Tensor:
        """``[A, 4]`` (cx, cy, w, h) default boxes; other scales / ratios on the same maps."""
        if self.kind == "tf":
            if scales is not None or aspect_ratios is not None:
                raise ModelError(
                    "model.priors.layout 'tf' has TensorFlow's fixed anchors: scales and "
                    "aspect ratios fitted to the data apply to layout 'paper' only"
                )
            return tf_grid_anchors(self.feature_maps, self.scales[0], self.scales[-2])
        return default_boxes(
            self.feature_maps,
            self.scales if scales is None else scales,
            self.aspect_ratios if aspect_ratios is None else aspect_ratios,
            self.steps,
            (self.input_size, self.input_size),
            self.clip,
        )

    @property
    def boxes_per_location(self) -> list[int]:
        if self.kind == "tf":  # one box per listed ratio
            return [len(r) for r in self.aspect_ratios]
        return boxes_per_location(self.aspect_ratios)


def prior_layout(cfg: ModelConfig) -> PriorLayout:
    """Feature maps (dry run), scales and aspect ratios from ``model.priors`` (derived where null).

    Raises:
        ModelError: a list in ``model.priors`` does not have one entry per feature map.
    """
    maps = feature_map_sizes(cfg)
    n = len(maps)
    p = cfg.priors
    if p.layout == "tf":
        specs = tf_box_specs(n, p.min_scale, p.max_scale)  # per map, (scale, ratio) per box
        scales = [p.min_scale + (p.max_scale - p.min_scale) * k / (n - 1) for k in range(n)]
        ratios_tf = [[r for _, r in spec] for spec in specs]
        size = cfg.resolved_input_size
        return PriorLayout(maps, [*scales, 1.0], ratios_tf, None, size, "none", "tf")
    ratios = p.aspect_ratios or backbone_spec(cfg).aspect_ratios(n)
    if len(ratios) != n:
        raise ModelError(
            f"model.priors.aspect_ratios has {len(ratios)} entries but the {cfg.backbone} "
            f"backbone at input_size {cfg.resolved_input_size} has {n} feature maps; "
            "give one list per map or null to derive them"
        )
    if p.scales is not None:
        scales = list(p.scales)
        if len(scales) != n + 1:
            raise ModelError(
                f"model.priors.scales needs {n + 1} values (one per feature map plus one), "
                f"got {len(scales)}"
            )
    else:
        scales = paper_scales(n, p.min_scale, p.max_scale, p.first_scale)
    if p.steps is not None and len(p.steps) != n:
        raise ModelError(f"model.priors.steps needs {n} values, got {len(p.steps)}")
    return PriorLayout(
        maps, scales, [list(r) for r in ratios], p.steps, cfg.resolved_input_size, p.clip
    )


def build_priors(cfg: ModelConfig) -> Tensor:
    """Default boxes ``[A, 4]`` (cx, cy, w, h) in [0, 1] for a model config."""
    return prior_layout(cfg).boxes()


# ----------------------------------------------------------------------------- the network


def load_backbone_weights(backbone: nn.Module, cfg: ModelConfig) -> str:
    """Load the pretrained weights ``model.backbone_weights`` names (null: none); returns a
    short description of what was loaded.

    Raises:
        ModelError: one message for a file that is missing, truncated, not a state dict,
            holds pickled objects (never unpickled), or belongs to another architecture.
    """
    if cfg.backbone_weights is None:
        return "none (random init)"
    return backbone_spec(cfg).load_pretrained(backbone, cfg.backbone_weights)


def build_model(
    cfg: ModelConfig,
    num_classes: int | None = None,
    pretrained: bool = True,
    class_names: Sequence[str] | None = None,
) -> SSD:
    """Build the SSD described by ``cfg``.

    Args:
        cfg: the model section of the config.
        num_classes: object classes without background (overrides ``cfg.num_classes``).
        pretrained: load the configured pretrained backbone weights (False when the full
            detector's weights are loaded afterwards anyway).
        class_names: the classes, for a backbone whose pretrained detector starts the heads
            too (the COCO start keeps the rows of the classes COCO has by name).
    """
    classes = num_classes or cfg.num_classes
    if classes is None:
        raise ModelError("model.num_classes is not set and no dataset gave the class count")
    layout = prior_layout(cfg)
    backbone = build_backbone(cfg)
    if pretrained:
        loaded = load_backbone_weights(backbone, cfg)
        log.info("backbone %s weights: %s", cfg.backbone, loaded)
    channels: list[int] = list(backbone.out_channels)  # type: ignore[arg-type]
    head = SSDHead(channels, layout.boxes_per_location, classes, cfg.resolved_head)
    model = SSD(backbone, head, layout.boxes(), layout.input_size, cfg.variances, cfg.scoring)
    spec = backbone_spec(cfg)
    if pretrained and spec.init_heads is not None and cfg.backbone_weights is not None:
        names = list(class_names or [f"class {i + 1}" for i in range(classes)])
        log.info("%s heads: %s", cfg.backbone, spec.init_heads(model, cfg, names))
    return model


def describe_model(cfg: ModelConfig, num_classes: int | None = None) -> dict[str, Any]:
    """What ``ssd info`` prints: feature maps, default boxes, parameter count."""
    classes = num_classes or cfg.num_classes or DEFAULT_NUM_CLASSES
    model = build_model(cfg, classes, pretrained=False)
    layout = prior_layout(cfg)
    return {
        "backbone": cfg.backbone,
        "head": cfg.resolved_head,
        "input_size": cfg.resolved_input_size,
        "num_classes": classes,
        "num_priors": len(model.priors),
        "feature_maps": [list(m) for m in layout.feature_maps],
        "boxes_per_location": layout.boxes_per_location,
        "scales": [round(s, 4) for s in layout.scales],
        "aspect_ratios": layout.aspect_ratios,
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }


# ----------------------------------------------------------------------------- loss, NMS


def build_loss(model: SSD, cfg: TrainConfig) -> MultiBoxLoss:
    """The MultiBox loss for ``model``'s default boxes with the matching / mining keys of
    ``train`` (``iou_threshold``, ``neg_pos_ratio``, ``alpha``).

    Raises:
        ModelError: the model scores with a sigmoid (the MultiBox loss is a softmax
            cross-entropy: train with ``model.scoring: softmax``).
    """
    if model.scoring != "softmax":
        raise ModelError(
            f"model.scoring is {model.scoring}: training needs softmax (the MultiBox loss is a "
            "softmax cross-entropy over background and classes); set model.scoring: softmax"
        )
    size = model.input_size
    return MultiBoxLoss(
        model.priors,
        (size, size),
        cfg.iou_threshold,
        cfg.neg_pos_ratio,
        cfg.alpha,
        model.variances,
    )


def build_postprocessor(model: SSD, cfg: PostprocessConfig | None = None) -> PostProcessor:
    """Per-class NMS etc. for ``model``'s default boxes; ``cfg`` None = the paper's settings
    (what validation during training uses)."""
    cfg = cfg or PostprocessConfig()
    return PostProcessor(
        model.priors,
        model.variances,
        cfg.score_threshold,
        cfg.nms_threshold,
        cfg.candidates_per_class,
        cfg.detections_per_image,
        scoring=model.scoring,
    )
