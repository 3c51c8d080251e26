"""A generated dataset with label mistakes planted on purpose, for the label-audit tests.

``planted_case`` draws the true objects, makes "detections" of a decent detector from them
(most objects found with a high score and a slightly wrong box; some missed; weak
other-class and duplicate boxes; weak and a few confident false positives on background;
a few sloppy boxes), then copies the truth into the *labels* and plants mistakes there:
boxes removed (``missing``), classes changed (``wrong_class``), boxes shifted
(``loose``) and boxes added on background (``spurious``). The planted objects are drawn
from all objects, including ones the detector misses, so a perfect audit can still miss a
few of them.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = ["circle", "square", "triangle"]


@dataclass
class PlantedCase:
    truth: dict[str, Any]  # COCO dict of the true objects
    labels: dict[str, Any]  # the truth with the planted mistakes (what an audit sees)
    detections: list[dict[str, Any]]
    # kind -> planted mistakes: missing: (image_id, true bbox); others: annotation id
    planted: dict[str, list[Any]] = field(default_factory=dict)
    true_class: dict[int, int] = field(default_factory=dict)  # wrong_class ann id -> class


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _free_box(rng: np.random.Generator, taken: list[list[float]], size: int) -> list[float] | None:
    for _ in range(200):
        w, h = rng.uniform(24, 80, 2)
        x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
        box = [float(x), float(y), float(w), float(h)]
        if all(_iou(box, t) == 0 and not _touch(box, t) for t in taken):
            return box
    return None


def _touch(a: list[float], b: list[float], gap: float = 4.0) -> bool:
    return not (
        a[0] + a[2] + gap < b[0]
        or b[0] + b[2] + gap < a[0]
        or a[1] + a[3] + gap < b[1]
        or b[1] + b[3] + gap < a[1]
    )


def _jitter(rng: np.random.Generator, box: list[float], sigma: float, size: int) -> list[float]:
    x, y, w, h = box
    dx, dy, dw, dh = rng.normal(0, sigma, 4) * [w, h, w, h]
    x2, y2 = min(size, x + w + dx + dw), min(size, y + h + dy + dh)
    x1, y1 = max(0.0, x + dx), max(0.0, y + dy)
    return [float(x1), float(y1), float(max(2.0, x2 - x1)), float(max(2.0, y2 - y1))]


def planted_case(
    seed: int = 0, num_images: int = 60, size: int = 320, per_kind: int = 15
) -> PlantedCase:
    rng = np.random.default_rng(seed)
    c = len(CLASSES)
    images = [
        {"id": i, "file_name": f"images/{i:03d}.png", "width": size, "height": size}
        for i in range(1, num_images + 1)
    ]
    anns: list[dict[str, Any]] = []
    taken: dict[int, list[list[float]]] = {}
    for img in images:
        taken[img["id"]] = []
        for _ in range(int(rng.integers(3, 7))):
            box = _free_box(rng, taken[img["id"]], size)
            if box is None:
                break
            taken[img["id"]].append(box)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img["id"],
                    "category_id": int(rng.integers(1, c + 1)),
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                    "difficult": 0,
                }
            )
    categories = [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)]
    truth = {"images": images, "annotations": anns, "categories": categories}

    dets: list[dict[str, Any]] = []

    def det(image_id: int, cls: int, box: list[float], score: float) -> None:
        dets.append({"image_id": image_id, "category_id": cls, "bbox": box, "score": float(score)})

    for a in anns:
        i, cls, box = a["image_id"], a["category_id"], a["bbox"]
        r = rng.random()
        if r < 0.05:  # missed by the detector (at most a faint box)
            det(i, cls, _jitter(rng, box, 0.05, size), rng.uniform(0.01, 0.08))
            continue
        sigma = 0.15 if r < 0.10 else 0.04  # 5 % sloppy boxes, the rest good
        det(i, cls, _jitter(rng, box, sigma, size), rng.uniform(0.55, 0.99))
        if rng.random() < 0.3:  # a weak vote for another class
            other = int(rng.choice([k for k in range(1, c + 1) if k != cls]))
            det(i, other, _jitter(rng, box, 0.04, size), rng.uniform(0.02, 0.4))
        if rng.random() < 0.15:  # a weak duplicate
            det(i, cls, _jitter(rng, box, 0.12, size), rng.uniform(0.02, 0.3))
    for img in images:  # false positives on background
        for _ in range(int(rng.integers(0, 4))):
            box = _free_box(rng, taken[img["id"]], size)
            if box is not None:
                det(img["id"], int(rng.integers(1, c + 1)), box, rng.uniform(0.01, 0.3))
        if rng.random() < 0.1:
            box = _free_box(rng, taken[img["id"]], size)
            if box is not None:
                det(img["id"], int(rng.integers(1, c + 1)), box, rng.uniform(0.5, 0.75))

    labels = copy.deepcopy(truth)
    order = rng.permutation(len(anns)).tolist()
    chosen = {
        kind: [anns[j]["id"] for j in order[n * per_kind : (n + 1) * per_kind]]
        for n, kind in enumerate(("missing", "wrong_class", "loose"))
    }
    by_id = {a["id"]: a for a in labels["annotations"]}
    planted: dict[str, list[Any]] = {}
    planted["missing"] = [(by_id[k]["image_id"], by_id[k]["bbox"]) for k in chosen["missing"]]
    removed = set(chosen["missing"])
    labels["annotations"] = [a for a in labels["annotations"] if a["id"] not in removed]
    true_class: dict[int, int] = {}
    for k in chosen["wrong_class"]:
        a = by_id[k]
        true_class[k] = a["category_id"]
        a["category_id"] = int(rng.choice([x for x in range(1, c + 1) if x != a["category_id"]]))
    planted["wrong_class"] = list(chosen["wrong_class"])
    for k in chosen["loose"]:
        a = by_id[k]
        x, y, w, h = a["bbox"]
        dx, dy = rng.uniform(0.25, 0.4) * w, rng.uniform(0.0, 0.15) * h  # IoU 0.35-0.6
        dx = dx if x + w + dx <= size else -dx  # away from the border: the shift stays whole
        dy = dy if y + h + dy <= size else -dy
        a["bbox"] = [float(x + dx), float(y + dy), w, h]
    planted["loose"] = list(chosen["loose"])
    planted["spurious"] = []
    next_id = len(anns) + 1
    while len(planted["spurious"]) < per_kind:
        img = images[int(rng.integers(len(images)))]
        box = _free_box(rng, taken[img["id"]], size)
        if box is None:
            continue
        taken[img["id"]].append(box)
        labels["annotations"].append(
            {
                "id": next_id,
                "image_id": img["id"],
                "category_id": int(rng.integers(1, c + 1)),
                "bbox": box,
                "area": box[2] * box[3],
                "iscrowd": 0,
                "difficult": 0,
            }
        )
        planted["spurious"].append(next_id)
        next_id += 1
    return PlantedCase(truth, labels, dets, planted, true_class)


def planted_key(case: PlantedCase, suspect: Any) -> Any:
    """The planted mistake ``suspect`` finds (``None`` if it finds none)."""
    kind = suspect.kind
    if kind == "missing":
        for n, (image_id, box) in enumerate(case.planted["missing"]):
            if suspect.image_id == image_id and _iou(suspect.box, box) >= 0.5:
                return ("missing", n)
        return None
    if suspect.annotation_id not in case.planted[kind]:
        return None
    if kind == "wrong_class":
        true = CLASSES[case.true_class[suspect.annotation_id] - 1]
        if suspect.model_label != true:
            return None
    return (kind, suspect.annotation_id)


def recall_at_k(case: PlantedCase, ranked: list[Any], kind: str, k: int) -> float:
    """Share of the planted mistakes of ``kind`` among the first ``k`` suspects of it."""
    hits = {key for s in ranked[:k] if (key := planted_key(case, s)) is not None}
    return len(hits) / len(case.planted[kind])


def write_prepared_case(
    root: Path, case: PlantedCase, splits: dict[str, list[int]] | None = None
) -> Path:
    """The *labels* of ``case`` as a prepared dataset (``<split>.json``, ``classes.json``,
    PNG images that show the true objects as coloured rectangles).

    ``splits`` maps split names to image ids; default: every image in ``test``.
    """
    import torch
    from torchvision.io import write_png

    splits = splits or {"test": [img["id"] for img in case.labels["images"]]}
    root.mkdir(parents=True, exist_ok=True)
    for split, ids in splits.items():
        keep = set(ids)
        data = {
            "images": [img for img in case.labels["images"] if img["id"] in keep],
            "annotations": [a for a in case.labels["annotations"] if a["image_id"] in keep],
            "categories": case.labels["categories"],
        }
        (root / f"{split}.json").write_text(json.dumps(data))
    (root / "classes.json").write_text(json.dumps(CLASSES))
    colours = torch.tensor([[220, 60, 60], [60, 160, 60], [60, 60, 220]], dtype=torch.uint8)
    for img in case.labels["images"]:
        pixels = torch.full((3, img["height"], img["width"]), 200, dtype=torch.uint8)
        for a in case.truth["annotations"]:
            if a["image_id"] == img["id"]:
                x, y, w, h = (int(v) for v in a["bbox"])
                pixels[:, y : y + h, x : x + w] = colours[a["category_id"] - 1][:, None, None]
        path = root / img["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        write_png(pixels, str(path), compression_level=1)
    return root
