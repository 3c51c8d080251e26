"""What to take to production: the F1-optimal confidence threshold and the confusion matrix.

* **F1 against confidence** (:func:`f1_curve`): for each threshold ``t`` on a grid, every
  class's precision and recall counting only detections scoring at least ``t``, with the
  VOC matching of :mod:`ssd.evaluation.voc` (IoU > 0.5, each object matched once, by
  decreasing score; ``difficult`` objects neither count nor are missed). F1 is averaged
  over the classes that have objects, as Ultralytics' ``F1_curve`` does; the threshold with
  the highest mean F1 is the one to deploy (``ssd detect --score-threshold f1``).
* **Confusion matrix** (:func:`confusion_matrix`) at that threshold, with a background
  row and column, as detection trainers draw it: detections and objects of the same image
  are paired class-agnostically at IoU ≥ 0.5, greedily by IoU (each used once); a pair
  counts at ``[object class, detection class]``, an unpaired detection at ``[background,
  class]`` (a false positive on nothing), an unpaired object at ``[class, background]``
  (missed). Rows are the truth, columns the prediction; index 0 is background.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_convert, box_iou

from ssd.evaluation.voc import VocResult

THRESHOLDS = np.round(np.linspace(0.0, 1.0, 101), 2)


@dataclass
class F1Curve:
    """``precision``, ``recall``, ``f1``: ``[T]`` means over the classes that have objects;
    ``per_class_f1``: class id -> ``[T]``; ``best`` the index of the highest mean F1."""

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    per_class_f1: dict[int, np.ndarray]

    @property
    def best(self) -> int:
        return int(np.argmax(self.f1))

    @property
    def best_threshold(self) -> float:
        return float(self.thresholds[self.best])

    def summary(self) -> dict[str, float]:
        b = self.best
        return {
            "f1": float(self.f1[b]),
            "f1_threshold": float(self.thresholds[b]),
            "precision_at_f1": float(self.precision[b]),
            "recall_at_f1": float(self.recall[b]),
        }


def f1_curve(voc: VocResult, thresholds: np.ndarray = THRESHOLDS) -> F1Curve:
    """Precision, recall and F1 against the confidence threshold from a VOC evaluation."""
    precisions, recalls, f1s = [], [], []
    per_class: dict[int, np.ndarray] = {}
    for cat, r in voc.per_class.items():
        if r.num_gt == 0:
            continue
        tp = np.round(r.recall * r.num_gt).astype(np.int64)  # cumulative TPs, by score
        # detections scoring >= t: a prefix of the score-sorted list, n of them
        n = np.searchsorted(-r.scores, -thresholds, side="right")
        kept_tp = np.concatenate([[0], tp])[n]
        precision = np.where(n > 0, kept_tp / np.maximum(n, 1), 0.0)
        recall = kept_tp / r.num_gt
        total = precision + recall
        f1 = 2 * precision * recall / np.where(total > 0, total, 1.0)
        precisions.append(precision)
        recalls.append(recall)
        f1s.append(f1)
        per_class[cat] = f1
    if not f1s:
        zeros = np.zeros_like(thresholds, dtype=np.float64)
        return F1Curve(thresholds, zeros, zeros, zeros, per_class)
    return F1Curve(
        thresholds,
        np.mean(precisions, axis=0),
        np.mean(recalls, axis=0),
        np.mean(f1s, axis=0),
        per_class,
    )


def _xyxy(boxes: list[list[float]]) -> torch.Tensor:
    return box_convert(torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4), "xywh", "xyxy")


def confusion_matrix(
    dataset: dict[str, Any],
    detections: list[dict[str, Any]],
    score_threshold: float,
    iou_threshold: float = 0.5,
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The ``[C + 1, C + 1]`` matrix (row truth, column prediction, 0 = background) and the
    same as ``(truth, prediction)`` pairs, one per object or unpaired detection."""
    num_classes = len(dataset["categories"])
    gts: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for ann in dataset["annotations"]:
        gts[ann["image_id"]].append(ann)
    dets: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for d in detections:
        if d["score"] >= score_threshold:
            dets[d["image_id"]].append(d)
    pairs: list[tuple[int, int]] = []
    for image in dataset["images"]:
        g, p = gts.get(image["id"], []), dets.get(image["id"], [])
        g_cls = [int(a["category_id"]) for a in g]
        p_cls = [int(d["category_id"]) for d in p]
        matched_g: set[int] = set()
        matched_p: set[int] = set()
        if g and p:
            iou = box_iou(_xyxy([a["bbox"] for a in g]), _xyxy([d["bbox"] for d in p]))
            gi, pi = torch.nonzero(iou >= iou_threshold, as_tuple=True)
            order = torch.argsort(iou[gi, pi], descending=True, stable=True)
            for i, j in zip(gi[order].tolist(), pi[order].tolist(), strict=True):
                if i not in matched_g and j not in matched_p:
                    matched_g.add(i)
                    matched_p.add(j)
                    pairs.append((g_cls[i], p_cls[j]))
        pairs += [(g_cls[i], 0) for i in range(len(g)) if i not in matched_g]
        pairs += [(0, p_cls[j]) for j in range(len(p)) if j not in matched_p]
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for truth, predicted in pairs:
        matrix[truth, predicted] += 1
    return matrix, pairs


def deploy_threshold(setting: float | str, metrics_path: str | Path) -> float:
    """``postprocess.detect_score_threshold`` as a number: ``"f1"`` reads the F1-optimal
    threshold that ``ssd evaluate`` wrote to ``metrics_path``.

    Raises:
        ValueError: ``"f1"`` but no evaluation (or no F1 threshold in it) at ``metrics_path``.
    """
    if not isinstance(setting, str):
        return float(setting)
    path = Path(metrics_path)
    try:
        value = json.loads(path.read_text()).get("f1_threshold")
    except (OSError, ValueError, AttributeError):
        value = None
    if not isinstance(value, int | float):
        raise ValueError(
            f"detect_score_threshold 'f1' needs the F1-optimal threshold of an evaluation, "
            f"but {path} has none; run `ssd evaluate` first or give a number"
        )
    return float(value)
