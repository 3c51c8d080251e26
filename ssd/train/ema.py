"""An exponential moving average (EMA) of the weights, for evaluation and the saved detector.

Averaging the weights over the last steps of SGD smooths out the noise of single steps;
modern detector trainings keep one (YOLOv5/v8's ``ModelEMA``, timm's ``ModelEmaV3``,
mmdetection's ``EMAHook``). It is ``torch.optim.swa_utils.AveragedModel`` with an EMA
update over parameters *and* buffers (BatchNorm statistics), as those do.

The decay is tied to the budget instead of a constant: a time constant of ``span`` of all
training steps (``decay = 1 - 1 / (span * steps)``), so a 600-step CPU run and a 100k-step
GPU run average over the same share of their training. Early on the decay is capped at
``(1 + n) / (10 + n)`` after ``n`` updates (TensorFlow's ``ExponentialMovingAverage``
with ``num_updates``; timm's warm-up), so the average does not hold on to the random
initial weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel


def ema_decay(span: float, total_steps: int) -> float:
    """The decay whose time constant is ``span`` of ``total_steps`` (at least one step)."""
    return 1.0 - 1.0 / max(1.0, span * total_steps)


Tensors = tuple[Tensor, ...] | list[Tensor]


def _ema_update(decay: float) -> Callable[[Tensors, Tensors, Tensor | int], None]:
    @torch.no_grad()
    def update(averaged: Tensors, current: Tensors, n: Tensor | int) -> None:
        updates = float(n)
        d = min(decay, (1.0 + updates) / (10.0 + updates))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(list(averaged), list(current), 1.0 - d)
        else:  # integer buffers (BatchNorm's num_batches_tracked) follow the model
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)

    return update


def weight_ema(model: nn.Module, span: float, total_steps: int) -> AveragedModel:
    """An EMA of ``model`` (a copy on the same device, in eval mode, no gradients);
    call ``update_parameters(model)`` after each optimizer step and use ``.module``."""
    ema = AveragedModel(
        model, multi_avg_fn=_ema_update(ema_decay(span, total_steps)), use_buffers=True
    )
    ema.module.eval().requires_grad_(False)
    return ema
