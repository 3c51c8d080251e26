"""The evaluation's pictures: PR curves, AP by size, TIDE dAP bars, default-box coverage,
and sample images with predictions and ground truth drawn. Matplotlib (Agg) only."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor
from torchvision.io import write_png
from torchvision.ops import box_convert

from ssd.data.prepared import SIZES
from ssd.evaluation.coco import CocoResult
from ssd.evaluation.tide import ERROR_NAMES, ERROR_TYPES, TideResult
from ssd.infer.drawing import draw_boxes

GT_COLOR, TP_COLOR, FP_COLOR = "#2ca02c", "#1f77b4", "#d62728"


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def pr_curve_table(
    coco: CocoResult, class_names: Sequence[str], iou: float = 0.5
) -> dict[str, Any]:
    """Precision at COCO's 101 recall points, per class and averaged (IoU ``iou``, 100 dets)."""
    t = int(np.argmin(np.abs(coco.iou_thresholds - iou)))
    prec = coco.precision[t, :, :, 0, -1]  # [R, K]
    per_class = {name: prec[:, k] for k, name in enumerate(class_names)}
    defined = [v for v in per_class.values() if (v > -1).any()]
    mean = (
        np.mean(np.clip(defined, 0, None), axis=0)
        if defined
        else np.zeros_like(coco.recall_thresholds)
    )
    return {"recall": coco.recall_thresholds, "mean": mean, "per_class": per_class}


def classes_with_ground_truth(coco: CocoResult, class_names: Sequence[str]) -> list[str]:
    """The classes that have ground truth in the evaluated split (precision defined)."""
    table = pr_curve_table(coco, class_names, 0.5)
    return [name for name in class_names if (table["per_class"][name] > -1).any()]


def plot_pr_curves(coco: CocoResult, class_names: Sequence[str], path: Path) -> list[str]:
    """One small panel per class with ground truth: precision–recall at IoU 0.5 and 0.75
    (COCO interpolation). With many classes (80 for COCO) the panels go 8 to a row and
    keep their size, so every title stays legible. Returns the classes drawn."""
    shown = classes_with_ground_truth(coco, class_names)
    hidden = len(class_names) - len(shown)
    n = max(len(shown), 1)
    cols = min(4, n) if n <= 16 else 8
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows + 0.4), squeeze=False)
    for ax in axes.flat[len(shown) :]:
        ax.axis("off")
    tables = {iou: pr_curve_table(coco, class_names, iou) for iou in (0.5, 0.75)}
    for k, name in enumerate(shown):
        ax = axes.flat[k]
        for iou, style in ((0.5, "-"), (0.75, "--")):
            p = tables[iou]["per_class"][name]
            ap = float(np.clip(p, 0, None).mean())
            ax.plot(
                tables[iou]["recall"], np.clip(p, 0, None), style, label=f"IoU {iou}: AP {ap:.3f}"
            )
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
        ax.set_title(name if len(name) <= 28 else name[:27] + "…", fontsize=11)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    if not shown:
        axes.flat[0].axis("on")
        axes.flat[0].text(0.5, 0.5, "no ground truth", ha="center", va="center")
    if hidden:
        fig.suptitle(f"{hidden} classes without ground truth in this split are not shown")
    _save(fig, path)
    return shown


def plot_ap_by_size(stats: dict[str, float | None], counts: dict[str, int], path: Path) -> Path:
    """COCO AP@[.5:.95] and AR@100 for small, medium and large objects."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(len(SIZES))
    ap = [stats.get(f"map_{s}") or 0.0 for s in SIZES]
    ar = [stats.get(f"mar_{s}") or 0.0 for s in SIZES]
    ax.bar(x - 0.2, ap, 0.4, label="AP@[.5:.95]")
    ax.bar(x + 0.2, ar, 0.4, label="AR@100")
    ax.set_xticks(x, [f"{s}\n({counts.get(s, 0)} GT)" for s in SIZES])
    ax.set(ylim=(0, 1), ylabel="COCO metric", title="AP by object size")
    ax.legend()
    return _save(fig, path)


def plot_tide(tide: TideResult, path: Path) -> Path:
    """TIDE dAP per error type: overall, and per object size."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    x = np.arange(len(ERROR_TYPES))
    ax1.bar(x, [100 * tide.dap[t] for t in ERROR_TYPES], color="#9467bd")
    ax1.set_xticks(x, [ERROR_NAMES[t] for t in ERROR_TYPES], rotation=30, ha="right")
    ax1.set(ylabel="dAP50 (points)", title=f"TIDE errors (AP50 {100 * tide.ap50:.1f})")
    width = 0.8 / len(SIZES)
    for i, s in enumerate(SIZES):
        ax2.bar(
            x + (i - 1) * width, [100 * tide.dap_by_size[s][t] for t in ERROR_TYPES], width, label=s
        )
    ax2.set_xticks(x, [ERROR_NAMES[t] for t in ERROR_TYPES], rotation=30, ha="right")
    ax2.set(ylabel="dAP50 (points)", title="fixing only errors of one size")
    ax2.legend()
    return _save(fig, path)


