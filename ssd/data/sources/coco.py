"""COCO reader: an images folder plus an ``instances`` JSON (one per split, or one in all).

``data.coco_json`` names the JSON (relative to ``data.path``); by default it is found:
``annotations/instances_<split>*.json`` / ``<split>.json`` (one per split, the split
taken from the name), Roboflow's ``<split>/_annotations.coco.json``, or a single
``*.json`` at the root (then split by ratio). ``file_name`` is looked up under
``data.images_dir`` when set, else under ``<split folder>``, ``images/<split folder>``,
``images/``, the JSON's folder and the root, in that order. Category ids are mapped to
1..C in id order (names merged across JSONs); ``iscrowd`` regions are kept as
``difficult`` (ignored in evaluation, like VOC's flag).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from ssd.data import report as R
from ssd.data.errors import DataError
from ssd.data.records import RawBox, RawImage, SourceData
from ssd.data.safety import UnsafePath, relative_name, resolve_inside

_SPLIT_WORDS = (("train", "train"), ("val", "val"), ("valid", "val"), ("test", "test"))


def split_of(name: str) -> str | None:
    """``train``/``val``/``test`` when a file or folder name says so (``instances_val2017``)."""
    words = re.split(r"[^a-z]+", name.lower())
    for word, split in _SPLIT_WORDS:
        if word in words or any(w.startswith(word) and w[len(word) :].isdigit() for w in words):
            return split
    for word, split in _SPLIT_WORDS:
        if any(w.startswith(word) for w in words):
            return split
    return None


def _find_jsons(root: Path, coco_json: str | None) -> list[tuple[Path, str | None]]:
    if coco_json:
        path = Path(coco_json).expanduser()
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise DataError(f"data.coco_json '{coco_json}' not found (looked at {path})")
        return [(path, None)]
    candidates = (
        sorted((root / "annotations").glob("*.json")) if (root / "annotations").is_dir() else []
    )
    candidates += sorted(root.glob("*.json"))
    candidates += sorted(root.glob("*/_annotations.coco.json"))
    by_split = [
        (p, split_of(p.stem if p.name != "_annotations.coco.json" else p.parent.name))
        for p in candidates
    ]
    with_split: list[tuple[Path, str | None]] = [(p, s) for p, s in by_split if s is not None]
    if with_split and len({s for _, s in with_split}) == len(with_split):
        return with_split
    if len(candidates) == 1:
        return [(candidates[0], None)]
    if not candidates:
        raise DataError(
            f"no COCO JSON found in {root} (looked in annotations/, the root and "
            "<split>/_annotations.coco.json); set data.coco_json"
        )
    raise DataError(
        f"several JSON files in {root} ({', '.join(relative_name(root, p) for p in candidates)}); "
        "set data.coco_json to the instances file to use"
    )


def _image_dirs(root: Path, json_path: Path, images_dir: str | None) -> list[Path]:
    if images_dir:
        path = Path(images_dir).expanduser()
        return [path if path.is_absolute() else root / path]
    stem = json_path.stem.removeprefix("instances_")
    dirs = [root / stem, root / "images" / stem, root / "images", json_path.parent, root]
    return list(dict.fromkeys(dirs))


def _load(json_path: Path, name: str, report: R.Report) -> dict[str, Any] | None:
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        report.skip(name, "annotation", R.MALFORMED_ANNOTATION, f"JSON cannot be read: {err}")
        return None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        report.skip(name, "annotation", R.MALFORMED_ANNOTATION, "no 'images' list at the top level")
        return None
    for key in ("annotations", "categories"):
        if not isinstance(data.get(key, []), list):
            report.skip(name, "annotation", R.MALFORMED_ANNOTATION, f"'{key}' is not a list")
            return None
    return data


def _bbox(value: Any) -> tuple[float, float, float, float]:
    if not isinstance(value, list) or len(value) != 4:
        raise ValueError(f"bbox must be [x, y, w, h], got {value!r}")
    x, y, w, h = (float(v) for v in value)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ValueError(f"bbox has a non-finite value: {value!r}")
    return x, y, w, h


def read_coco(
    root: Path, report: R.Report, coco_json: str | None = None, images_dir: str | None = None
) -> SourceData:
    files = _find_jsons(root, coco_json)
    loaded: list[tuple[Path, str, str | None, dict[str, Any]]] = []
    for path, split in files:
        name = relative_name(root, path)
        data = _load(path, name, report)
        if data is not None:
            loaded.append((path, name, split, data))

    # Classes: category names in id order, merged across the JSON files.
    first_id: dict[str, int] = {}
    cat_names: list[dict[int, str]] = []
    for _, name, _, data in loaded:
        mapping: dict[int, str] = {}
        for cat in data.get("categories", []):
            try:
                cid, cname = int(cat["id"]), str(cat["name"]).strip()
            except (KeyError, TypeError, ValueError):
                report.skip(name, "annotation", R.MALFORMED_ANNOTATION, f"bad category {cat!r}")
                continue
            if cid in mapping:
                report.skip(name, "annotation", R.DUPLICATE_ID, f"category id {cid} appears twice")
                continue
            mapping[cid] = cname
            first_id.setdefault(cname, cid)
        cat_names.append(mapping)
    classes = sorted(first_id, key=lambda n: (first_id[n], n))
    index = {n: i for i, n in enumerate(classes)}

    images: list[RawImage] = []
    for (path, name, split, data), mapping in zip(loaded, cat_names, strict=True):
        dirs = _image_dirs(root, path, images_dir)
        by_id: dict[int, RawImage] = {}
        for entry in data["images"]:
            try:
                image_id, file_name = int(entry["id"]), str(entry["file_name"])
                size = (int(entry.get("width", 0) or 0), int(entry.get("height", 0) or 0))
            except (KeyError, TypeError, ValueError):
                report.skip(name, "image", R.MALFORMED_ANNOTATION, f"bad image entry {entry!r}")
                continue
            where = f"{name}: image {image_id} ({file_name})"
            if image_id in by_id:
                report.skip(where, "image", R.DUPLICATE_ID, f"image id {image_id} appears twice")
                continue
            try:
                options = [resolve_inside(d, file_name) for d in dirs]
            except UnsafePath as err:
                report.skip(where, "image", R.UNSAFE_PATH, f"file_name: {err}")
                by_id[image_id] = RawImage(file_name="", annotation=where)  # ids stay taken
                continue
            image_path = next((p for p in options if p.is_file()), options[0])
            out_name = relative_name(root, image_path)
            out_name = out_name.removeprefix("images/")
            by_id[image_id] = RawImage(
                file_name=out_name,
                annotation=where,
                path=image_path,
                annotated_size=size if size != (0, 0) else None,
                split=split,
            )
        seen_ann: set[int] = set()
        for ann in data.get("annotations", []):
            try:
                ann_id, image_id = int(ann["id"]), int(ann["image_id"])
                cat = int(ann["category_id"])
                x, y, w, h = _bbox(ann.get("bbox"))
            except (KeyError, TypeError, ValueError) as err:
                report.skip(name, "box", R.MALFORMED_BOX, f"annotation {ann.get('id', '?')}: {err}")
                continue
            where = f"{name}: annotation {ann_id}"
            if ann_id in seen_ann:
                report.skip(where, "box", R.DUPLICATE_ID, f"annotation id {ann_id} appears twice")
                continue
            seen_ann.add(ann_id)
            if image_id not in by_id:
                report.skip(where, "box", R.MALFORMED_BOX, f"image_id {image_id} is not an image")
                continue
            if cat not in mapping:
                report.skip(where, "box", R.UNKNOWN_CLASS, f"category_id {cat} is not a category")
                continue
            by_id[image_id].boxes.append(
                RawBox(
                    x,
                    y,
                    x + w,
                    y + h,
                    label=index[mapping[cat]],
                    difficult=bool(ann.get("iscrowd", 0)),
                )
            )
        images += [im for im in by_id.values() if im.file_name]
    images.sort(key=lambda im: im.file_name)
    return SourceData(
        classes=classes,
        images=iter(images),
        description={"annotations": ", ".join(name for _, name, _, _ in loaded)},
        splits=frozenset(split for _, split in files if split is not None),
    )
