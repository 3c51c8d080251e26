"""Canonical output: COCO split JSONs, ``classes.json``, ``report.json`` and the image files.

Everything is written so that the same input gives the same bytes (sorted keys, fixed
indentation, rounded floats, deterministic PNG encoding), which keeps DVC from seeing
a change on a re-run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ssd.data.validate import ValidImage


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as UTF-8 JSON with sorted keys and one-space indentation."""
    path.write_text(json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def write_image(image: ValidImage, out_dir: Path) -> None:
    """Write the source file's bytes as they were read and checked (or encode the pixels as
    PNG) to ``out_dir/images/``; the source is never opened again by name."""
    target = out_dir / "images" / image.file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    if image.pixels is not None:
        image.pixels.save(target, format="PNG", optimize=False, compress_level=1)
    elif image.data is not None:
        target.write_bytes(image.data)
    else:
        raise ValueError(f"{image.file_name}: neither pixels nor the file's bytes to write")


def categories(classes: list[str]) -> list[dict[str, Any]]:
    return [{"id": i + 1, "name": name} for i, name in enumerate(classes)]


def coco_split(
    images: list[ValidImage], image_ids: list[int], first_ann_id: int, classes: list[str]
) -> dict[str, Any]:
    """The COCO dict of one split. ``image_ids`` are global (unique across splits);
    annotation ids start at ``first_ann_id`` and follow the image order."""
    out_images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    ann_id = first_ann_id
    for image, image_id in zip(images, image_ids, strict=True):
        out_images.append(
            {
                "id": image_id,
                "file_name": f"images/{image.file_name}",
                "width": image.width,
                "height": image.height,
            }
        )
        for box in image.boxes:
            x, y, w, h = (round(v, 2) for v in (box.x, box.y, box.w, box.h))
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": box.label + 1,
                    "bbox": [x, y, w, h],
                    "area": round(w * h, 2),
                    "iscrowd": 0,
                    "difficult": int(box.difficult),
                }
            )
            ann_id += 1
    return {"images": out_images, "annotations": annotations, "categories": categories(classes)}
