"""The MultiBox loss (paper §2.2, eq. 1) with hard negative mining.

``L = (L_conf + alpha * L_loc) / N`` where ``N`` is the number of matched default boxes
(``N = 0`` gives a loss of 0, not NaN, as in torchvision: ``N = max(1, N)``). ``L_loc`` is
smooth L1 (beta = 1) over positives on offsets encoded with variances (0.1, 0.2);
``L_conf`` is softmax cross-entropy over positives plus the negatives with the highest
confidence loss, at most ``neg_pos_ratio`` (3) per positive in each image ("Hard negative
mining"). Numerically the same as torchvision's ``SSD.compute_loss``, batched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssd.model.boxes import encode
from ssd.model.matching import match, pad_targets


class MultiBoxLoss(nn.Module):
    """Matching + encoding + loss for a batch.

    Args:
        priors: ``[A, 4]`` default boxes (cx, cy, w, h) in [0, 1].
        input_size: ``(h, w)`` of the network input; target boxes are in its pixels.
    """

    priors: Tensor
    scale: Tensor

    def __init__(
        self,
        priors: Tensor,
        input_size: tuple[int, int],
        iou_threshold: float = 0.5,
        neg_pos_ratio: float = 3.0,
        alpha: float = 1.0,
        variances: tuple[float, float] = (0.1, 0.2),
        mean_positives: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        # Data-parallel training divides by the positives' mean over all processes (DETR's
        # num_boxes all-reduce, facebookresearch/detr models/detr.py), so the averaged
        # gradient is the one of a single process holding the whole global batch.
        self.mean_positives = mean_positives
        self.register_buffer("priors", priors, persistent=False)
        h, w = input_size
        self.register_buffer(
            "scale", torch.tensor([w, h, w, h], dtype=torch.float32), persistent=False
        )
        self.iou_threshold = iou_threshold
        self.neg_pos_ratio = neg_pos_ratio
        self.alpha = alpha
        self.variances = variances

    def targets(self, targets: Sequence[dict[str, Tensor]]) -> tuple[Tensor, Tensor]:
        """Class targets ``[N, A]`` (0 = background) and box offsets ``[N, A, 4]``."""
        boxes = [t["boxes"].to(self.scale.device, torch.float32) / self.scale for t in targets]
        gt_boxes, gt_labels, valid = pad_targets(boxes, [t["labels"] for t in targets])
        _check_batch(gt_boxes, valid, targets)
        matched = match(gt_boxes, valid, self.priors, self.iou_threshold)
        pos = matched >= 0
        idx = matched.clamp(min=0)
        labels = torch.where(pos, torch.gather(gt_labels, 1, idx), torch.zeros_like(idx))
        matched_boxes = torch.gather(gt_boxes, 1, idx[..., None].expand(-1, -1, 4))
        offsets = encode(matched_boxes, self.priors, self.variances)
        return labels, offsets

    def forward(
        self, cls_logits: Tensor, box_offsets: Tensor, targets: Sequence[dict[str, Tensor]]
    ) -> dict[str, Tensor]:
        """Loss for raw predictions ``[N, A, C+1]`` / ``[N, A, 4]`` and per-image targets.

        ``targets[i]`` holds ``boxes`` ``[K, 4]`` (x1, y1, x2, y2) in input pixels and
        ``labels`` ``[K]`` in ``1..C``. Returns ``loss``, ``loc``, ``conf`` (each already
        divided by N) and ``num_pos``. Softmax and loss are computed in float32.
        """
        cls_logits = cls_logits.float()
        box_offsets = box_offsets.float()
        with torch.no_grad():
            labels, target_offsets = self.targets(targets)
        pos = labels > 0
        num_pos = pos.sum()
        counted = num_pos.float()
        norm = (self.mean_positives(counted) if self.mean_positives else counted).clamp(min=1)

        loc = F.smooth_l1_loss(box_offsets[pos], target_offsets[pos], reduction="sum", beta=1.0)

        ce = F.cross_entropy(
            cls_logits.reshape(-1, cls_logits.shape[-1]), labels.reshape(-1), reduction="none"
        ).reshape(labels.shape)
        # Hard negative mining: the negatives with the highest loss, up to ratio * positives
        # per image. top-k over at most max(num_neg) boxes instead of a full double sort.
        num_neg = (self.neg_pos_ratio * pos.sum(dim=1, keepdim=True)).long()
        neg = torch.zeros_like(pos)
        k = int(min(int(num_neg.max()) if num_neg.numel() else 0, labels.shape[1]))
        if k > 0:
            neg_loss = ce.detach().masked_fill(pos, -float("inf"))
            top = neg_loss.topk(k, dim=1).indices
            rank_ok = torch.arange(k, device=ce.device)[None, :] < num_neg
            neg.scatter_(1, top, rank_ok)
            neg &= ~pos
        conf = (ce * (pos | neg)).sum()
        return {
            "loss": (conf + self.alpha * loc) / norm,
            "loc": loc / norm,
            "conf": conf / norm,
            "num_pos": num_pos,
        }


def _check_batch(gt_boxes: Tensor, valid: Tensor, targets: Sequence[dict[str, Tensor]]) -> None:
    """Reject non-finite or degenerate ground truth, naming the image and the box."""
    bad = ~torch.isfinite(gt_boxes).all(dim=-1)
    bad |= (gt_boxes[..., 2] <= gt_boxes[..., 0]) | (gt_boxes[..., 3] <= gt_boxes[..., 1])
    bad &= valid
    if bool(bad.any()):
        n, g = (int(v) for v in torch.nonzero(bad)[0])
        image = targets[n].get("image_id", n)
        box = targets[n]["boxes"][g].tolist()
        raise ValueError(
            f"image {image}: ground-truth box {g} {box} is degenerate or not finite "
            f"(need finite x1 < x2 and y1 < y2; {int(bad.sum())} bad box(es) in the batch). "
            "Fix the annotation or drop the box (ssd prepare reports and drops such boxes)."
        )
