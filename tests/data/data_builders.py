"""Builders for small datasets in every supported input format, written in a test's tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
BCCD = REPO_ROOT.parent / "shared" / "datasets" / "bccd"


def write_image(path: Path, size: tuple[int, int] = (64, 48), fmt: str = "JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 60, 30)).save(path, format=fmt)
    return path


def voc_xml(
    filename: str,
    objects: list[
        tuple[str, tuple[float, float, float, float]] | tuple[str, tuple[float, ...], int]
    ],
    size: tuple[int, int] | None = (64, 48),
) -> str:
    parts = ["<annotation>", f"<filename>{filename}</filename>"]
    if size is not None:
        parts.append(
            f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
        )
    for obj in objects:
        name, (x1, y1, x2, y2) = obj[0], obj[1]
        difficult = obj[2] if len(obj) > 2 else 0
        parts.append(
            f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>"
            f"<xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax>"
            "</bndbox></object>"
        )
    parts.append("</annotation>")
    return "\n".join(parts)


def make_voc(
    root: Path,
    items: dict[str, str | None],
    splits: dict[str, list[str]] | None = None,
    images: list[str] | None = None,
) -> Path:
    """``items``: id -> XML text (None: no XML). ``images``: ids that get a JPEG (default all)."""
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    for image_id, xml in items.items():
        if xml is not None:
            (root / "Annotations" / f"{image_id}.xml").write_text(xml)
    for image_id in images if images is not None else list(items):
        write_image(root / "JPEGImages" / f"{image_id}.jpg")
    if splits:
        main = root / "ImageSets" / "Main"
        main.mkdir(parents=True, exist_ok=True)
        for split, ids in splits.items():
            (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def good_voc(root: Path, n: int = 6) -> Path:
    """``n`` clean images, classes cat/dog, split by ratio."""
    items = {
        f"im{i}": voc_xml(f"im{i}.jpg", [("cat", (4, 4, 30, 30)), ("dog", (20, 10, 60, 40), 1)])
        for i in range(n)
    }
    return make_voc(root, items)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def reasons(report: dict[str, Any], key: str = "skipped") -> list[str]:
    return [r["reason"] for r in report[key]]


def make_coco(
    root: Path,
    images: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
    categories: list[dict[str, Any]] | None = None,
    json_name: str = "annotations/instances.json",
    create_images: bool = True,
) -> Path:
    """One COCO JSON at ``root/json_name``; image files under ``root/images``."""
    cats = (
        categories
        if categories is not None
        else [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}]
    )
    path = root / json_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": cats}))
    if create_images:
        for im in images:
            if ".." not in im["file_name"] and not im["file_name"].startswith("/"):
                write_image(root / "images" / im["file_name"], (im["width"], im["height"]))
    return root


def coco_images(n: int) -> list[dict[str, Any]]:
    return [{"id": i + 1, "file_name": f"{i:03d}.jpg", "width": 64, "height": 48} for i in range(n)]


def coco_boxes(n: int) -> list[dict[str, Any]]:
    return [
        {"id": 100 + i, "image_id": i + 1, "category_id": 3 if i % 2 else 1, "bbox": [2, 3, 20, 10]}
        for i in range(n)
    ]


def make_yolo(
    root: Path, labels: dict[str, str | None], names: list[str] | None = None, sub: str = ""
) -> Path:
    """``labels``: image stem -> label text (None: no label file), under images/<sub>."""
    for stem, text in labels.items():
        write_image(root / "images" / sub / f"{stem}.jpg", (100, 50))
        if text is not None:
            label = root / "labels" / sub / f"{stem}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(text)
    if names is not None:
        (root / "data.yaml").write_text("names: [" + ", ".join(names) + "]\n")
    return root
