"""COCO <-> FiftyOne, once: a prepared split (COCO images and annotations) and COCO results
as FiftyOne samples, and FiftyOne's relative boxes back to pixels.

COCO boxes are ``[x, y, w, h]`` in pixels, category ids ``1..C`` index the class names;
FiftyOne boxes are ``[x, y, w, h]`` relative to the image size. Ground truth goes to the
sample field ``ground_truth``, results (with ``confidence``) to ``predictions``. The
callers (browse, the audit review, the corrected export) add their own attributes per
object through ``gt_attrs`` / ``det_attrs``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import fiftyone as fo


def relative_box(bbox: Sequence[float], width: float, height: float) -> list[float]:
    """COCO ``[x, y, w, h]`` pixels -> FiftyOne ``[x, y, w, h]`` relative to the image."""
    x, y, w, h = (float(v) for v in bbox)
    return [x / width, y / height, w / width, h / height]


def pixel_box(box: Sequence[float], width: float, height: float) -> list[float]:
    """FiftyOne's relative ``[x, y, w, h]`` -> pixels, to 0.01 px."""
    x, y, w, h = (float(v) for v in box)
    return [round(x * width, 2), round(y * height, 2), round(w * width, 2), round(h * height, 2)]


def _no_attrs(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {}


def coco_samples(
    root: str | Path,
    images: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    annotations: Iterable[Mapping[str, Any]] = (),
    detections: Iterable[tuple[Any, Mapping[str, Any]]] | None = None,
    *,
    gt_attrs: Callable[[Mapping[str, Any]], dict[str, Any]] = _no_attrs,
    det_attrs: Callable[[Any, Mapping[str, Any]], dict[str, Any]] | None = None,
    sample_attrs: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
) -> list[fo.Sample]:
    """One sample per COCO image (its file under ``root``), in the order of ``images``.

    Args:
        root: the folder the images' ``file_name`` is relative to (a prepared dataset).
        images: COCO images (``id``, ``file_name``, ``width``, ``height``).
        class_names: names of category ids ``1..C``.
        annotations: COCO annotations -> ``ground_truth`` (``difficult`` kept).
        detections: ``(key, COCO result)`` pairs -> ``predictions`` with ``confidence``;
            None: no ``predictions`` field. Results of images not in ``images`` are left out.
        gt_attrs / det_attrs: extra attributes of each object (``det_attrs`` gets the key;
            ``gt_attrs`` may replace ``difficult``).
        sample_attrs: extra fields of each sample (default: ``image_id``).
    """
    root = Path(root)
    by_id = {img["id"]: img for img in images}
    gts: dict[Any, list[fo.Detection]] = defaultdict(list)
    for ann in annotations:
        img = by_id[ann["image_id"]]
        attrs = {"difficult": bool(ann.get("difficult", 0))} | gt_attrs(ann)
        gts[ann["image_id"]].append(
            fo.Detection(
                label=class_names[int(ann["category_id"]) - 1],
                bounding_box=relative_box(ann["bbox"], img["width"], img["height"]),
                **attrs,
            )
        )
    preds: dict[Any, list[fo.Detection]] = defaultdict(list)
    for key, det in detections or ():
        of = by_id.get(det["image_id"])
        if of is None:
            continue
        preds[det["image_id"]].append(
            fo.Detection(
                label=class_names[int(det["category_id"]) - 1],
                bounding_box=relative_box(det["bbox"], of["width"], of["height"]),
                confidence=float(det["score"]),
                **(det_attrs(key, det) if det_attrs else {}),
            )
        )
    samples = []
    for image_id, img in by_id.items():
        fields: dict[str, Any] = {"ground_truth": fo.Detections(detections=gts[image_id])}
        if detections is not None:
            fields["predictions"] = fo.Detections(detections=preds[image_id])
        fields |= sample_attrs(img) if sample_attrs else {"image_id": image_id}
        samples.append(
            fo.Sample(
                filepath=str((root / str(img["file_name"])).resolve()),
                metadata=fo.ImageMetadata(width=img["width"], height=img["height"]),
                **fields,
            )
        )
    return samples
