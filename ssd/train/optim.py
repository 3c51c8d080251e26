"""The optimiser (paper §3: SGD, momentum 0.9, weight decay 5e-4), the learning-rate schedule
(linear warm-up, then cosine or multistep) and the frozen parts of the backbone."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn

from ssd.config import TrainConfig
from ssd.model.backbones import spec_for
from ssd.model.network import SSD

log = logging.getLogger(__name__)


def build_optimizer(model: nn.Module, t: TrainConfig) -> torch.optim.Optimizer:
    """SGD (paper) or AdamW; group 0 decays, group 1 (norm scales, biases) does not."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        # No weight decay on norms' scales and biases (common practice; L2Norm's scale too).
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": t.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if t.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=t.lr)
    return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum)


def warmup_steps(t: TrainConfig, total_steps: int) -> int:
    """The warm-up's length: ``train.warmup_steps``, or ``train.warmup_share`` of
    ``total_steps`` when that is null (a 2-epoch run of 104 steps warms up for 17, not for
    the 100 a 624-step run takes, so its learning rate reaches its peak)."""
    if t.warmup_steps is not None:
        return t.warmup_steps
    return round(t.warmup_share * total_steps)


def lr_lambda(t: TrainConfig, total_steps: int) -> Any:
    """The learning-rate factor of step ``s``: linear warm-up, then cosine or multistep."""
    milestones = [int(m * total_steps) for m in t.milestones]
    warmup = warmup_steps(t, total_steps)

    def factor(step: int) -> float:
        warm = 1.0
        if step < warmup:
            alpha = step / max(1, warmup)
            warm = t.warmup_factor * (1 - alpha) + alpha
        if t.schedule == "cosine":
            progress = min(1.0, step / max(1, total_steps))
            decay = 0.5 * (1 + math.cos(math.pi * progress))
        else:
            decay = t.gamma ** sum(step >= m for m in milestones)
        return warm * decay

    return factor


def _frozen_modules(model: SSD, t: TrainConfig) -> list[nn.Module]:
    """The modules ``train.freeze_stem_blocks`` fixes, as the backbone's spec says (lite0: the
    stem and the first blocks; nothing for a backbone without a pretrained stem)."""
    spec = spec_for(model.backbone)
    if spec is None or t.freeze_stem_blocks == 0:
        return []
    return spec.frozen_prefix(model.backbone, t.freeze_stem_blocks)


def _batchnorm_body(model: SSD) -> nn.Module | None:
    spec = spec_for(model.backbone)
    return None if spec is None else spec.batchnorm_body(model.backbone)


def freeze_backbone_parts(model: SSD, t: TrainConfig) -> None:
    """Fix the pretrained backbone's BatchNorm (statistics and affine) and optionally the stem
    and first blocks (weights and BatchNorm, as torchvision's ``trainable_layers`` and
    Detectron's ``FREEZE_AT`` do): generic low-level filters, and on a CPU the frozen
    high-resolution layers need no backward pass (about 1.7x faster steps at 5 blocks)."""
    body = _batchnorm_body(model)
    if body is None:
        if t.freeze_stem_blocks or t.freeze_bn:
            log.warning(
                "train.freeze_stem_blocks / train.freeze_bn apply to a pretrained backbone "
                "body; ignored for %s (set them to 0 / false to silence this)",
                type(model.backbone).__name__,
            )
        return
    if t.freeze_bn:
        for m in body.modules():
            if isinstance(m, nn.BatchNorm2d):
                for p in m.parameters():
                    p.requires_grad_(False)
    for module in _frozen_modules(model, t):
        for p in module.parameters():
            p.requires_grad_(False)


def set_train_mode(model: SSD, t: TrainConfig) -> None:
    """``model.train()``, with frozen BatchNorm kept on its running statistics."""
    model.train()
    body = _batchnorm_body(model)
    if body is not None and t.freeze_bn:
        for m in body.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
    for module in _frozen_modules(model, t):
        module.eval()
