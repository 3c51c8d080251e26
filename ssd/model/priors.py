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

TensorFlow Object Detection API's layout (``multiple_grid_anchor_generator``, the layout of
its COCO-trained ``ssd_mobilenet_v2``) is here too, :func:`tf_grid_anchors`: it differs
from the paper's in three ways. Scales ``s_k = min + (max - min) k / (m - 1)`` for
``k = 0..m-1``, then ``1.0`` (only used for the interpolated box of the last map); each
listed aspect ratio (1, 2, 0.5, 3, 0.3333: ``0.3333`` as written, not 1/3) gives one box
``w = s sqrt(r)``, ``h = s / sqrt(r)``, and the extra square ``sqrt(s_k s_k+1)`` comes last;
with ``reduce_lowest`` the first map has only ``(0.1, 1), (s_0, 2), (s_0, 0.5)``. Centres and
the box order are the paper layout's; boxes are not clipped. Values checked against the
Const nodes of ``ssd_mobilenet_v2_coco_2018_03_29`` (tests/model/test_coco_port.py).

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


TF_ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 0.3333)  # ssd_mobilenet_v2_coco pipeline.config
TF_LOWEST_SCALE = 0.1  # hard-coded in create_ssd_anchors for reduce_boxes_in_lowest_layer


def tf_box_specs(
    num_maps: int,
    min_scale: float = 0.2,
    max_scale: float = 0.95,
    aspect_ratios: Sequence[float] = TF_ASPECT_RATIOS,
    reduce_lowest: bool = True,
    interpolated_ratio: float = 1.0,
) -> list[list[tuple[float, float]]]:
    """Per map, the ``(scale, aspect ratio)`` of each box at one location, in TF's order."""
    if num_maps < 2:
        raise ValueError(f"TF's SSD anchors need at least 2 feature maps, got {num_maps}")
    scales = [min_scale + (max_scale - min_scale) * k / (num_maps - 1) for k in range(num_maps)]
    scales.append(1.0)
    specs = []
    for k in range(num_maps):
        s, s_next = scales[k], scales[k + 1]
        if k == 0 and reduce_lowest:
            specs.append([(TF_LOWEST_SCALE, 1.0), (s, 2.0), (s, 0.5)])
            continue
        layer = [(s, float(r)) for r in aspect_ratios]
        if interpolated_ratio > 0:
            layer.append((math.sqrt(s * s_next), interpolated_ratio))
        specs.append(layer)
    return specs


def tf_grid_anchors(
    feature_maps: Sequence[tuple[int, int]],
    min_scale: float = 0.2,
    max_scale: float = 0.95,
    aspect_ratios: Sequence[float] = TF_ASPECT_RATIOS,
    reduce_lowest: bool = True,
    interpolated_ratio: float = 1.0,
) -> Tensor:
    """All default boxes, ``[A, 4]`` float32 (cx, cy, w, h) in [0, 1] of the (square) input.

    Args:
        feature_maps: ``(h, w)`` of each map.
        min_scale, max_scale: first and last map's scale.
        aspect_ratios: ``w / h`` of the boxes of every map but a reduced first one.
        reduce_lowest: the first map gets TF's three reduced boxes.
        interpolated_ratio: aspect ratio of the extra ``sqrt(s_k s_k+1)`` box (0: none).
    """
    specs = tf_box_specs(
        len(feature_maps), min_scale, max_scale, aspect_ratios, reduce_lowest, interpolated_ratio
    )
    out = []
    for (fh, fw), spec in zip(feature_maps, specs, strict=True):
        wh = torch.tensor([(s * math.sqrt(r), s / math.sqrt(r)) for s, r in spec])
        cy = (torch.arange(fh, dtype=torch.float32) + 0.5) / fh
        cx = (torch.arange(fw, dtype=torch.float32) + 0.5) / fw
        gy, gx = torch.meshgrid(cy, cx, indexing="ij")
        centres = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)  # [H*W, 2]
        n = len(spec)
        boxes = torch.cat(
            [centres[:, None, :].expand(-1, n, 2), wh[None].expand(fh * fw, n, 2)], dim=-1
        )
        out.append(boxes.reshape(-1, 4))
    return torch.cat(out, dim=0)
