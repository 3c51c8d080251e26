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
from collections import Counter
from pathlib import Path
from typing import Any

from ssd.data import report as R
from ssd.errors import DataError
from ssd.data.records import RawBox, RawImage, SourceData
from ssd.data.safety import DatasetRoot, UnsafePath

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


def _find_jsons(root: DatasetRoot, coco_json: str | None) -> list[tuple[Path, str | None]]:
    base = root.path
    if coco_json:
        path = root.option(coco_json, "coco_json")
        if not root.is_file(path):
            raise DataError(f"data.coco_json '{coco_json}' not found (looked at {path})")
        return [(path, None)]
    candidates = sorted((base / "annotations").glob("*.json")) if root.is_dir(base / "annotations") else []
    candidates += sorted(base.glob("*.json"))
    candidates += sorted(base.glob("*/_annotations.coco.json"))
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
            f"no COCO JSON found in {base} (looked in annotations/, the root and "
            "<split>/_annotations.coco.json); set data.coco_json"
        )
    raise DataError(
        f"several JSON files in {base} ({', '.join(root.name(p) for p in candidates)}); "
        "set data.coco_json to the instances file to use"
    )


def _image_dirs(root: DatasetRoot, json_path: Path, images_dir: str | None) -> list[Path]:
    """Where ``file_name`` is looked up, first match wins. A folder among them that is a
    link out of the root stops the run (:class:`UnsafePath`)."""
    if images_dir:
        folder = root.option(images_dir, "images_dir")
        if not root.is_dir(folder):
            raise DataError(f"data.images_dir '{images_dir}' is not a folder (looked at {folder})")
        return [folder]
    base = root.path
    stem = json_path.stem.removeprefix("instances_")
    dirs = [base / stem, base / "images" / stem, base / "images", json_path.parent, base]
    return [d for d in dict.fromkeys(dirs) if root.is_dir(d)]


def _load(root: DatasetRoot, json_path: Path, name: str, report: R.Report) -> dict[str, Any] | None:
    try:
        data = json.loads(root.read_text(json_path))
    except UnsafePath as err:
        report.skip(name, "annotation", R.UNSAFE_PATH, str(err))
        return None
    except RecursionError:
        report.skip(name, "annotation", R.MALFORMED_ANNOTATION, "JSON is nested too deeply")
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        first = str(err).splitlines()[0][:200]
        report.skip(name, "annotation", R.MALFORMED_ANNOTATION, f"JSON cannot be read: {first}")
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
        raise ValueError(f"bbox must be [x, y, w, h], got {str(value)[:80]}")
    x, y, w, h = (float(v) for v in value)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ValueError(f"bbox has a non-finite value: {value!r}")
    return x, y, w, h


def _images(
    root: DatasetRoot,
    data: dict[str, Any],
    name: str,
    dirs: list[Path],
    split: str | None,
    report: R.Report,
) -> tuple[list[RawImage], dict[int, RawImage]]:
    """The JSON's images, and per image id the one its annotations go to."""
    entries: list[tuple[int, RawImage]] = []
    for entry in data["images"]:
        try:
            image_id, file_name = int(entry["id"]), str(entry["file_name"])
            size = (int(entry.get("width", 0) or 0), int(entry.get("height", 0) or 0))
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            report.skip(name, "image", R.MALFORMED_ANNOTATION, f"bad image entry {str(entry)[:200]}")
            continue
        where = f"{name}: image {image_id} ({file_name[:200]})"
        raw = RawImage(file_name="", annotation=where, split=split)
        raw.annotated_size = size if size != (0, 0) else None
        try:
            options = [root.join(d, file_name) for d in dirs] or [root.join(root.path, file_name)]
        except UnsafePath as err:
            raw.refused = (R.UNSAFE_PATH, f"file_name: {err}")
            entries.append((image_id, raw))
            continue
        raw.path = next((p for p in options if root.is_file(p)), options[0])
        raw.file_name = root.name(raw.path).removeprefix("images/")
        entries.append((image_id, raw))
    # An id used twice: its boxes cannot be told apart, so none of its images is kept.
    count = Counter(image_id for image_id, _ in entries)
    by_id: dict[int, RawImage] = {}
    for image_id, raw in entries:
        if count[image_id] > 1:
            files = [r.file_name or "?" for i, r in entries if i == image_id]
            raw.refused = (
                R.DUPLICATE_ID,
                f"image id {image_id} is used by {count[image_id]} images ({', '.join(files)}); "
                "the boxes of that id cannot be told apart: give each image its own id",
            )
        by_id.setdefault(image_id, raw)  # the first takes the id's boxes (and reports them)
    return [raw for _, raw in entries], by_id


def read_coco(
    root: DatasetRoot, report: R.Report, coco_json: str | None = None, images_dir: str | None = None
) -> SourceData:
    files = _find_jsons(root, coco_json)
    loaded: list[tuple[Path, str, str | None, dict[str, Any]]] = []
    for path, split in files:
        name = root.name(path)
        data = _load(root, path, name, report)
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
            except (KeyError, TypeError, ValueError, OverflowError):
                report.skip(
                    name, "annotation", R.MALFORMED_ANNOTATION, f"bad category {str(cat)[:200]}"
                )
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
        listed, by_id = _images(root, data, name, _image_dirs(root, path, images_dir), split, report)
        seen_ann: set[int] = set()
        for ann in data.get("annotations", []):
            try:
                ann_id, image_id = int(ann["id"]), int(ann["image_id"])
                cat = int(ann["category_id"])
                x, y, w, h = _bbox(ann.get("bbox"))
            except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as err:
                ident = ann.get("id", "?") if isinstance(ann, dict) else "?"
                report.skip(name, "box", R.MALFORMED_BOX, f"annotation {str(ident)[:40]}: {err}")
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
        images += listed
    images.sort(key=lambda im: (im.file_name, im.annotation))
    return SourceData(
        classes=classes,
        images=iter(images),
        description={"annotations": ", ".join(name for _, name, _, _ in loaded)},
        splits=frozenset(split for _, split in files if split is not None),
        root=root,
        labels_at="the 'annotations' lists of "
        + (", ".join(name for _, name, _, _ in loaded) or "the COCO JSON"),
    )
