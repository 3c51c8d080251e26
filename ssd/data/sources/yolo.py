"""YOLO txt reader: one ``class cx cy w h`` line per box (normalised to [0, 1], in the
displayed image: its EXIF orientation applied); polygon lines (``class x1 y1 x2 y2 ...``)
become their box.

Where the images are:

- an Ultralytics ``data.yaml`` (``path``, ``train``, ``val``, optional ``test``, ``names`` as
  a list or a ``{id: name}`` mapping, or only ``nc``): each split is a folder, a ``.txt``
  list of image files, or a list of those, relative to ``path`` (itself relative to the
  YAML's folder; a ``path`` that does not exist there, such as the author's
  ``/content/datasets/x``, is ignored). Roboflow's ``../train/images`` is found as
  ``train/images``, as Ultralytics does. The YAML is ``data.names_file`` when it names one,
  else the first of data.yaml, dataset.yaml, data.yml at the root, else the only YAML at
  the root with ``names``;
- otherwise folders: ``images/<split>/`` (Ultralytics), ``<split>/images`` (Roboflow), or
  flat ``images/`` (split by ratio); split folders may be called train, val/valid, test.

Each image's label is found as Ultralytics finds it: the path with its last ``images``
folder replaced by ``labels`` and the suffix by ``.txt`` (next to the image when the path
has no ``images`` folder). An image without a label file is a background image (no
objects), as in YOLO. Class names come from the YAML, or from ``data.names_file`` /
classes.txt, obj.names, classes.names (one name a line).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssd.data import report as R
from ssd.errors import DataError
from ssd.data.images import IMAGE_SUFFIXES
from ssd.data.records import RawBox, RawImage, SourceData
from ssd.data.safety import DatasetRoot, UnsafePath
from ssd.data.sources.coco import split_of
from ssd.data.sources.names import (
    YAML_SUFFIXES,
    names_from,
    names_path,
    read_names,
    read_yaml,
)

YAML_FILES = ("data.yaml", "dataset.yaml", "data.yml")
TEXT_NAME_FILES = ("classes.txt", "obj.names", "classes.names")
NAME_FILES = (*YAML_FILES, *TEXT_NAME_FILES)
SPLIT_KEYS = ("train", "val", "test")


@dataclass
class _Layout:
    """The images found, by split (``None``: no split), and how they were found."""

    images: list[tuple[str | None, Path]] = field(default_factory=list)
    description: str = ""
    splits: frozenset[str] = frozenset()


def label_path(image: Path) -> Path:
    """The label file of ``image``: its last ``images`` folder replaced by ``labels`` (as
    Ultralytics' ``img2label_paths``), suffix ``.txt``; next to the image without one."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _parse_line(tokens: list[str]) -> tuple[int, tuple[float, float, float, float]]:
    """``(class index, (x1, y1, x2, y2) normalised)``; ``ValueError`` names the problem."""
    if len(tokens) < 5 or (len(tokens) > 5 and len(tokens) % 2 == 0):
        raise ValueError(f"expected 'class cx cy w h' (or a polygon), got {len(tokens)} values")
    cls_f = float(tokens[0])
    values = [float(t) for t in tokens[1:]]
    if not math.isfinite(cls_f) or not cls_f.is_integer() or not all(map(math.isfinite, values)):
        raise ValueError(
            f"class id must be an integer and coordinates finite: {' '.join(tokens)[:80]}"
        )
    if len(values) == 4:
        cx, cy, w, h = values
        corners = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    else:
        xs, ys = values[0::2], values[1::2]
        corners = (min(xs), min(ys), max(xs), max(ys))
    return int(cls_f), corners


# ------------------------------------------------------------------ class names and data.yaml


def _find_yaml(root: DatasetRoot) -> Path | None:
    for name in YAML_FILES:
        if root.is_file(root.path / name):
            return root.path / name
    with_names = []
    for p in sorted(root.path.iterdir()):
        if p.suffix.lower() not in YAML_SUFFIXES or not root.is_file(p):
            continue
        try:
            data = read_yaml(root, p)
        except DataError:  # some other YAML file of the user's
            continue
        if isinstance(data, dict) and "names" in data:
            with_names.append(p)
    return with_names[0] if len(with_names) == 1 else None


def _yaml_with_names_below(root: DatasetRoot) -> str | None:
    """``sub/x.yaml`` when exactly one YAML one folder down names classes: Ultralytics'
    coco128 keeps its ``object_detection/config.yaml`` beside the shared ``images/``."""
    found = []
    try:
        subs = [p for p in sorted(root.path.iterdir()) if p.is_dir() and root.contains(p)]
        for sub in subs:
            for p in sorted(sub.iterdir()):
                if p.suffix.lower() in YAML_SUFFIXES and root.is_file(p):
                    try:
                        data = read_yaml(root, p)
                    except DataError:
                        continue
                    if isinstance(data, dict) and "names" in data:
                        found.append(root.name(p))
    except OSError:
        return None
    return found[0] if len(found) == 1 else None


def _yaml_names(data: Any, where: str) -> list[str]:
    if isinstance(data, dict) and "names" not in data and isinstance(data.get("nc"), int):
        return [f"class_{i}" for i in range(data["nc"])]  # as Ultralytics names them
    return names_from(data.get("names") if isinstance(data, dict) else data, where)


def _classes_and_yaml(
    root: DatasetRoot, names_file: str | None
) -> tuple[list[str], Path | None, dict[str, Any] | None]:
    """Class names, and the data.yaml (path and content) when there is one."""
    if names_file:
        path = names_path(root, names_file)
        if path.suffix.lower() not in YAML_SUFFIXES:
            return read_names(root, path), None, None
    else:
        found = _find_yaml(root)
        if found is None:
            plain = [root.path / n for n in TEXT_NAME_FILES if root.is_file(root.path / n)]
            if not plain:
                below = _yaml_with_names_below(root)
                raise DataError(
                    f"no class names for the YOLO dataset in {root.path}: "
                    + (
                        f"{below} has them: set data.names_file={below}"
                        if below
                        else "add data.yaml with 'names: [...]' (or classes.txt, one name a "
                        "line), or set data.names_file to the YAML or text file that has them"
                    )
                )
            return read_names(root, plain[0]), None, None
        path = found
    data = read_yaml(root, path)
    classes = _yaml_names(data, root.name(path))
    return classes, path, data if isinstance(data, dict) else None


# ------------------------------------------------------------------ where the images are


def _images_in(folder: Path) -> list[Path]:
    return [
        p for p in sorted(folder.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    ]


def _entry_path(root: DatasetRoot, base: Path, entry: str, key: str, yaml_name: str) -> Path:
    """A split entry of data.yaml as an existing path inside the root."""
    text = entry.strip()
    tries = [text] + ([text[3:]] if text.startswith("../") else [])  # Roboflow's ../train
    outside: Path | None = None
    for t in tries:
        candidate = Path(t).expanduser()
        candidate = candidate if candidate.is_absolute() else base / candidate
        if root.is_file(candidate) or _exists_dir(candidate):
            if root.contains(candidate):
                return candidate
            outside = candidate
    if outside is not None:
        try:
            root.check(outside)
        except UnsafePath as err:  # e.g. coco128's object_detection/images -> ../images
            both = Path(os.path.commonpath([root.real, outside.resolve()]))
            yaml_file = (root.path / yaml_name).resolve()
            raise DataError(
                f"{yaml_name}: {key}: {err}; to read this dataset, set data.path to {both} "
                f"(the folder that holds both) and data.names_file="
                f"{yaml_file.relative_to(both).as_posix()}"
            ) from None
    raise DataError(
        f"{yaml_name}: {key}: '{entry}' not found (looked at {base / text}); fix the path in "
        f"{yaml_name} (relative to its 'path', or to its folder)"
    )


def _exists_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _list_file(
    root: DatasetRoot, list_file: Path, base: Path, report: R.Report
) -> list[Path]:
    """The images a ``.txt`` list names: ``./x`` relative to the list's folder, other
    relative paths to the dataset's ``path``; each one inside the root."""
    name = root.name(list_file)
    try:
        lines = root.read_text(list_file).splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read the image list {name}: {err}") from None
    out: list[Path] = []
    for n, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            if Path(text).is_absolute():
                out.append(root.check(Path(text)))
            elif text.startswith("./"):
                out.append(root.join(list_file.parent, text[2:]))
            else:
                out.append(root.join(base, text))
        except UnsafePath as err:
            report.skip(f"{name}: line {n}", "image", R.UNSAFE_PATH, str(err))
    return out


def _from_yaml(
    root: DatasetRoot, yaml_path: Path, data: dict[str, Any], report: R.Report
) -> _Layout:
    yaml_name = root.name(yaml_path)
    base = yaml_path.parent
    note = ""
    given = data.get("path")
    if isinstance(given, str) and given.strip():
        candidate = Path(given).expanduser()
        candidate = candidate if candidate.is_absolute() else base / candidate
        if _exists_dir(candidate):
            base = root.check(candidate)
        else:
            note = f" ('path: {given}' does not exist here: paths are taken from its folder)"
    layout = _Layout()
    seen: dict[Path, str] = {}
    given_splits: list[str] = []
    notes: list[str] = []
    for key in SPLIT_KEYS:
        value = data.get(key)
        if value in (None, "", []):
            continue
        entries = value if isinstance(value, list) else [value]
        found: list[Path] = []
        for entry in entries:
            if not isinstance(entry, str):
                raise DataError(f"{yaml_name}: {key} must be a path or a list of paths")
            path = _entry_path(root, base, entry, key, yaml_name)
            if _exists_dir(path):
                found += _images_in(path)
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                found.append(path)
            else:
                found += _list_file(root, path, base, report)
        if found and all(image.resolve() in seen for image in found):
            # coco128's val is its train: not a split of its own, drawn at random instead
            first = seen[found[0].resolve()]
            notes.append(f"{key} lists the same images as {first}")
            continue
        given_splits.append(key)
        for image in found:
            real = image.resolve()
            if real in seen:
                report.skip(
                    root.name(image),
                    "image",
                    R.DUPLICATE_ID,
                    f"listed for {key} in {yaml_name} but already for {seen[real]}; kept there",
                )
                continue
            seen[real] = key
            layout.images.append((key, image))
    if not given_splits and not notes:
        raise DataError(f"{yaml_name} names no split (train, val, test)")
    layout.splits = frozenset(given_splits)
    said = "; ".join(notes)
    layout.description = (
        f"{yaml_name}: {', '.join(given_splits)}{note}" + (f" ({said})" if said else "")
    )
    return layout


def _from_folders(root: DatasetRoot) -> _Layout:
    base = root.path
    layout = _Layout()
    if root.is_dir(base / "images"):
        images = base / "images"
        subdirs = [d for d in sorted(images.iterdir()) if split_of(d.name) and root.is_dir(d)]
        for d in subdirs:
            layout.images += [(split_of(d.name), p) for p in _images_in(d)]
        layout.images += [
            (None, p) for p in _images_in(images) if not any(p.is_relative_to(d) for d in subdirs)
        ]  # loose files and other folders: split by ratio
        layout.description = "images/" + (
            "{" + ", ".join(d.name for d in subdirs) + "}" if subdirs else ""
        )
    else:
        dirs = [
            d
            for d in sorted(base.iterdir())
            if split_of(d.name) and _exists_dir(d) and root.is_dir(d / "images")
        ]
        if not dirs:
            raise DataError(
                f"{base} has no images/ folder (nor <split>/images, nor a data.yaml naming the "
                "splits); a YOLO dataset needs images/ and labels/ (or set data.source to voc "
                "or coco)"
            )
        for d in dirs:
            layout.images += [(split_of(d.name), p) for p in _images_in(d / "images")]
        layout.description = ", ".join(f"{d.name}/images" for d in dirs)
    layout.splits = frozenset(s for s, _ in layout.images if s is not None)
    return layout


# ------------------------------------------------------------------ the reader


def _read_label(
    root: DatasetRoot, label: Path, where: str, classes: list[str], report: R.Report
) -> list[RawBox] | None:
    """The boxes of a label file (bad lines reported); None when the file cannot be used."""
    try:
        lines = root.read_text(label).splitlines()
    except UnsafePath as err:
        report.skip(where, "image", R.UNSAFE_PATH, f"label: {err} (its boxes were not read)")
        return None
    except (OSError, UnicodeDecodeError) as err:
        report.skip(where, "image", R.MALFORMED_ANNOTATION, f"label unreadable: {err}")
        return None
    boxes: list[RawBox] = []
    for n, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            cls, (x1, y1, x2, y2) = _parse_line(tokens)
        except (ValueError, OverflowError) as err:
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
        boxes.append(RawBox(x1, y1, x2, y2, label=cls))
    return boxes


def _labels_at(root: DatasetRoot, layout: _Layout) -> str:
    folders = sorted({root.name(label_path(p).parent) for _, p in layout.images})
    shown = ", ".join(f"{f}/" for f in folders[:4]) + (", ..." if len(folders) > 4 else "")
    missing = [f for f in folders if not _exists_dir(root.path / f)]
    where = f"YOLO label files (<image name>.txt) in {shown or 'labels/'}"
    if missing:
        where += f"; {', '.join(f + '/' for f in missing[:4])} do{'es' if len(missing) == 1 else ''} not exist"
    return where


def read_yolo(root: DatasetRoot, report: R.Report, names_file: str | None = None) -> SourceData:
    classes, yaml_path, data = _classes_and_yaml(root, names_file)
    if yaml_path is not None and data is not None and any(k in data for k in SPLIT_KEYS):
        layout = _from_yaml(root, yaml_path, data, report)
    else:
        layout = _from_folders(root)

    images: list[RawImage] = []
    used_labels: dict[Path, str] = {}
    for split, image_path in layout.images:
        label = label_path(image_path)
        file_name = root.name(image_path).removeprefix("images/")
        where = root.name(label if root.is_file(label) else image_path)
        if label in used_labels:
            report.skip(
                root.name(image_path),
                "image",
                R.DUPLICATE_ID,
                f"{used_labels[label]} already uses {root.name(label)} (same name stem); "
                "its boxes stay with that image",
                boxes=0,
            )
            continue
        used_labels[label] = root.name(image_path)
        raw = RawImage(
            file_name=file_name, annotation=where, path=image_path, split=split, normalized=True
        )
        if root.is_file(label):
            boxes = _read_label(root, label, where, classes, report)
            if boxes is None:
                continue
            raw.boxes = boxes
        images.append(raw)
    # Label files with no image are reported: an image is missing.
    label_dirs = sorted({label_path(p).parent for _, p in layout.images})
    label_dirs = [d for d in label_dirs if _exists_dir(d) and root.contains(d)]
    for label_dir in label_dirs:
        deeper = [d for d in label_dirs if d != label_dir and d.is_relative_to(label_dir)]
        for label in sorted(label_dir.rglob("*.txt")):
            if label.name in NAME_FILES or any(label.is_relative_to(d) for d in deeper):
                continue
            if label not in used_labels:
                # read only to count its boxes (its own problems are not the run's)
                boxes = _read_label(root, label, "", classes, R.Report()) or []
                report.skip_image(
                    root.name(label),
                    R.MISSING_IMAGE,
                    "label file without an image of the same name",
                    len(boxes),
                )
    images.sort(key=lambda im: im.file_name)
    return SourceData(
        classes=classes,
        images=iter(images),
        description={"layout": layout.description or "yolo"},
        splits=layout.splits,
        root=root,
        labels_at=_labels_at(root, layout),
    )
