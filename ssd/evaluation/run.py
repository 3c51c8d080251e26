"""The ``ssd evaluate`` stage: score detections on a prepared split and write every report.

:func:`evaluate_detections` takes COCO results from anywhere (this project's detector or
another one); :func:`evaluate_model` runs a checkpoint first. Outputs under ``out_dir``:

* ``metrics.json`` – the headline figures for ``dvc metrics`` / ``dvc exp show``
  (:data:`HEADLINE`): COCO AP, AP50, AP75, AP by size, AR@100, VOC07 and VOC2010+ mAP@0.5,
  the F1-optimal threshold with its F1, precision and recall, images/s.
* ``evaluation.json`` – everything: those plus ``mar_*``, ``per_class``, ``errors`` (TIDE),
  ``coverage``, the confusion matrix, ``rejected_detections`` and the post-processing
  used. Fractions in [0, 1]; ``null`` where a metric is undefined (e.g. no large objects).
* ``pr_curves.csv`` – DVC plots data: precision at COCO's 101 recall points (IoU 0.5),
  column ``precision`` (mean over classes) and ``precision_<class>`` per class;
  ``f1_curve.csv`` (threshold, precision, recall, f1) and ``confusion.csv`` (one row per
  object or unpaired detection at the F1-optimal threshold: ``actual``, ``predicted``).
* ``errors/detections.json`` (by input index) and ``errors/ground_truth.json`` (by
  annotation id): the TIDE label of every detection and GT box.
* ``plots/*.png`` and ``samples/*.png`` (the worst images first).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from ssd.config import Config, PostprocessConfig
from ssd.data.prepared import SIZES, PreparedSplit, annotation_area, size_of
from ssd.errors import EvaluationError
from ssd.evaluation import plots
from ssd.evaluation.coco import Backend, coco_evaluate
from ssd.evaluation.confusion import confusion_matrix, f1_curve
from ssd.evaluation.coverage import best_prior_iou, coverage_summary, gt_boxes_normalised
from ssd.evaluation.inputs import check_class_names, check_detections
from ssd.evaluation.tide import TideResult, tide_evaluate
from ssd.evaluation.voc import voc_evaluate
from ssd.infer.predict import predict_split

log = logging.getLogger(__name__)

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
# What metrics.json holds (the rest is in evaluation.json).
HEADLINE: tuple[str, ...] = (
    "map",
    "map50",
    "map75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_100",
    "voc07_map50",
    "voc_map50",
    "f1",
    "f1_threshold",
    "precision_at_f1",
    "recall_at_f1",
    "images_per_second",
)


def _finite_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")


def _write_csv(path: Path, header: list[str], rows: Any) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            writer.writerow(
                [round(float(v), 6) if isinstance(v, float | np.floating) else v for v in row]
            )


def _write_pr_csv(path: Path, table: dict[str, Any]) -> None:
    names = list(table["per_class"])
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["recall", "precision", *[f"precision_{n}" for n in names]])
        for r, recall in enumerate(table["recall"]):
            row = [round(float(recall), 4), round(float(table["mean"][r]), 6)]
            row += [round(float(max(table["per_class"][n][r], 0.0)), 6) for n in names]
            writer.writerow(row)


def _worst_images(
    split: PreparedSplit, detections: list[dict[str, Any]], tide: TideResult
) -> list[Any]:
    """Image ids, worst first: missed GT boxes plus the summed scores of false positives."""
    badness: dict[Any, float] = defaultdict(float)
    for ann in split.annotations:
        if tide.gt_labels.get(int(ann["id"])) != "tp":
            badness[ann["image_id"]] += 1.0
    for det, label in zip(detections, tide.detection_labels, strict=True):
        if label not in ("tp", "beyond_max_dets"):
            badness[det["image_id"]] += det["score"]
    ids = [img["id"] for img in split.images]
    return sorted(ids, key=lambda i: -badness.get(i, 0.0))


def evaluate_detections(
    split: PreparedSplit,
    detections: list[dict[str, Any]],
    out_dir: str | Path,
    priors: Tensor | None = None,
    images_per_second: float | None = None,
    *,
    backend: Backend = "faster",
    sample_images: int = 12,
    sample_score_threshold: float = 0.3,
    coverage_iou: float = 0.5,
    plots_enabled: bool = True,
    postprocess: PostprocessConfig | None = None,
) -> dict[str, Any]:
    """Evaluate COCO results against a prepared split; write and return the metrics.

    Args:
        split: the loaded split (:meth:`PreparedSplit.load`).
        detections: COCO results ``{image_id, category_id, bbox: [x, y, w, h], score}``.
            Malformed entries, unknown image or category ids and non-finite values are not
            used; they are counted with their reason in ``metrics["rejected_detections"]``.
            Boxes past the image border are scored as given (as pycocotools does) and
            counted there too.
        out_dir: where the reports go (created).
        priors: default boxes ``[A, 4]`` (cx, cy, w, h) in [0, 1] for the coverage report;
            ``None`` skips it (e.g. detections from another detector).
        images_per_second: inference speed to record, if a model was run.
        backend: COCO API implementation (``faster`` or ``pycocotools``, same numbers).
        sample_images: how many images to draw (worst first); 0 for none.
        sample_score_threshold: detections drawn on the samples score at least this.
        coverage_iou: a GT counts as covered when a default box reaches this IoU.
        plots_enabled: write the PNG plots and samples.
        postprocess: the inference settings that produced ``detections``, recorded in the
            metrics (None: detections from elsewhere).
    """
    start = time.perf_counter()
    data = split
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
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
    _write_json(
        out / "errors" / "detections.json",
        dict(sorted(det_rows.items(), key=lambda kv: int(kv[0]))),
    )
    _write_json(out / "errors" / "ground_truth.json", gt_rows)

    table = plots.pr_curve_table(coco, names)
    _write_pr_csv(out / "pr_curves.csv", table)
    _write_csv(
        out / "f1_curve.csv",
        ["threshold", "precision", "recall", "f1"],
        zip(curve.thresholds, curve.precision, curve.recall, curve.f1, strict=True),
    )
    labels = ["background", *names]
    _write_csv(
        out / "confusion.csv", ["actual", "predicted"], ((labels[t], labels[p]) for t, p in pairs)
    )
    if plots_enabled:
        plots.plot_confusion_matrix(matrix, names, out / "plots" / "confusion_matrix.png")
        plots.plot_f1_curve(curve, names, out / "plots" / "f1_curve.png")
        plots.plot_pr_curves(coco, names, out / "plots" / "pr_curves.png")
        plots.plot_ap_by_size(coco.stats, size_counts, out / "plots" / "ap_by_size.png")
        plots.plot_tide(tide, out / "plots" / "errors_dap.png")
        if coverage is not None:
            plots.plot_coverage(coverage, out / "plots" / "prior_coverage.png")
        _draw_samples(data, dets, tide, out / "samples", sample_images, sample_score_threshold)

    seconds = time.perf_counter() - start
    metrics["eval_seconds"] = round(seconds, 3)
    metrics["eval_seconds_per_100_images"] = round(100 * seconds / len(data.images), 3)
    _write_json(out / "evaluation.json", _json_safe(metrics))
    _write_json(out / "metrics.json", _json_safe({k: metrics.get(k) for k in HEADLINE}))
    return metrics


def _json_safe(value: Any) -> Any:
    """Replace NaN / inf by None and numpy scalars by Python numbers (strict JSON for DVC)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _draw_samples(
    data: PreparedSplit,
    dets: list[dict[str, Any]],
    tide: TideResult,
    out: Path,
    count: int,
    score_threshold: float,
) -> None:
    if count <= 0:
        return
    images = {img["id"]: img for img in data.images}
    gt_by_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for ann in data.annotations:
        gt_by_image[ann["image_id"]].append(ann)
    det_by_image: dict[Any, list[tuple[dict[str, Any], str]]] = defaultdict(list)
    for d, label in zip(dets, tide.detection_labels, strict=True):
        if d["score"] >= score_threshold and label != "beyond_max_dets":
            det_by_image[d["image_id"]].append((d, label))
    for rank, image_id in enumerate(_worst_images(data, dets, tide)[:count]):
        img = images[image_id]
        path = data.image_path(img)
        if not path.is_file():
            continue
        plots.draw_sample(
            path,
            gt_by_image[image_id],
            det_by_image[image_id],
            data.class_names,
            out / f"{rank:03d}_{Path(str(img['file_name'])).stem}.png",
        )


