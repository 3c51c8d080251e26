"""Box coding relative to default boxes: pure tensor functions.

Paper eq. 2: offsets are ``((g_cx - d_cx) / d_w, (g_cy - d_cy) / d_h, log(g_w / d_w),
log(g_h / d_h))``; the Caffe SSD additionally divides by the variances ``(0.1, 0.2)``,
which is torchvision's ``BoxCoder(weights=(10, 10, 5, 5))``.

Shapes broadcast: ``boxes [..., 4]`` against ``priors [..., 4]``. Priors are
``(cx, cy, w, h)``; boxes in and out are ``(x1, y1, x2, y2)`` in the same units as the
priors (normalised to [0, 1] of the network input throughout this package).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.ops import box_convert

# torchvision's BoxCoder clamps dw/dh at log(1000/16) before exp; we do the same so that
# an untrained network's huge outputs decode to finite boxes.
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def encode(boxes: Tensor, priors: Tensor, variances: tuple[float, float] = (0.1, 0.2)) -> Tensor:
    """Encode ``boxes`` (x1, y1, x2, y2) against ``priors`` (cx, cy, w, h) -> offsets [..., 4]."""
    g = box_convert(boxes, "xyxy", "cxcywh")
    center = (g[..., :2] - priors[..., :2]) / (variances[0] * priors[..., 2:])
    size = torch.log(g[..., 2:] / priors[..., 2:]) / variances[1]
    return torch.cat([center, size], dim=-1)


def decode(offsets: Tensor, priors: Tensor, variances: tuple[float, float] = (0.1, 0.2)) -> Tensor:
    """Invert :func:`encode`: offsets [..., 4] against priors (cx, cy, w, h) -> (x1, y1, x2, y2)."""
    center = priors[..., :2] + offsets[..., :2] * variances[0] * priors[..., 2:]
    size = priors[..., 2:] * torch.exp((offsets[..., 2:] * variances[1]).clamp(max=BBOX_XFORM_CLIP))
    return torch.cat([center - 0.5 * size, center + 0.5 * size], dim=-1)
