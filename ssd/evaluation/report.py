"""The files ``ssd evaluate`` writes under ``out_dir`` (``reports/<data.name>``), from an
:class:`~ssd.evaluation.score.Evaluation`:

* ``metrics.json`` – the headline figures for ``dvc metrics`` / ``dvc exp show``
  (:data:`~ssd.evaluation.score.HEADLINE`): COCO AP, AP50, AP75, the best F1 and its
  score threshold.
* ``evaluation.json`` – everything: those plus AP by size, AR, VOC07 and VOC2010+ mAP@0.5,
  precision and recall at the F1 threshold, inference images/s, ``per_class``, ``errors``
  (TIDE), ``coverage``, the confusion matrix, ``rejected_detections`` and the
  post-processing used. Fractions in [0, 1]; ``null`` where a metric is undefined (e.g.
  no large objects).
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
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from ssd.config import PostprocessConfig
from ssd.data.prepared import PreparedSplit
from ssd.errors import DataError
from ssd.evaluation import plots
from ssd.evaluation.coco import Backend
from ssd.evaluation.score import HEADLINE, Evaluation, score_detections
from ssd.evaluation.tide import TideResult


def write_json(path: Path, data: Any) -> None:
    """Strict JSON (no NaN: DVC reads it), the folder created."""
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
        try:
            pixels = data.read_image(img)  # opened once, inside the prepared dataset
        except DataError:
            continue
        plots.draw_sample(
            pixels,
            gt_by_image[image_id],
            det_by_image[image_id],
            data.class_names,
            out / f"{rank:03d}_{Path(str(img['file_name'])).stem}.png",
        )


def write_evaluation(
    ev: Evaluation,
    split: PreparedSplit,
    out_dir: str | Path,
    *,
    sample_images: int = 12,
    sample_score_threshold: float = 0.3,
    plots_enabled: bool = True,
    started: float | None = None,
) -> dict[str, Any]:
    """Write every report of ``ev`` under ``out_dir``; returns the metrics (with the time
    the evaluation took since ``started``, a ``time.perf_counter()`` value)."""
    start = time.perf_counter() if started is None else started
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data, metrics, names = split, ev.metrics, split.class_names
    write_json(out / "errors" / "detections.json", ev.detection_rows)
    write_json(out / "errors" / "ground_truth.json", ev.gt_rows)

    table = plots.pr_curve_table(ev.coco, names)
    _write_pr_csv(out / "pr_curves.csv", table)
    curve = ev.curve
    _write_csv(
        out / "f1_curve.csv",
        ["threshold", "precision", "recall", "f1"],
        zip(curve.thresholds, curve.precision, curve.recall, curve.f1, strict=True),
    )
    labels = ["background", *names]
    _write_csv(
        out / "confusion.csv",
        ["actual", "predicted"],
        ((labels[t], labels[p]) for t, p in ev.pairs),
    )
    if plots_enabled:
        plots.plot_confusion_matrix(ev.matrix, names, out / "plots" / "confusion_matrix.png")
        plots.plot_f1_curve(curve, names, out / "plots" / "f1_curve.png")
        plots.plot_pr_curves(ev.coco, names, out / "plots" / "pr_curves.png")
        plots.plot_ap_by_size(ev.coco.stats, ev.size_counts, out / "plots" / "ap_by_size.png")
        plots.plot_tide(ev.tide, out / "plots" / "errors_dap.png")
        if metrics["coverage"] is not None:
            plots.plot_coverage(metrics["coverage"], out / "plots" / "prior_coverage.png")
        _draw_samples(
            data, ev.detections, ev.tide, out / "samples", sample_images, sample_score_threshold
        )

    seconds = time.perf_counter() - start
    metrics["eval_seconds"] = round(seconds, 3)
    metrics["eval_seconds_per_100_images"] = round(100 * seconds / len(data.images), 3)
    write_json(out / "evaluation.json", _json_safe(metrics))
    write_json(out / "metrics.json", _json_safe({k: metrics.get(k) for k in HEADLINE}))
    return metrics


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
    """Score COCO results against a prepared split (:func:`score_detections`, whose
    arguments these are) and write every report (:func:`write_evaluation`); returns the
    metrics. ``sample_images``: how many images to draw, worst first (0: none);
    ``sample_score_threshold``: detections drawn score at least this; ``plots_enabled``:
    write the PNG plots and samples."""
    start = time.perf_counter()
    ev = score_detections(
        split,
        detections,
        priors,
        images_per_second,
        backend=backend,
        coverage_iou=coverage_iou,
        postprocess=postprocess,
    )
    return write_evaluation(
        ev,
        split,
        out_dir,
        sample_images=sample_images,
        sample_score_threshold=sample_score_threshold,
        plots_enabled=plots_enabled,
        started=start,
    )


def _percent(value: float | None) -> str:
    return "  n/a" if value is None else f"{100 * value:5.1f}"


def headline_line(metrics: dict[str, Any]) -> str:
    """The :data:`~ssd.evaluation.score.HEADLINE` figures on one line (``ssd summary``)."""
    return "  ".join(f"{k} {metrics[k]:.3f}" for k in HEADLINE if metrics.get(k) is not None)


def evaluation_lines(metrics: dict[str, Any]) -> list[str]:
    """What ``ssd evaluate`` prints: the headline figures, the TIDE errors, the F1 threshold,
    the default-box coverage and the speed."""
    dap = metrics["errors"]["dap"]
    lines = [
        f"{metrics['split']}: {metrics['num_images']} images, {metrics['num_detections']} "
        f"detections ({metrics['num_rejected_detections']} rejected)",
        f"COCO AP {_percent(metrics['map'])}  AP50 {_percent(metrics['map50'])}  "
        f"AP75 {_percent(metrics['map75'])}  S/M/L {_percent(metrics['map_small'])} "
        f"{_percent(metrics['map_medium'])} {_percent(metrics['map_large'])}",
        f"VOC mAP50 07 {_percent(metrics['voc07_map50'])}  area {_percent(metrics['voc_map50'])}",
        "TIDE dAP50  " + "  ".join(f"{k} {100 * v:.1f}" for k, v in dap.items()),
        f"best F1 {metrics['f1']:.3f} at score threshold {metrics['f1_threshold']:.2f} "
        f"(precision {metrics['precision_at_f1']:.3f}, recall {metrics['recall_at_f1']:.3f}); "
        "deploy it with: ssd detect --score-threshold f1",
    ]
    if metrics["prior_coverage"] is not None:
        lines.append(f"default boxes cover (IoU≥0.5) {_percent(metrics['prior_coverage'])} % of GT")
    if metrics["images_per_second"] is not None:
        lines.append(f"inference {metrics['images_per_second']:.1f} images/s")
    if metrics["num_detections_past_border"]:
        lines.append(
            f"{metrics['num_detections_past_border']} detections reach past the image border "
            "(scored as given, as pycocotools does)"
        )
    return lines
