"""Small prepared datasets and detection sets for the evaluation tests (built in tmp_path)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.io import write_png


def write_prepared(
    root: Path,
    split: str,
    images: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
    classes: list[str],
    write_images: bool = False,
) -> Path:
    """Write ``<root>/<split>.json`` and ``classes.json`` (and grey PNGs if asked)."""
    root.mkdir(parents=True, exist_ok=True)
    imgs = [{"file_name": f"images/{im['id']}.png", **im} for im in images]
    anns = []
    for n, a in enumerate(annotations):
        w, h = a["bbox"][2], a["bbox"][3]
        anns.append({"id": n + 1, "area": w * h, "iscrowd": 0, "difficult": 0, **a})
    data = {
        "images": imgs,
        "annotations": anns,
        "categories": [{"id": i + 1, "name": c} for i, c in enumerate(classes)],
    }
    (root / f"{split}.json").write_text(json.dumps(data))
    (root / "classes.json").write_text(json.dumps(classes))
    if write_images:
        for im in imgs:
            path = root / im["file_name"]
            path.parent.mkdir(parents=True, exist_ok=True)
            write_png(torch.full((3, im["height"], im["width"]), 128, dtype=torch.uint8), str(path))
    return root


def random_case(
    seed: int, num_images: int = 40, num_classes: int = 4, size: int = 300
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Images, GT and noisy detections (hits, shifted boxes, wrong classes, background)."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for i in range(1, num_images + 1):
        images.append({"id": i, "width": size, "height": size})
        for _ in range(int(rng.integers(0, 5))):
            w, h = rng.uniform(8, 150, 2)
            x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
            c = int(rng.integers(1, num_classes + 1))
            anns.append({"image_id": i, "category_id": c, "bbox": [x, y, w, h]})
            for _ in range(int(rng.integers(0, 3))):
                j = rng.normal(0, 0.25, 4) * [w, h, w, h]
                bx, by = (
                    float(np.clip(x + j[0], 0, size - 2)),
                    float(np.clip(y + j[1], 0, size - 2)),
                )
                bw = float(np.clip(w + j[2], 1, size - bx))
                bh = float(np.clip(h + j[3], 1, size - by))
                cls = c if rng.random() < 0.7 else int(rng.integers(1, num_classes + 1))
                dets.append(
                    {
                        "image_id": i,
                        "category_id": cls,
                        "bbox": [bx, by, bw, bh],
                        "score": float(rng.random()),
                    }
                )
        for _ in range(int(rng.integers(0, 4))):
            w, h = rng.uniform(5, 100, 2)
            dets.append(
                {
                    "image_id": i,
                    "category_id": int(rng.integers(1, num_classes + 1)),
                    "bbox": [
                        float(rng.uniform(0, 200)),
                        float(rng.uniform(0, 200)),
                        float(w),
                        float(h),
                    ],
                    "score": float(rng.random()),
                }
            )
    for n, a in enumerate(anns):
        a["id"] = n + 1
        a["area"] = a["bbox"][2] * a["bbox"][3]
        a["iscrowd"] = 0
    return images, anns, dets


def coco_dict(
    images: list[dict[str, Any]], anns: list[dict[str, Any]], num_classes: int
) -> dict[str, Any]:
    return {
        "images": images,
        "annotations": anns,
        "categories": [{"id": k, "name": f"c{k}"} for k in range(1, num_classes + 1)],
    }
