"""Scoring detections on a prepared split: every figure ``ssd evaluate`` reports, and the
label of every detection and ground-truth box, computed without writing anything
(:mod:`ssd.evaluation.report` writes them).

Detections are COCO results from anywhere (this project's detector,
:func:`ssd.infer.predict.detect_split`, or another one). Fractions are in [0, 1]; ``None``
where a metric is undefined (e.g. no large objects).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

from ssd.config import PostprocessConfig
from ssd.data.prepared import SIZES, PreparedSplit, annotation_area, size_of
from ssd.evaluation.coco import Backend, CocoResult, coco_evaluate
from ssd.evaluation.confusion import F1Curve, confusion_matrix, f1_curve
from ssd.evaluation.coverage import best_prior_iou, coverage_summary, gt_boxes_normalised
from ssd.evaluation.inputs import check_detections
from ssd.evaluation.tide import TideResult, tide_evaluate
from ssd.evaluation.voc import voc_evaluate

# The figures a person compares across runs, headline first: metrics.json (dvc metrics
# show, dvc exp show), the command line, `ssd summary` and the Prefect artifact all read
# this one tuple. Few, so `dvc exp show --only-changed` fits an 85-column terminal with
# map first, and `dvc metrics show` is one short row; everything else (AP by size, VOC, AR,
# TIDE, inference speed) is in evaluation.json. f1_threshold is what `ssd detect
# --score-threshold f1` deploys.
HEADLINE: tuple[str, ...] = ("map", "map50", "map75", "f1", "f1_threshold")
# Below this AP50 most of a model's confident detections are wrong and most objects are
# missed: the TIDE split of its errors and the label audit's suspects then describe the
# model, not the data (seen: a model of AP50 0.003 gave 106 "spurious label" suspects on
# the synthetic set, whose labels are exact). Every report that reads them says so.
WEAK_AP50 = 0.1


def weak_model_note(map50: float | None) -> str | None:
    """The sentence every report prints for a model too weak to judge (:data:`WEAK_AP50`),
    or None."""
    if map50 is None or map50 >= WEAK_AP50:
        return None
    return (
        f"AP50 {map50:.3f} is below {WEAK_AP50:g}: the model is too weak for its error "
        "analysis (TIDE) and label audit to mean anything; train it longer (train.epochs) "
        "before reading them"
    )


REQUIRED_KEYS: tuple[str, ...] = (
    "map",
    "map50",
    "map75",
    "map_small",
    "map_medium",
    "map_large",
    "voc07_map50",
    "voc_map50",
    "per_class",
    "errors",
    "images_per_second",
)


@dataclass
class Evaluation:
    """What scoring found: ``metrics`` (what ``evaluation.json`` holds) and what the reports
    draw from (the accepted detections, the per-object labels, the curves)."""

    metrics: dict[str, Any]
    detections: list[dict[str, Any]]  # the accepted ones
    coco: CocoResult
    tide: TideResult
    curve: F1Curve
    matrix: np.ndarray
    pairs: list[tuple[int, int]]
    size_counts: dict[str, int]
    detection_rows: dict[str, Any] = field(default_factory=dict)  # by input index
    gt_rows: dict[str, Any] = field(default_factory=dict)  # by annotation id


def _finite_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def score_detections(
    split: PreparedSplit,
    detections: list[dict[str, Any]],
    priors: Tensor | None = None,
    images_per_second: float | None = None,
    *,
    backend: Backend = "faster",
    coverage_iou: float = 0.5,
    postprocess: PostprocessConfig | None = None,
) -> Evaluation:
    """Score COCO results against a prepared split.

    Args:
        split: the loaded split (:meth:`PreparedSplit.load`).
        detections: COCO results ``{image_id, category_id, bbox: [x, y, w, h], score}``.
            Malformed entries, unknown image or category ids and non-finite values are not
            used; they are counted with their reason in ``metrics["rejected_detections"]``.
            Boxes past the image border are scored as given (as pycocotools does) and
            counted there too.
        priors: default boxes ``[A, 4]`` (cx, cy, w, h) in [0, 1] for the coverage report;
            ``None`` skips it (e.g. detections from another detector).
        images_per_second: inference speed to record, if a model was run.
        backend: COCO API implementation (``faster`` or ``pycocotools``, same numbers).
        coverage_iou: a GT counts as covered when a default box reaches this IoU.
        postprocess: the inference settings that produced ``detections``, recorded in the
            metrics (None: detections from elsewhere).
    """
    data = split
    checked = check_detections(detections, data)
    dets = checked.accepted
    names = data.class_names

    coco = coco_evaluate(data.dataset, dets, backend=backend)
    voc = voc_evaluate(data.dataset, dets)
    tide = tide_evaluate(data.dataset, dets)

    coverage: dict[str, Any] | None = None
    best_iou: list[float] | None = None
    if priors is not None:
        gt_norm, areas, _ = gt_boxes_normalised(data.dataset)
        iou, _ = best_prior_iou(gt_norm, priors)
        best_iou = iou.tolist()
        coverage = coverage_summary(iou, areas, threshold=coverage_iou)

    per_class: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(names):
        cat = k + 1
        v = voc.per_class[cat]
        per_class[name] = {
            **coco.per_class[cat],
            "voc07_ap50": v.ap07,
            "voc_ap50": v.ap,
            "num_gt": v.num_gt + v.num_difficult,
            "num_difficult": v.num_difficult,
            "num_detections": v.num_detections,
        }
    gt_sizes = [size_of(annotation_area(a)) for a in data.annotations]
    size_counts = {s: gt_sizes.count(s) for s in SIZES}

    metrics: dict[str, Any] = {
        **coco.stats,
        "voc07_map50": voc.map07,
        "voc_map50": voc.map,
        "tide_ap50": tide.ap50,
        "prior_coverage": coverage["share_covered"] if coverage else None,
        "images_per_second": _finite_or_none(images_per_second),
        "num_images": len(data.images),
        "num_ground_truth": len(data.annotations),
        "num_detections": len(dets),
        "num_rejected_detections": len(checked.rejected),
        "per_class": per_class,
        "errors": {
            "ap50": tide.ap50,
            "dap": tide.dap,
            "dap_by_size": tide.dap_by_size,
            "special": tide.special,
            "counts": tide.counts,
            "counts_by_size": tide.counts_by_size,
        },
        "coverage": coverage,
        "rejected_detections": checked.summary(),
        "num_detections_past_border": checked.past_border,
        "split": data.name,
        "dataset": str(data.root),
        "coco_backend": backend,
        "postprocess": None if postprocess is None else postprocess.model_dump(mode="json"),
    }
    curve = f1_curve(voc)
    metrics.update(curve.summary())
    matrix, pairs = confusion_matrix(data.dataset, dets, curve.best_threshold)
    metrics["confusion_matrix"] = {
        "labels": ["background", *names],
        "score_threshold": curve.best_threshold,
        "rows_true_columns_predicted": matrix.tolist(),
    }

    # Per-object labels, keyed by the input's detection index and by annotation id.
    det_rows: dict[str, Any] = {}
    for j, (i, d) in enumerate(zip(checked.accepted_index, dets, strict=True)):
        det_rows[str(i)] = {
            **d,
            "label": tide.detection_labels[j],
            "iou": round(tide.detection_iou[j], 6),
            "annotation_id": tide.detection_match[j],
        }
    for r in checked.rejected:
        det_rows[str(r["index"])] = {"label": "rejected", "reason": r["reason"]}
    gt_rows: dict[str, Any] = {}
    for n, ann in enumerate(data.annotations):
        ann_id = int(ann["id"])
        match = tide.gt_match.get(ann_id)
        gt_rows[str(ann_id)] = {
            "image_id": ann["image_id"],
            "category_id": ann["category_id"],
            "size": gt_sizes[n],
            "difficult": int(ann.get("difficult", 0)),
            "label": tide.gt_labels.get(ann_id, "miss"),
            "detection": None if match is None else checked.accepted_index[match],
            "best_prior_iou": None if best_iou is None else round(best_iou[n], 6),
        }
    det_rows = dict(sorted(det_rows.items(), key=lambda kv: int(kv[0])))
    return Evaluation(
        metrics, dets, coco, tide, curve, matrix, pairs, size_counts, det_rows, gt_rows
    )
