"""Why detections fail: the TIDE error types and the AP each would add back if fixed.

Bolya et al., "TIDE: A General Toolbox for Identifying Object Detection Errors", ECCV 2020.
At a foreground IoU ``t_f = 0.5`` and background IoU ``t_b = 0.1`` each false positive and
each missed ground truth (GT) gets exactly one type (paper §2.2, checked in this order):

* ``loc``  – right class, ``t_b ≤ IoU ≤ t_f`` with a GT of its class (mislocalised);
* ``cls``  – wrong class, ``IoU ≥ t_f`` with a GT of another class;
* ``dupe`` – right class, ``IoU ≥ t_f`` with a GT that a higher-scoring detection took;
* ``bkg``  – ``IoU ≤ t_b`` with every GT (fired on background);
* ``both`` – wrong class and ``t_b ≤ IoU ≤ t_f`` (everything else);
* ``miss`` – a GT no detection matched and no ``cls``/``loc`` error would fix.

dAP of a type = AP after an oracle fixes only the errors of that type, minus the AP
(clamped at 0, as the reference code does): a ``cls``/``loc`` error becomes a true positive
(only the highest-scoring one per GT; others are dropped), ``dupe``/``bkg``/``both``
detections are removed, a missed GT is removed. Per size, only errors whose object (the GT
if the error has one, else the detection; area ``w·h`` in pixels², COCO bounds) has that
size are fixed. AP is COCO-style 101-point AP at IoU 0.5, detections capped at 100 per image,
averaged over the classes that have GT or detections (classes with detections but no GT
count as AP 0). This is the behaviour of the reference implementation (PyPI ``tidecv``
1.0.1, ``TIDERun``), which ``tests/evaluation/test_tide_errors.py`` checks against.
``difficult`` objects are ordinary GT here, as in :mod:`ssd.evaluation.coco`.

All AP and dAP values are fractions in [0, 1] (TIDE prints them ×100).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_convert, box_iou

from ssd.data.prepared import SIZES, annotation_area, size_of

ERROR_TYPES: tuple[str, ...] = ("cls", "loc", "both", "dupe", "bkg", "miss")
ERROR_NAMES: dict[str, str] = {
    "cls": "classification",
    "loc": "localization",
    "both": "both (cls + loc)",
    "dupe": "duplicate",
    "bkg": "background",
    "miss": "missed GT",
}


@dataclass
class _Error:
    kind: str
    area: float  # of the GT if the error has one, else of the detection
    det: int = -1  # index into the checked detection list, -1 for a missed GT
    gt: int = -1  # index into the annotation list, -1 if none
    det_class: int = 0
    gt_class: int = 0
    score: float = 0.0
    fixable: bool = False  # cls/loc error pointing at a GT that no detection matched


@dataclass
class TideResult:
    """TIDE summary plus one label per detection and per GT (for browsing, e.g. FiftyOne).

    ``detection_labels[i]`` is ``tp``, an error type, or ``beyond_max_dets`` (not scored,
    past the per-image cap). ``gt_labels[annotation_id]`` is ``tp``, ``miss``, or ``cls`` /
    ``loc`` (missed, but the detection that would fix it has that error).
    """

    ap50: float
    dap: dict[str, float]
    dap_by_size: dict[str, dict[str, float]]
    special: dict[str, float]  # fp: AP gain with perfect precision; fn: with perfect recall
    counts: dict[str, int]
    counts_by_size: dict[str, dict[str, int]]
    detection_labels: list[str]
    detection_iou: list[float]  # best IoU with a GT of the detection's class
    detection_match: list[int | None]  # annotation id of the matched or error-target GT
    gt_labels: dict[int, str] = field(default_factory=dict)
    gt_match: dict[int, int | None] = field(default_factory=dict)  # detection index


def tide_ap(scores: np.ndarray, is_tp: np.ndarray, num_gt: int) -> float:
    """COCO 101-point AP of one class (precision envelope, nearest recall at or after)."""
    if num_gt == 0 or scores.size == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tp = is_tp[order].astype(np.float64)
    ctp = np.cumsum(tp)
    precision = ctp / np.arange(1, tp.size + 1)
    recall = ctp / num_gt
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    # r / 100 exactly as tidecv (pycocotools uses np.linspace, which differs by 1 ulp at some r)
    thresholds = np.arange(101) / 100
    idx = np.searchsorted(recall, thresholds, side="left")
    values = np.where(idx < precision.size, precision[np.minimum(idx, precision.size - 1)], 0.0)
    return float(values.mean())


def _mean_ap(points: dict[int, list[tuple[float, bool]]], gt_count: dict[int, int]) -> float:
    classes = {c for c, n in gt_count.items() if n > 0} | {c for c, p in points.items() if p}
    if not classes:
        return 0.0
    aps = []
    for c in classes:
        pts = points.get(c, [])
        scores = np.array([p[0] for p in pts], dtype=np.float64)
        tps = np.array([p[1] for p in pts], dtype=bool)
        aps.append(tide_ap(scores, tps, gt_count.get(c, 0)))
    return float(np.mean(aps))


class _Run:
    """One pass over the data: matching, error assignment, and oracle re-scoring."""

    def __init__(
        self,
        dataset: dict[str, Any],
        detections: list[dict[str, Any]],
        pos_threshold: float,
        background_threshold: float,
        max_dets: int,
    ) -> None:
        self.anns = list(dataset["annotations"])
        n = len(detections)
        self.labels = ["beyond_max_dets"] * n
        self.det_iou = [0.0] * n
        self.det_match: list[int | None] = [None] * n
        self.gt_labels: dict[int, str] = {}
        self.gt_match: dict[int, int | None] = {}
        self.gt_count: dict[int, int] = defaultdict(int)
        self.tps: list[tuple[int, float]] = []  # (class, score)
        self.errors: list[_Error] = []
        self.false_negatives: dict[int, int] = defaultdict(int)
        self.best_fixer: dict[int, int] = {}  # GT index -> detection index that fixes it

        anns_by_image: dict[Any, list[int]] = defaultdict(list)
        for j, a in enumerate(self.anns):
            anns_by_image[a["image_id"]].append(j)
        dets_by_image: dict[Any, list[int]] = defaultdict(list)
        for i, d in enumerate(detections):
            dets_by_image[d["image_id"]].append(i)
        for image in dataset["images"]:
            self._image(
                detections,
                dets_by_image.get(image["id"], []),
                anns_by_image.get(image["id"], []),
                pos_threshold,
                background_threshold,
                max_dets,
            )

    def _image(
        self,
        detections: list[dict[str, Any]],
        det_idx: list[int],
        gt_idx: list[int],
        t_f: float,
        t_b: float,
        max_dets: int,
    ) -> None:
        anns = self.anns
        gt_cls = np.array([anns[j]["category_id"] for j in gt_idx], dtype=np.int64)
        gt_box = np.array([anns[j]["bbox"] for j in gt_idx], dtype=np.float64).reshape(-1, 4)
        gt_area = np.array([annotation_area(anns[j]) for j in gt_idx], dtype=np.float64)
        for c in gt_cls:
            self.gt_count[int(c)] += 1
        scores = np.array([detections[i]["score"] for i in det_idx], dtype=np.float64)
        order = np.argsort(-scores, kind="stable")[:max_dets]
        kept = [det_idx[k] for k in order]
        p, g = len(kept), len(gt_idx)
        det_cls = np.array([detections[i]["category_id"] for i in kept], dtype=np.int64)
        det_score = scores[order]
        det_box = np.array([detections[i]["bbox"] for i in kept], dtype=np.float64).reshape(-1, 4)
        det_area = det_box[:, 2] * det_box[:, 3]

        gt_used = np.zeros(g, dtype=bool)
        det_used = np.zeros(p, dtype=bool)
        det_gt = np.full(p, -1, dtype=np.int64)
        if p and g:
            iou = box_iou(
                box_convert(torch.from_numpy(det_box), "xywh", "xyxy"),
                box_convert(torch.from_numpy(gt_box), "xywh", "xyxy"),
            ).numpy()
            match = det_cls[:, None] == gt_cls[None, :]
            cls_iou = iou * match
            buffer = cls_iou.copy()
            for k in range(p):  # greedy, by descending score
                j = int(buffer[k].argmax())
                if buffer[k, j] >= t_f:
                    det_used[k], gt_used[j], det_gt[k] = True, True, j
                    buffer[:, j] = 0
            cls_best, cls_max = cls_iou.argmax(1), cls_iou.max(1)
            other_iou = iou * ~match
            other_best, other_max = other_iou.argmax(1), other_iou.max(1)
            used_iou = iou * match * gt_used[None, :]
            any_max = iou.max(1)
        else:
            cls_best = other_best = np.zeros(p, dtype=np.int64)
            cls_max = other_max = any_max = np.zeros(p)
            used_iou = np.zeros((p, 0))
        used_iou_max = used_iou.max(1) if used_iou.size else np.zeros(p)

        for k in range(p):
            i = kept[k]
            c = int(det_cls[k])
            self.det_iou[i] = float(cls_max[k])
            if det_used[k]:
                j = int(det_gt[k])
                self.labels[i] = "tp"
                self.det_match[i] = int(anns[gt_idx[j]]["id"])
                self.tps.append((c, float(det_score[k])))
                continue
            base = {"det": i, "det_class": c, "score": float(det_score[k])}
            target = -1
            if g == 0:
                kind = "bkg"
            elif t_b <= cls_max[k] <= t_f:
                kind, target = "loc", int(cls_best[k])
            elif other_max[k] >= t_f:
                kind, target = "cls", int(other_best[k])
            elif used_iou_max[k] >= t_f:
                kind = "dupe"
                target = int(used_iou[k].argmax())
            elif any_max[k] <= t_b:
                kind = "bkg"
            else:
                kind = "both"
            self.labels[i] = kind
            if kind in ("loc", "cls"):
                gj = gt_idx[target]
                fixable = not gt_used[target]
                self.det_match[i] = int(anns[gj]["id"])
                # BestGTMatch: the first (highest-scoring) error on a free GT is the one fixed
                if fixable and gj not in self.best_fixer:
                    self.best_fixer[gj] = i
                self.errors.append(
                    _Error(
                        kind,
                        float(gt_area[target]),
                        gt=gj,
                        gt_class=int(gt_cls[target]),
                        fixable=fixable,
                        **base,
                    )
                )
            else:
                if kind == "dupe":
                    self.det_match[i] = int(anns[gt_idx[target]]["id"])
                self.errors.append(_Error(kind, float(det_area[k]), **base))

        for t, j in enumerate(gt_idx):
            ann_id = int(anns[j]["id"])
            if gt_used[t]:
                self.gt_labels[ann_id] = "tp"
                self.gt_match[ann_id] = kept[int(np.nonzero(det_gt == t)[0][0])]
                continue
            self.false_negatives[int(gt_cls[t])] += 1
            fixer = self.best_fixer.get(j)
            if fixer is not None:
                self.gt_labels[ann_id] = self.labels[fixer]
                self.gt_match[ann_id] = fixer
            else:
                self.gt_labels[ann_id] = "miss"
                self.gt_match[ann_id] = None
                self.errors.append(_Error("miss", float(gt_area[t]), gt=j, gt_class=int(gt_cls[t])))

    def fixed_map(
        self,
        condition: Callable[[_Error], bool] = lambda e: False,
        perfect_precision: bool = False,
        perfect_recall: bool = False,
    ) -> float:
        """mAP after the oracle fixes every error for which ``condition`` is true."""
        gt_count = dict(self.gt_count)
        points: dict[int, list[tuple[float, bool]]] = defaultdict(list)
        for e in self.errors:
            if condition(e):
                if e.kind in ("cls", "loc") and e.fixable and self.best_fixer.get(e.gt) == e.det:
                    cls = e.gt_class if e.kind == "cls" else e.det_class
                    points[cls].append((e.score, True))
                elif e.kind == "miss":
                    gt_count[e.gt_class] -= 1
            elif e.kind != "miss":
                points[e.det_class].append((0.0 if perfect_precision else e.score, False))
        for c, s in self.tps:
            points[c].append((1.0 if perfect_precision else s, True))
        if perfect_recall:
            for c, n in self.false_negatives.items():
                gt_count[c] -= n
        return _mean_ap(points, gt_count)


def _of_kind(kind: str, size: str | None = None) -> Callable[[_Error], bool]:
    """Selects the errors of one type (and, optionally, whose object has one COCO size)."""

    def select(e: _Error) -> bool:
        return e.kind == kind and (size is None or size_of(e.area) == size)

    return select


def tide_evaluate(
    dataset: dict[str, Any],
    detections: list[dict[str, Any]],
    pos_threshold: float = 0.5,
    background_threshold: float = 0.1,
    max_dets: int = 100,
) -> TideResult:
    """Assign TIDE error types and compute each type's dAP, overall and per object size.

    Args:
        dataset: COCO ground truth dict.
        detections: checked COCO results ``{image_id, category_id, bbox: [x,y,w,h], score}``.
        pos_threshold: foreground IoU ``t_f`` (0.5).
        background_threshold: background IoU ``t_b`` (0.1).
        max_dets: detections kept per image, highest scores first (COCO: 100).
    """
    run = _Run(dataset, detections, pos_threshold, background_threshold, max_dets)
    ap = run.fixed_map()
    dap = {t: max(run.fixed_map(_of_kind(t)) - ap, 0.0) for t in ERROR_TYPES}
    dap_by_size = {
        s: {t: max(run.fixed_map(_of_kind(t, s)) - ap, 0.0) for t in ERROR_TYPES} for s in SIZES
    }
    counts = {t: sum(e.kind == t for e in run.errors) for t in ERROR_TYPES}
    counts_by_size = {
        s: {t: sum(e.kind == t and size_of(e.area) == s for e in run.errors) for t in ERROR_TYPES}
        for s in SIZES
    }
    special = {
        "fp": run.fixed_map(perfect_precision=True) - ap,
        "fn": run.fixed_map(perfect_recall=True) - ap,
    }
    return TideResult(
        ap50=ap,
        dap=dap,
        dap_by_size=dap_by_size,
        special=special,
        counts=counts,
        counts_by_size=counts_by_size,
        detection_labels=run.labels,
        detection_iou=run.det_iou,
        detection_match=run.det_match,
        gt_labels=run.gt_labels,
        gt_match=run.gt_match,
    )