def evaluate_model(
    model_path: str | Path,
    split: PreparedSplit,
    out_dir: str | Path,
    batch_size: int = 8,
    device: str = "cpu",
    postprocess: PostprocessConfig | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Run the detector at ``model_path`` on the split with the inference settings
    ``postprocess`` (None: the paper's), then :func:`evaluate_detections` (same outputs).

    Raises:
        EvaluationError: missing detector, or its classes differ from the dataset's.
    """
    path = Path(model_path)
    if not path.exists():
        raise EvaluationError(f"detector '{path}' does not exist; train first (`ssd train`)")
    from ssd.infer.detector import load_detector  # the model side is only needed here

    postprocess = postprocess or PostprocessConfig()
    detector = load_detector(path, device=device, postprocess=postprocess)
    check_class_names(list(detector.class_names), split)
    detections, ips = predict_split(detector, split, batch_size)
    priors = detector.model.priors.detach().cpu()
    return evaluate_detections(
        split,
        detections,
        out_dir,
        priors=priors,
        images_per_second=ips,
        postprocess=postprocess,
        **options,
    )


def evaluate_from_config(
    cfg: Config,
    model: str | Path | None = None,
    detections: str | Path | None = None,
    split: str | None = None,
    out_dir: str | Path | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """The ``evaluate`` stage: score ``model`` (default ``models/<data.name>/ssd``) or a COCO
    results file on ``split`` (default ``evaluate.split``) with the ``postprocess``
    settings; reports in ``reports/<data.name>/`` (or ``out_dir``)."""
    e = cfg.evaluate
    options: dict[str, Any] = {
        "backend": e.coco_backend,
        "sample_images": e.sample_images,
        "sample_score_threshold": e.sample_score_threshold,
        "coverage_iou": e.coverage_iou,
    }
    data = PreparedSplit.load(cfg.layout.prepared, split or e.split)
    out = Path(out_dir) if out_dir is not None else cfg.layout.reports
    if detections is not None:
        from ssd.evaluation.inputs import load_detections

        return evaluate_detections(data, load_detections(detections), out, **options)
    return evaluate_model(
        model or cfg.layout.detector,
        data,
        out,
        batch_size=e.batch_size,
        device=device or e.device,
        postprocess=cfg.postprocess,
        **options,
    )
