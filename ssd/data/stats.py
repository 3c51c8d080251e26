"""Statistics a user wants before training: images and boxes per class and split, box
size distributions, COCO small / medium / large counts, boxes per image; and ``stats.png``.

Sizes are COCO's, on the original image (:func:`ssd.data.prepared.size_of`, the one
definition the evaluation uses too).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ssd.data.prepared import SIZE_RANGES, SIZES, annotation_area, size_of


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    q = np.quantile(np.asarray(values, dtype=np.float64), [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1])
    keys = ("min", "p5", "p25", "median", "p75", "p95", "max")
    return {k: round(float(v), 2) for k, v in zip(keys, q, strict=True)}


def compute_stats(splits: dict[str, dict[str, Any]], classes: list[str]) -> dict[str, Any]:
    """Statistics of the prepared split COCO dicts (see the module docstring)."""
    per_split: dict[str, Any] = {}
    per_class: dict[str, dict[str, dict[str, int]]] = {
        c: {s: {"images": 0, "boxes": 0} for s in splits} for c in classes
    }
    widths: list[float] = []
    heights: list[float] = []
    areas: list[float] = []
    relative: list[float] = []
    for split, coco in splits.items():
        sizes = {img["id"]: (img["width"], img["height"]) for img in coco["images"]}
        per_image = Counter(a["image_id"] for a in coco["annotations"])
        buckets = Counter(dict.fromkeys(SIZES, 0))
        class_images: dict[int, set[int]] = {}
        for a in coco["annotations"]:
            _, _, w, h = a["bbox"]
            name = classes[a["category_id"] - 1]
            per_class[name][split]["boxes"] += 1
            class_images.setdefault(a["category_id"], set()).add(a["image_id"])
            buckets[size_of(annotation_area(a))] += 1
            widths.append(w)
            heights.append(h)
            areas.append(w * h)
            iw, ih = sizes[a["image_id"]]
            relative.append(float(np.sqrt(w * h / (iw * ih))))
        for cat, ids in class_images.items():
            per_class[classes[cat - 1]][split]["images"] = len(ids)
        counts = [per_image.get(img["id"], 0) for img in coco["images"]]
        per_split[split] = {
            "images": len(coco["images"]),
            "boxes": len(coco["annotations"]),
            "difficult": sum(a["difficult"] for a in coco["annotations"]),
            "images_without_boxes": sum(1 for c in counts if c == 0),
            "sizes": dict(buckets),
            "boxes_per_image": {
                "mean": round(float(np.mean(counts)), 2) if counts else 0.0,
                "max": max(counts, default=0),
                "histogram": {str(k): v for k, v in sorted(Counter(counts).items())},
            },
        }
    return {
        "per_split": per_split,
        "per_class": per_class,
        "box_width": _quantiles(widths),
        "box_height": _quantiles(heights),
        "box_area": _quantiles(areas),
        "box_relative_size": _quantiles(relative),
    }


def classes_with_boxes(classes: list[str], stats: dict[str, Any]) -> list[str]:
    """The classes that have at least one box in some split (what the plots show)."""
    per_class = stats["per_class"]
    return [c for c in classes if any(v["boxes"] for v in per_class[c].values())]


def plot_stats(
    splits: dict[str, dict[str, Any]], classes: list[str], stats: dict[str, Any], out_png: Path
) -> list[str]:
    """Boxes and images per class and split (the classes that have boxes, as horizontal
    bars so that 80 names stay legible), width vs height, area histogram with the COCO
    bucket limits, size buckets, boxes per image. Returns the classes drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(splits)
    shown = classes_with_boxes(classes, stats)
    hidden = len(classes) - len(shown)
    rows = max(len(shown), 1)
    label_size = 9 if rows <= 30 else 8
    class_height = max(3.5, 0.16 * rows * max(len(names), 1) ** 0.5 + 1.0)
    fig = plt.figure(figsize=(16, class_height + 4.5), dpi=80)
    grid = fig.add_gridspec(2, 4, height_ratios=[class_height, 4.0])
    y = np.arange(len(shown))
    height = 0.8 / max(len(names), 1)
    for col, key in ((0, "boxes"), (2, "images")):
        ax = fig.add_subplot(grid[0, col : col + 2])
        for k, split in enumerate(names):
            values = [stats["per_class"][c][split][key] for c in shown]
            ax.barh(y + k * height, values, height, label=split)
        ax.set_yticks(y + height * (len(names) - 1) / 2, shown, fontsize=label_size)
        ax.invert_yaxis()  # first class at the top
        note = f" ({hidden} classes without boxes not shown)" if hidden else ""
        ax.set_title(f"{key} per class{note}")
        ax.grid(axis="x", alpha=0.3)
        if names and shown:
            ax.legend(loc="lower right")

    ax = fig.add_subplot(grid[1, 0])
    for split in names:
        wh = np.array([a["bbox"][2:] for a in splits[split]["annotations"]]).reshape(-1, 2)
        ax.scatter(wh[:, 0], wh[:, 1], s=3, alpha=0.4, label=split)
    if any((np.array([a["bbox"][2:] for a in splits[s]["annotations"]]) > 0).any() for s in names):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend()
    ax.set_xlabel("box width (px)")
    ax.set_ylabel("box height (px)")
    ax.set_title("box width vs height")

    ax = fig.add_subplot(grid[1, 1])
    areas = np.array([a["area"] for s in names for a in splits[s]["annotations"]])
    areas = areas[areas > 0]
    if areas.size:
        bins = np.logspace(np.log10(max(areas.min(), 1.0)), np.log10(areas.max() + 1), 40)
        ax.hist(areas, bins=bins.tolist())
        ax.set_xscale("log")
    for limit in (SIZE_RANGES["small"][1], SIZE_RANGES["medium"][1]):
        ax.axvline(limit, color="k", linestyle="--")
    ax.set_xlabel("box area (px², original image)")
    ax.set_title("area (dashed: COCO 32², 96²)")

    ax = fig.add_subplot(grid[1, 2])
    buckets = SIZES
    width = 0.8 / max(len(names), 1)
    for k, split in enumerate(names):
        values = [stats["per_split"][split]["sizes"][b] for b in buckets]
        ax.bar(np.arange(3) + k * width, values, width, label=split)
    ax.set_xticks(np.arange(3) + width * (len(names) - 1) / 2, buckets)
    ax.set_title("COCO size buckets")
    if names:
        ax.legend()

    ax = fig.add_subplot(grid[1, 3])
    for split in names:
        hist = stats["per_split"][split]["boxes_per_image"]["histogram"]
        ax.plot([int(k) for k in hist], list(hist.values()), marker="o", label=split)
    ax.set_xlabel("boxes in the image")
    ax.set_ylabel("images")
    ax.set_title("boxes per image")
    if names:
        ax.legend()

    fig.tight_layout()
    fig.savefig(out_png, format="png", metadata={"Software": None})
    plt.close(fig)
    return shown
