"""Builders for small datasets in every supported input format, written in a test's tmp_path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
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


# ---------------------------------------------------------------- crafted files


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header claims ``width x height`` RGB pixels."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b""))
        + _png_chunk(b"IEND", b"")
    )


def real_big_png(path: Path, width: int, height: int) -> Path:
    """A complete, valid 1-bit PNG of ``width x height`` (all black), written row by row so
    that it never needs the pixels in memory (20000 x 20000 is about 50 kB)."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    squash = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    data = b"".join(squash.compress(row) for _ in range(height)) + squash.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )
    return path


def png16(path: Path, values: Any) -> Path:
    """A 16-bit PNG of ``values`` (uint16 ``H x W`` gray or ``H x W x 3`` RGB), written by
    hand (Pillow writes 16-bit gray only)."""
    import struct
    import zlib

    import numpy as np

    arr = np.asarray(values, dtype=">u2")
    height, width = arr.shape[:2]
    color = 2 if arr.ndim == 3 else 0
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 16, color, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )
    return path


def exif_jpeg(path: Path, stored: tuple[int, int], orientation: int, marker: bool = False) -> Path:
    """A JPEG stored as ``stored`` (width, height) whose EXIF says ``orientation``."""
    im = Image.new("RGB", stored, (120, 60, 30))
    if marker:  # a white block in the stored top-left corner
        im.paste((255, 255, 255), (0, 0, stored[0] // 4, stored[1] // 4))
    exif = im.getexif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format="JPEG", quality=95, exif=exif.tobytes())
    return path


# ---------------------------------------------------------------- reads outside a folder

_WATCHED: list[tuple[str, list[str]]] = []
_HOOKED = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "open" or not _WATCHED or not args:
        return
    target = args[0]
    if isinstance(target, int) or target is None:
        return
    import os

    try:
        real = os.path.realpath(os.fsdecode(target))
    except (TypeError, ValueError):
        return
    for folder, hits in _WATCHED:
        if real == folder or real.startswith(folder + os.sep):
            hits.append(real)


@contextmanager
def reads_inside(folder: Path) -> Iterator[list[str]]:
    """Record every file opened (Python's ``open`` audit event, which Pillow, shutil and
    pathlib all raise) whose real path lies in ``folder``."""
    import os
    import sys

    global _HOOKED
    if not _HOOKED:
        sys.addaudithook(_audit)
        _HOOKED = True
    hits: list[str] = []
    entry = (os.path.realpath(folder), hits)
    _WATCHED.append(entry)
    try:
        yield hits
    finally:
        _WATCHED.remove(entry)