def plot_coverage(summary: dict[str, Any], path: Path) -> Path:
    """Share of GT boxes with a default box at IoU ≥ threshold per size, and the IoU histogram."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    names = ["all", *SIZES]
    shares = [summary["share_covered"] or 0.0] + [
        summary["by_size"][s]["share_covered"] or 0.0 for s in SIZES
    ]
    counts = [summary["count"]] + [summary["by_size"][s]["count"] for s in SIZES]
    bars = ax1.bar(names, shares, color="#ff7f0e")
    ax1.bar_label(
        bars, labels=[f"{100 * v:.0f}%" if c else "–" for v, c in zip(shares, counts, strict=True)]
    )
    ax1.set_xticks(
        range(len(names)), [f"{n}\n({c} GT)" for n, c in zip(names, counts, strict=True)]
    )
    ax1.set(
        ylim=(0, 1),
        ylabel=f"share with best IoU ≥ {summary['iou_threshold']}",
        title="default-box coverage",
    )
    edges = np.array(summary["histogram"]["edges"])
    ax2.bar(
        edges[:-1],
        summary["histogram"]["counts"],
        width=np.diff(edges),
        align="edge",
        color="#7f7f7f",
        edgecolor="white",
    )
    ax2.axvline(summary["iou_threshold"], color=FP_COLOR, ls="--")
    ax2.set(xlabel="best IoU with any default box", ylabel="GT boxes", title="best-IoU histogram")
    return _save(fig, path)


def plot_coverage_comparison(coverage: dict[str, dict[str, Any]], path: Path) -> Path:
    """Share of GT covered (best IoU ≥ threshold) with the current and the suggested priors,
    per split and size (``coverage[split][current|suggested]`` from ``coverage_summary``)."""
    splits = list(coverage)
    fig, axes = plt.subplots(1, max(len(splits), 1), figsize=(4.2 * max(len(splits), 1), 3.6))
    axes = np.atleast_1d(axes)
    names = ["all", *SIZES]
    x = np.arange(len(names))
    for ax, split in zip(axes, splits, strict=False):
        for i, which in enumerate(("current", "suggested")):
            c = coverage[split][which]
            values = [c["share_covered"] or 0.0] + [
                c["by_size"][s]["share_covered"] or 0.0 for s in SIZES
            ]
            bars = ax.bar(x + (i - 0.5) * 0.4, values, 0.4, label=which)
            ax.bar_label(bars, labels=[f"{100 * v:.0f}" for v in values], fontsize=7)
        ax.set_xticks(x, names)
        ax.set(ylim=(0, 1.1), title=f"{split}: default-box coverage", ylabel="share covered")
        ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: Path) -> Path:
    """Counts, coloured by the share of each true class (row); index 0 is background."""
    names = ["background", *class_names]
    n = len(names)
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    side = min(max(4.5, 0.45 * n + 2.5), 24)
    fig, ax = plt.subplots(figsize=(side, side * 0.9))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if n <= 25:  # the counts stay legible
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    color = "white" if share[i, j] > 0.5 else "black"
                    ax.text(
                        j, i, str(matrix[i, j]), ha="center", va="center", color=color, fontsize=8
                    )
    ax.set_xticks(range(n), names, rotation=90 if n > 8 else 30, ha="right" if n <= 8 else "center")
    ax.set_yticks(range(n), names)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (share of each true class)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, path)


def plot_f1_curve(curve: Any, class_names: Sequence[str], path: Path) -> Path:
    """F1 against the confidence threshold: each class, the mean, and the best threshold."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    many = len(curve.per_class_f1) > 10
    for cat, f1 in curve.per_class_f1.items():
        label = None if many else class_names[cat - 1]
        ax.plot(curve.thresholds, f1, lw=0.8, alpha=0.5 if many else 0.8, label=label)
    best = curve.best
    ax.plot(curve.thresholds, curve.f1, color="k", lw=2.5, label="mean")
    ax.axvline(curve.thresholds[best], color=FP_COLOR, ls="--")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.02),
        xlabel="confidence threshold",
        ylabel="F1",
        title=f"F1 {curve.f1[best]:.3f} at threshold {curve.thresholds[best]:.2f}",
    )
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def draw_sample(
    image: Tensor,
    gt: Sequence[dict[str, Any]],
    detections: Sequence[tuple[dict[str, Any], str]],
    class_names: Sequence[str],
    path: Path,
) -> Path:
    """Draw GT (green) and detections (blue = true positive, red = error type) on one image,
    each label on a filled background (:func:`ssd.infer.drawing.draw_boxes`); detections' labels
    are drawn over the ground truth's, the best score on top. ``image``: RGB uint8
    ``[3, H, W]`` (:meth:`~ssd.data.prepared.PreparedSplit.read_image`)."""
    boxes, labels, colors, order = [], [], [], []
    for a in gt:
        boxes.append(a["bbox"])
        labels.append(f"GT {class_names[a['category_id'] - 1]}")
        colors.append(GT_COLOR)
        order.append(-1.0)
    for d, label in detections:
        boxes.append(d["bbox"])
        name = class_names[d["category_id"] - 1]
        labels.append(f"{name} {d['score']:.2f}" + ("" if label == "tp" else f" [{label}]"))
        colors.append(TP_COLOR if label == "tp" else FP_COLOR)
        order.append(float(d["score"]))
    if boxes:
        xyxy = box_convert(torch.tensor(boxes, dtype=torch.float32), "xywh", "xyxy")
        image = draw_boxes(image, xyxy, labels, colors, order)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(image, str(path), compression_level=1)
    return path
