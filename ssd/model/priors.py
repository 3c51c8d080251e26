"""Default boxes (paper §2.2, "Choosing scales and aspect ratios for default boxes").

For ``m`` feature maps the paper sets ``s_k = s_min + (s_max - s_min)(k - 1)/(m - 1)``,
``k = 1..m``, with ``s_min = 0.2`` and ``s_max = 0.9``; conv4_3 gets its own smaller scale
0.1 (§3.1). Each location has boxes of aspect ratio ``a_r`` with ``w = s_k sqrt(a_r)``,
``h = s_k / sqrt(a_r)``, plus an extra square box of scale ``sqrt(s_k s_{k+1})``; centres
are ``((i + 0.5)/|f_k|, (j + 0.5)/|f_k|)``.

Box order (the same as torchvision's ``DefaultBoxGenerator``, so head outputs line up):
map by map, then row ``i`` (y), column ``j`` (x), then the boxes of one location in the
order ``[s_k square, sqrt(s_k s_k+1) square, (r, 1/r) for each ratio r]``.
All boxes are ``(cx, cy, w, h)`` normalised to [0, 1] of the network input.

Pure functions of explicit arguments; :mod:`ssd.model.builder` maps the config to them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def paper_scales(
    num_maps: int, min_scale: float, max_scale: float, first_scale: float | None
) -> list[float]:
    """The paper's ``num_maps + 1`` scales (the last one only feeds ``sqrt(s_m s_{m+1})``).

    With ``first_scale`` (conv4_3's 0.1), the formula spans the remaining ``num_maps - 1``
    maps. ``s_{m+1}`` continues the linear progression one step past ``s_max`` (the Caffe
    SSD300 uses 315/300 = 1.05 there for the same purpose).
    """
    m = num_maps - 1 if first_scale is not None else num_maps
    if m < 1:
        return [first_scale or min_scale, max_scale]
    step = (max_scale - min_scale) / (m - 1) if m > 1 else max_scale - min_scale
    formula = [min_scale + step * k for k in range(m)]
    scales = ([first_scale] if first_scale is not None else []) + formula
    return [*scales, formula[-1] + step]


def boxes_per_location(aspect_ratios: Sequence[Sequence[float]]) -> list[int]:
    """Two squares plus two boxes (r and 1/r) per extra ratio: 4 for {2}, 6 for {2, 3}."""
    return [2 + 2 * len(r) for r in aspect_ratios]


def default_boxes(
    feature_maps: Sequence[tuple[int, int]],
    scales: Sequence[float],
    aspect_ratios: Sequence[Sequence[float]],
    steps: Sequence[float] | None = None,
    image_size: tuple[int, int] = (300, 300),
    clip: str = "none",
) -> Tensor:
    """All default boxes as a ``[A, 4]`` tensor of (cx, cy, w, h) in [0, 1] units.

    Args:
        feature_maps: ``(h, w)`` of each map, from the backbone.
        scales: ``len(feature_maps) + 1`` scales.
        aspect_ratios: per map, the ratios besides 1 (each adds ``r`` and ``1/r``).
        steps: per map, pixel distance between centres (Caffe / torchvision); ``None`` gives
            the paper's ``(i + 0.5) / |f_k|``.
        image_size: ``(h, w)`` of the network input; only used with ``steps``.
        clip: ``"none"``; ``"corners"`` clips every box to the image (Caffe ``clip``);
            ``"size"`` clamps w and h to 1 as torchvision's ``DefaultBoxGenerator(clip=True)``.
    """
    if len(scales) != len(feature_maps) + 1:
        raise ValueError(f"need {len(feature_maps) + 1} scales, got {len(scales)}")
    if len(aspect_ratios) != len(feature_maps):
        raise ValueError(
            f"need aspect ratios for {len(feature_maps)} maps, got {len(aspect_ratios)}"
        )
    out = []
    for k, (fh, fw) in enumerate(feature_maps):
        s_k, s_next = scales[k], scales[k + 1]
        wh = [(s_k, s_k), (math.sqrt(s_k * s_next),) * 2]
        for r in aspect_ratios[k]:
            sq = math.sqrt(r)
            wh += [(s_k * sq, s_k / sq), (s_k / sq, s_k * sq)]
        wh_t = torch.tensor(wh, dtype=torch.float32)
        if clip == "size":
            wh_t = wh_t.clamp(0, 1)
        if steps is not None:
            y_f, x_f = image_size[0] / steps[k], image_size[1] / steps[k]
        else:
            y_f, x_f = fh, fw
        cy = (torch.arange(fh, dtype=torch.float32) + 0.5) / y_f
        cx = (torch.arange(fw, dtype=torch.float32) + 0.5) / x_f
        gy, gx = torch.meshgrid(cy, cx, indexing="ij")
        centres = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)  # [H*W, 2]
        n = len(wh)
        boxes = torch.cat(
            [centres[:, None, :].expand(-1, n, 2), wh_t[None].expand(fh * fw, n, 2)], dim=-1
        )
        out.append(boxes.reshape(-1, 4))
    priors = torch.cat(out, dim=0)
    if clip == "corners":
        x1y1 = (priors[:, :2] - priors[:, 2:] / 2).clamp(0, 1)
        x2y2 = (priors[:, :2] + priors[:, 2:] / 2).clamp(0, 1)
        priors = torch.cat([(x1y1 + x2y2) / 2, x2y2 - x1y1], dim=1)
    return priors
