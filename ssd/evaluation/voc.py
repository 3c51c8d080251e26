"""Pascal VOC mAP@0.5: the VOC2007 11-point form and the area form (VOC2010 and later).

Follows the VOC devkit (``VOCevaldet.m``, and its Python port ``voc_eval.py`` of
py-faster-rcnn):

* detections of a class are ranked by score; each is assigned to the ground truth of the
  same class in the same image with the highest IoU (over *all* of them, difficult and
  already matched ones included);
* IoU > 0.5 with a ``difficult`` box: the detection is ignored (neither TP nor FP);
  IoU > 0.5 with an unmatched box: TP; with an already matched box: FP (duplicate);
  otherwise FP;
* recall is over the non-difficult boxes only;
* VOC07 AP = mean over recall r ∈ {0, 0.1, …, 1} of the highest precision at recall ≥ r;
  area AP = area under the precision envelope (precision made monotonically decreasing).

One deliberate difference from the devkit: boxes are continuous COCO pixel coordinates,
so areas and intersections use ``x2 - x1`` (not the devkit's ``x2 - x1 + 1``).
A class with no non-difficult ground truth has AP ``None`` and is left out of the mean.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class VocClassResult:
    ap07: float | None
    ap: float | None
    num_gt: int  # non-difficult ground truths
    num_difficult: int
    num_detections: int
    recall: np.ndarray  # cumulative, one per counted (non-ignored) detection, by score
    precision: np.ndarray
    scores: np.ndarray  # the score of each counted detection, decreasing


@dataclass
class VocResult:
    map07: float | None
    map: float | None
    per_class: dict[int, VocClassResult]


def voc07_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2007 11-point AP: mean of max(precision[recall >= t]) for t = 0, 0.1, …, 1."""
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    thresholds = np.linspace(0.0, 1.0, 11)
    if recall.size == 0:
        return 0.0
    # mask[t, i] is True when detection i reaches recall threshold t
    mask = recall[None, :] >= thresholds[:, None] - 1e-12
    best = np.where(mask, precision[None, :], 0.0).max(axis=1)
    return float(best.mean())


def voc_area_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2010+ AP: area under the precision envelope, summed where recall changes."""
    mrec = np.concatenate(([0.0], np.asarray(recall, dtype=np.float64), [1.0]))
    mpre = np.concatenate(([0.0], np.asarray(precision, dtype=np.float64), [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[len(a), len(b)]`` of boxes given as ``[x, y, w, h]`` (continuous coordinates)."""
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.minimum(ax2[:, None], bx2[None, :]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(ay2[:, None], by2[None, :]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def voc_evaluate(
    dataset: dict[str, Any], detections: list[dict[str, Any]], iou_threshold: float = 0.5
) -> VocResult:
    """VOC AP per class and mAP (both forms) of COCO-format ``detections`` on ``dataset``.

    Args:
        dataset: COCO dict whose annotations may carry ``difficult: 0|1``.
        detections: checked COCO results ``{image_id, category_id, bbox, score}``.
        iou_threshold: a detection matches when IoU is strictly greater (VOC: 0.5).
    """
    cat_ids = sorted(int(c["id"]) for c in dataset["categories"])
    gts_by_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for ann in dataset["annotations"]:
        gts_by_image[ann["image_id"]].append(ann)
    dets_by_image: dict[Any, list[int]] = defaultdict(list)
    for i, d in enumerate(detections):
        dets_by_image[d["image_id"]].append(i)

    n = len(detections)
    det_cls = np.array([d["category_id"] for d in detections], dtype=np.int64)
    det_score = np.array([d["score"] for d in detections], dtype=np.float64)
    ovmax = np.full(n, -np.inf)
    gt_key = np.full(n, -1, dtype=np.int64)  # global index of the best same-class GT
    gt_difficult: list[bool] = []
    offset = 0
    for image_id, gts in gts_by_image.items():
        gt_difficult.extend(bool(g.get("difficult", 0)) for g in gts)
        idx = dets_by_image.get(image_id)
        if idx:
            ia = np.asarray(idx)
            iou = _iou_xywh(
                np.array([detections[i]["bbox"] for i in idx], dtype=np.float64).reshape(-1, 4),
                np.array([g["bbox"] for g in gts], dtype=np.float64).reshape(-1, 4),
            )
            same = det_cls[ia][:, None] == np.array([g["category_id"] for g in gts])[None, :]
            iou = np.where(same, iou, -np.inf)
            best = iou.argmax(axis=1)
            ovmax[ia] = iou[np.arange(len(idx)), best]
            gt_key[ia] = np.where(np.isfinite(ovmax[ia]), best + offset, -1)
        offset += len(gts)
    difficult = np.array(gt_difficult, dtype=bool)
    gt_cls = np.array(
        [g["category_id"] for gts in gts_by_image.values() for g in gts], dtype=np.int64
    )

    per_class: dict[int, VocClassResult] = {}
    for c in cat_ids:
        order = np.nonzero(det_cls == c)[0]
        order = order[np.argsort(-det_score[order], kind="stable")]
        hit = ovmax[order] > iou_threshold
        key = gt_key[order]
        ignored = hit & (key >= 0) & difficult[np.maximum(key, 0)]
        counted = ~ignored
        # The first counted hit (in score order) on each GT is a TP; later ones are duplicates.
        tp = np.zeros(order.size, dtype=bool)
        hits = np.nonzero(hit & counted)[0]
        _, first = np.unique(key[hits], return_index=True)
        tp[hits[first]] = True
        tp, fp = tp[counted], ~tp[counted]
        num_gt = int(np.sum((gt_cls == c) & ~difficult))
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
        recall = ctp / num_gt if num_gt else np.zeros_like(precision)
        per_class[c] = VocClassResult(
            ap07=voc07_ap(recall, precision) if num_gt else None,
            ap=voc_area_ap(recall, precision) if num_gt else None,
            num_gt=num_gt,
            num_difficult=int(np.sum((gt_cls == c) & difficult)),
            num_detections=int(order.size),
            recall=recall,
            precision=precision,
            scores=det_score[order][counted],
        )
    ap07 = [r.ap07 for r in per_class.values() if r.ap07 is not None]
    ap = [r.ap for r in per_class.values() if r.ap is not None]
    return VocResult(
        map07=float(np.mean(ap07)) if ap07 else None,
        map=float(np.mean(ap)) if ap else None,
        per_class=per_class,
    )
