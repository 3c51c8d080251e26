"""YOLO txt reader: ``images/`` + ``labels/`` with one ``class cx cy w h`` line per box
(normalised to [0, 1]); polygon lines (``class x1 y1 x2 y2 ...``) become their box.

Layouts: ``images/<split>/`` + ``labels/<split>/`` (Ultralytics), ``<split>/images`` +
``<split>/labels`` (Roboflow), or flat ``images/`` + ``labels/`` (split by ratio); split
folders may be called train, val/valid, test. An image without a label file is a
background image (no objects), as in YOLO. Class names come from ``data.names_file`` or
the first of data.yaml, dataset.yaml, data.yml, classes.txt, obj.names, classes.names.
"""

from __future__ import annotations

import math
from pathlib import Path

from ssd.data import report as R
from ssd.data.errors import DataError
from ssd.data.records import RawBox, RawImage, SourceData
from ssd.data.safety import is_inside, relative_name
from ssd.data.sources.coco import split_of
from ssd.data.sources.names import names_path, read_names
from ssd.data.sources.voc import IMAGE_SUFFIXES

NAME_FILES = ("data.yaml", "dataset.yaml", "data.yml", "classes.txt", "obj.names", "classes.names")


def _pairs(root: Path) -> list[tuple[Path, Path, str | None]]:
    """``(images folder, labels folder, split)`` for the layout found under ``root``."""
    if (root / "images").is_dir():
        images, labels = root / "images", root / "labels"
        subdirs = [d for d in sorted(images.iterdir()) if d.is_dir() and split_of(d.name)]
        pairs = [(d, labels / d.name, split_of(d.name)) for d in subdirs]
        return [*pairs, (images, labels, None)]  # loose files / other folders: by ratio
    pairs = []
    for d in sorted(root.iterdir()):
        if d.is_dir() and split_of(d.name) and (d / "images").is_dir():
            pairs.append((d / "images", d / "labels", split_of(d.name)))
    if not pairs:
        raise DataError(
            f"{root} has no images/ folder (nor <split>/images); a YOLO dataset needs "
            "images/ and labels/ (or set data.source to voc or coco)"
        )
    return pairs


def _parse_line(tokens: list[str]) -> tuple[int, tuple[float, float, float, float]]:
    """``(class index, (x1, y1, x2, y2) normalised)``; ``ValueError`` names the problem."""
    if len(tokens) < 5 or (len(tokens) > 5 and len(tokens) % 2 == 0):
        raise ValueError(f"expected 'class cx cy w h' (or a polygon), got {len(tokens)} values")
    cls_f = float(tokens[0])
    values = [float(t) for t in tokens[1:]]
    if not cls_f.is_integer() or not all(math.isfinite(v) for v in values):
        raise ValueError(f"class id must be an integer and coordinates finite: {' '.join(tokens)}")
    if len(values) == 4:
        cx, cy, w, h = values
        corners = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    else:
        xs, ys = values[0::2], values[1::2]
        corners = (min(xs), min(ys), max(xs), max(ys))
    return int(cls_f), corners


def read_yolo(root: Path, report: R.Report, names_file: str | None = None) -> SourceData:
    if names_file:
        classes = read_names(names_path(root, names_file))
    else:
        found = [root / n for n in NAME_FILES if (root / n).is_file()]
        if not found:
            raise DataError(
                f"no class names for the YOLO dataset in {root}: add data.yaml with "
                "'names: [...]' (or classes.txt, one name a line), or set data.names_file"
            )
        classes = read_names(found[0])

    images: list[RawImage] = []
    used_labels: set[Path] = set()
    label_dirs: list[Path] = []
    pairs = _pairs(root)
    for image_dir, label_dir, split in pairs:
        label_dirs.append(label_dir)
        others = [d for d, _, _ in pairs if d != image_dir and d.is_relative_to(image_dir)]
        for image_path in sorted(image_dir.rglob("*")):
            if image_path.suffix.lower() not in IMAGE_SUFFIXES or not image_path.is_file():
                continue
            if any(image_path.is_relative_to(d) for d in others):
                continue  # read with its own split folder
            rel = image_path.relative_to(image_dir)
            label = (label_dir / rel).with_suffix(".txt")
            file_name = relative_name(root, image_path).removeprefix("images/")
            where = relative_name(root, label if label.exists() else image_path)
            if not is_inside(root, image_path) or not is_inside(root, label):
                report.skip(
                    relative_name(root, image_path),
                    "image",
                    R.UNSAFE_PATH,
                    "image or label is a link to a file outside the dataset root; refused",
                )
                continue
            if label in used_labels:
                report.skip(
                    relative_name(root, image_path),
                    "image",
                    R.DUPLICATE_ID,
                    f"another image already uses {relative_name(root, label)} (same name stem)",
                )
                continue
            used_labels.add(label)
            raw = RawImage(
                file_name=file_name, annotation=where, path=image_path, split=split, normalized=True
            )
            if label.exists():
                try:
                    lines = label.read_text(encoding="utf-8").splitlines()
                except (OSError, UnicodeDecodeError) as err:
                    report.skip(where, "image", R.MALFORMED_ANNOTATION, f"label unreadable: {err}")
                    continue
                for n, line in enumerate(lines, start=1):
                    tokens = line.split()
                    if not tokens:
                        continue
                    try:
                        cls, (x1, y1, x2, y2) = _parse_line(tokens)
                    except ValueError as err:
                        report.skip(where, "box", R.MALFORMED_BOX, f"line {n}: {err}")
                        continue
                    if not 0 <= cls < len(classes):
                        report.skip(
                            where,
                            "box",
                            R.UNKNOWN_CLASS,
                            f"line {n}: class id {cls} is not in 0..{len(classes) - 1}",
                        )
                        continue
                    raw.boxes.append(RawBox(x1, y1, x2, y2, label=cls))
            images.append(raw)
    # Label files with no image are reported: an image is missing.
    for label_dir in label_dirs:
        if not label_dir.is_dir():
            continue
        for label in sorted(label_dir.rglob("*.txt")):
            deeper = [d for d in label_dirs if d != label_dir and d.is_relative_to(label_dir)]
            if label.name in NAME_FILES or any(label.is_relative_to(d) for d in deeper):
                continue
            if label not in used_labels:
                report.skip(
                    relative_name(root, label),
                    "image",
                    R.MISSING_IMAGE,
                    "label file without an image of the same name",
                )
    images.sort(key=lambda im: im.file_name)
    return SourceData(
        classes=classes,
        images=iter(images),
        description={"layout": "yolo"},
        splits=frozenset(split for _, _, split in pairs if split is not None),
    )
