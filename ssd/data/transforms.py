"""SSD augmentation (paper §2.2 "Data augmentation") from ``torchvision.transforms.v2``.

Training: photometric distortion, zoom out (expand up to 4x on a mean-colour canvas),
the paper's IoU-constrained random crop (minimum IoU sampled from {0, 0.1, 0.3, 0.5,
0.7, 0.9, none}, scale 0.3..1, aspect 0.5..2), horizontal flip, resize to the model's
square input, then float in [0, 1]. Evaluation: resize + float only.

Output contract: image ``float32 [3, size, size]`` in [0, 1] (NOT mean/std normalised:
the model normalises inside its forward); ``target["boxes"]`` XYXY pixels of the
resized image; degenerate boxes removed with ``labels`` and ``difficult`` kept aligned.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from ssd.config import AugmentConfig


def _labels_and_difficult(inputs: Any) -> tuple[torch.Tensor, ...]:
    """For ``SanitizeBoundingBoxes``: the per-box tensors to filter with the boxes."""
    target = inputs[1] if isinstance(inputs, tuple | list) else inputs
    return tuple(target[k] for k in ("labels", "difficult") if k in target)


def _to_float() -> v2.Transform:
    return v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True)


def build_train_transforms(size: int, cfg: AugmentConfig | None = None) -> v2.Compose:
    """The SSD training pipeline for a ``size`` x ``size`` model input."""
    cfg = cfg or AugmentConfig()
    steps: list[v2.Transform] = []
    if cfg.photometric_p > 0:
        steps.append(v2.RandomPhotometricDistort(p=cfg.photometric_p))
    if cfg.zoom_out_p > 0 and cfg.zoom_out_max > 1:
        steps.append(
            v2.RandomZoomOut(
                fill={tv_tensors.Image: list(cfg.fill), "others": 0},
                side_range=(1.0, cfg.zoom_out_max),
                p=cfg.zoom_out_p,
            )
        )
    if cfg.iou_crop:
        steps.append(v2.RandomIoUCrop(min_scale=cfg.crop_min_scale, trials=cfg.crop_trials))
        steps.append(v2.SanitizeBoundingBoxes(labels_getter=_labels_and_difficult))
    if cfg.hflip_p > 0:
        steps.append(v2.RandomHorizontalFlip(p=cfg.hflip_p))
    steps += [
        v2.Resize((size, size), antialias=True),
        _to_float(),
        v2.ClampBoundingBoxes(),
        v2.SanitizeBoundingBoxes(labels_getter=_labels_and_difficult),
    ]
    return v2.Compose(steps)


def build_eval_transforms(size: int) -> v2.Compose:
    """Resize to ``size`` x ``size`` and convert to float in [0, 1]; boxes follow."""
    return v2.Compose([v2.Resize((size, size), antialias=True), _to_float()])
