"""From raw predictions to detections (paper §3, "Inference": confidence threshold 0.01,
per-class NMS with jaccard 0.45, top 200 per image).

As in the Caffe SSD and torchvision's ``postprocess_detections``, each class first keeps
its ``candidates_per_class`` (400) highest-scoring boxes above the threshold, then NMS
runs per class (``torchvision.ops.batched_nms``), then the best ``detections_per_image``
are kept. Vectorised over the batch: one top-k, then NMS per image and class
(:func:`grouped_nms`: one ``batched_nms`` call for few boxes, one ``nms`` per group for many).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import batched_nms, nms

from ssd.model.boxes import decode


def grouped_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each group (image x class); indices kept, by decreasing score.

    Same result as ``torchvision.ops.batched_nms``. For many boxes, batched_nms loops over
    groups building a mask over *all* boxes for each; here the boxes are sorted by group
    once and NMS runs on each contiguous segment (a loop over groups, not boxes).
    """
    if boxes.numel() <= 4000:  # few boxes: torchvision's offset trick, one nms call
        return batched_nms(boxes, scores, groups, iou_threshold)
    order = torch.argsort(groups, stable=True)
    counts = torch.bincount(groups).tolist()
    b, s = boxes[order], scores[order]
    kept, start = [], 0
    for n in counts:
        if n:
            kept.append(nms(b[start : start + n], s[start : start + n], iou_threshold) + start)
            start += n
    keep = order[torch.cat(kept)]
    return keep[torch.argsort(scores[keep], descending=True, stable=True)]


def select_detections(
    boxes: Tensor,
    scores: Tensor,
    score_threshold: float = 0.01,
    nms_threshold: float = 0.45,
    candidates_per_class: int = 400,
    detections_per_image: int = 200,
) -> list[dict[str, Tensor]]:
    """Per-class top-k, threshold, per-class NMS and top-D on decoded predictions.

    Args:
        boxes: ``[N, A, 4]`` (x1, y1, x2, y2) in pixels.
        scores: ``[N, A, C]`` class probabilities without background.

    Returns:
        Per image ``{boxes, scores, labels in 1..C}``, by decreasing score.
    """
    n, a, num_classes = scores.shape
    k = min(candidates_per_class, a)
    top_scores, top_idx = scores.topk(k, dim=1)  # per image and class: [N, k, C]
    img, rank, cls = torch.nonzero(top_scores > score_threshold, as_tuple=True)
    sel_scores = top_scores[img, rank, cls]
    sel_boxes = boxes[img, top_idx[img, rank, cls]]
    keep = grouped_nms(sel_boxes, sel_scores, img * num_classes + cls, nms_threshold)

    # keep is sorted by decreasing score; group it by image without losing that order.
    keep_img = img[keep]
    order = torch.sort(keep_img, stable=True).indices
    keep, keep_img = keep[order], keep_img[order]
    counts = torch.bincount(keep_img, minlength=n)
    starts = torch.cumsum(counts, 0) - counts
    rank_in_image = torch.arange(keep.numel(), device=keep.device) - starts[keep_img]
    top = rank_in_image < detections_per_image
    keep, keep_img = keep[top], keep_img[top]
    per_image = torch.bincount(keep_img, minlength=n).tolist()
    return [
        {"boxes": b, "scores": s, "labels": lab}
        for b, s, lab in zip(
            sel_boxes[keep].split(per_image),
            sel_scores[keep].split(per_image),
            (cls[keep] + 1).split(per_image),
            strict=True,
        )
    ]


class PostProcessor:
    """Turns ``(cls_logits [N, A, C+1], box_offsets [N, A, 4])`` into per-image detections.

    ``scoring`` is how the model was trained: ``"softmax"`` over background and classes
    (paper), or ``"sigmoid"``, an independent probability per class with the background
    logit ignored (TF Object Detection API models, e.g. ``ssd_mobilenet_v2_coco``).

    Each detection dict has ``boxes`` ``[K, 4]`` (x1, y1, x2, y2) in the pixels of the
    image size given for it (clipped to it), ``scores`` ``[K]`` and ``labels`` ``[K]`` in
    ``1..C``, sorted by decreasing score.
    """

    def __init__(
        self,
        priors: Tensor,
        variances: tuple[float, float] = (0.1, 0.2),
        score_threshold: float = 0.01,
        nms_threshold: float = 0.45,
        candidates_per_class: int = 400,
        detections_per_image: int = 200,
        scoring: str = "softmax",
    ) -> None:
        if scoring not in ("softmax", "sigmoid"):
            raise ValueError(f"scoring must be 'softmax' or 'sigmoid', got {scoring!r}")
        self.scoring = scoring
        self.priors = priors
        self.variances = variances
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.candidates_per_class = candidates_per_class
        self.detections_per_image = detections_per_image

    def __call__(
        self,
        cls_logits: Tensor,
        box_offsets: Tensor,
        image_sizes: Sequence[tuple[int, int]],
        score_threshold: float | None = None,
    ) -> list[dict[str, Tensor]]:
        """Detections per image; ``score_threshold`` (None: this post-processor's) drops
        candidates before NMS."""
        priors = self.priors.to(box_offsets.device)
        sizes = torch.tensor(
            [[w, h, w, h] for h, w in image_sizes], dtype=torch.float32, device=box_offsets.device
        )
        boxes = decode(box_offsets.float(), priors, self.variances) * sizes[:, None, :]
        boxes = torch.minimum(boxes.clamp(min=0), sizes[:, None, :])
        if self.scoring == "sigmoid":
            scores = torch.sigmoid(cls_logits[..., 1:].float())  # [N, A, C]
        else:
            scores = F.softmax(cls_logits.float(), dim=-1)[..., 1:]

        return select_detections(
            boxes, scores,
            self.score_threshold if score_threshold is None else score_threshold,
            self.nms_threshold,
            self.candidates_per_class, self.detections_per_image,
        )  # fmt: skip
