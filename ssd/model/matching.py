"""Matching default boxes to ground truth (paper §2.2, "Matching strategy").

"We begin by matching each ground truth box to the default box with the best jaccard
overlap ... Unlike MultiBox, we then match default boxes to any ground truth with jaccard
overlap higher than a threshold (0.5)." This is what torchvision's ``SSDMatcher`` does;
here it runs on a whole padded batch at once (no Python loop over images or boxes).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_convert, box_iou


def pad_targets(boxes: list[Tensor], labels: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Stack per-image ground truth into ``[N, G, 4]`` boxes, ``[N, G]`` labels and a mask."""
    n = len(boxes)
    g = max((int(b.shape[0]) for b in boxes), default=0)
    device = boxes[0].device if boxes else torch.device("cpu")
    out_boxes = torch.zeros((n, max(g, 1), 4), dtype=torch.float32, device=device)
    out_labels = torch.zeros((n, max(g, 1)), dtype=torch.int64, device=device)
    valid = torch.zeros((n, max(g, 1)), dtype=torch.bool, device=device)
    for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):  # per image, not per box
        k = int(b.shape[0])
        out_boxes[i, :k] = b
        out_labels[i, :k] = lab
        valid[i, :k] = True
    return out_boxes, out_labels, valid


def match(gt_boxes: Tensor, valid: Tensor, priors: Tensor, iou_threshold: float = 0.5) -> Tensor:
    """Index of the matched ground truth for every default box, ``-1`` for background.

    Args:
        gt_boxes: ``[N, G, 4]`` (x1, y1, x2, y2), padded; same units as ``priors``.
        valid: ``[N, G]`` bool, False for padding.
        priors: ``[A, 4]`` default boxes (cx, cy, w, h).
        iou_threshold: default boxes with IoU >= this take their best ground truth.

    Returns:
        ``[N, A]`` int64 in ``[-1, G)``.
    """
    n, g, _ = gt_boxes.shape
    a = priors.shape[0]
    prior_xyxy = box_convert(priors, "cxcywh", "xyxy")
    iou = box_iou(gt_boxes.reshape(-1, 4), prior_xyxy).reshape(n, g, a)
    iou = iou.masked_fill(~valid[:, :, None], -1.0)
    best_iou, best_gt = iou.max(dim=1)  # [N, A]
    matched = torch.where(best_iou >= iou_threshold, best_gt, torch.full_like(best_gt, -1))
    # Each ground truth takes its best default box, whatever the overlap.
    best_prior = iou.argmax(dim=2)  # [N, G]
    img_idx = torch.arange(n, device=iou.device)[:, None].expand(n, g)[valid]
    gt_idx = torch.arange(g, device=iou.device)[None, :].expand(n, g)[valid]
    matched[img_idx, best_prior[valid]] = gt_idx
    return matched
