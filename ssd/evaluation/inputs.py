"""Read a prepared split and check a list of COCO-format detections against it.

A prepared dataset ``data/prepared/<name>/`` holds ``{train,val,test}.json`` (COCO, with a
``difficult`` flag per annotation) and ``classes.json`` (names; index ``i`` is
``category_id`` ``i + 1``). Detections are COCO results: ``{image_id, category_id,
bbox: [x, y, w, h] pixels, score}``. Nothing invalid is used silently: each rejected
detection is returned with its index and the reason.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssd.evaluation.errors import EvaluationError

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """One prepared split: the COCO dict as written by ``ssd prepare`` and the class names."""

    name: str
    prepared_dir: Path
    dataset: dict[str, Any]
    class_names: list[str]

    @property
    def images(self) -> list[dict[str, Any]]:
        return list(self.dataset["images"])

    @property
    def annotations(self) -> list[dict[str, Any]]:
        return list(self.dataset["annotations"])


@dataclass
class CheckedDetections:
    """Detections split into the ones used and the ones rejected (with reasons)."""

    accepted: list[dict[str, Any]]
    accepted_index: list[int]  # position of each accepted detection in the input list
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {"index", "reason", "detection"}

    def summary(self, max_examples: int = 20) -> dict[str, Any]:
        reasons = Counter(r["reason"] for r in self.rejected)
        return {
            "count": len(self.rejected),
            "by_reason": dict(sorted(reasons.items())),
            "examples": self.rejected[:max_examples],
        }


def load_split(prepared_dir: str | Path, split: str) -> Split:
    """Load ``<prepared_dir>/<split>.json`` and ``classes.json``.

    Raises:
        EvaluationError: the folder or split file is missing, the split has no images, or
            ``classes.json`` disagrees with the split's categories.
    """
    root = Path(prepared_dir)
    if not root.is_dir():
        raise EvaluationError(
            f"prepared dataset '{root}' does not exist; run `ssd prepare` first "
            "(or pass --set data.name=NAME)"
        )
    path = root / f"{split}.json"
    if not path.is_file():
        present = sorted(p.stem for p in root.glob("*.json") if p.stem in SPLITS)
        raise EvaluationError(
            f"split '{split}' not found: {path} is missing (splits present: "
            f"{', '.join(present) or 'none'})"
        )
    try:
        dataset = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise EvaluationError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(dataset, dict) or not all(
        k in dataset for k in ("images", "annotations", "categories")
    ):
        raise EvaluationError(f"{path} is not a COCO file (needs images, annotations, categories)")
    if not dataset["images"]:
        raise EvaluationError(f"split '{split}' in {root} is empty: {path} lists no images")
    categories = sorted(dataset["categories"], key=lambda c: c["id"])
    names = [str(c["name"]) for c in categories]
    if [c["id"] for c in categories] != list(range(1, len(categories) + 1)):
        raise EvaluationError(
            f"{path}: category ids must be 1..C, got {[c['id'] for c in categories]}"
        )
    classes_file = root / "classes.json"
    if classes_file.is_file():
        listed = [str(n) for n in json.loads(classes_file.read_text())]
        if listed != names:
            raise EvaluationError(
                f"{classes_file} lists {listed} but {path} has categories {names}; "
                "re-run `ssd prepare`"
            )
    return Split(name=split, prepared_dir=root, dataset=dataset, class_names=names)


def check_class_names(model_classes: list[str], split: Split) -> None:
    """Fail with one message when a detector was trained on other classes than the split's."""
    if list(model_classes) != split.class_names:
        raise EvaluationError(
            f"class mismatch: the model predicts {list(model_classes)} but the dataset "
            f"'{split.prepared_dir}' has {split.class_names}; evaluate the model on the "
            "dataset it was trained for (--set data.name=...)"
        )


def check_detections(
    detections: list[Any], split: Split, tolerance_px: float = 1.0
) -> CheckedDetections:
    """Keep detections that refer to a known image and class and have a finite box inside it.

    Args:
        detections: COCO results ``{image_id, category_id, bbox: [x, y, w, h], score}``.
        split: the ground truth they are evaluated against.
        tolerance_px: how far (pixels) a box may reach past the image border before it is
            rejected as out-of-image.

    Returns:
        The accepted detections (normalised to plain ``int`` / ``float``) with their input
        positions, and the rejected ones with a reason each.
    """
    sizes = {img["id"]: (float(img["width"]), float(img["height"])) for img in split.images}
    num_classes = len(split.class_names)
    out = CheckedDetections(accepted=[], accepted_index=[])

    def reject(i: int, reason: str, det: Any) -> None:
        out.rejected.append({"index": i, "reason": reason, "detection": det})

    for i, det in enumerate(detections):
        if not isinstance(det, dict) or not all(
            k in det for k in ("image_id", "category_id", "bbox", "score")
        ):
            reject(i, "malformed (needs image_id, category_id, bbox, score)", det)
            continue
        bbox = det["bbox"]
        if not isinstance(bbox, list | tuple) or len(bbox) != 4:
            reject(i, "malformed bbox (needs [x, y, w, h])", det)
            continue
        try:
            x, y, w, h = (float(v) for v in bbox)
            score = float(det["score"])
            image_id, category_id = det["image_id"], int(det["category_id"])
        except (TypeError, ValueError):
            reject(i, "malformed (non-numeric values)", det)
            continue
        if image_id not in sizes:
            reject(i, "unknown image_id", det)
            continue
        if not 1 <= category_id <= num_classes:
            reject(i, "unknown category_id", det)
            continue
        if not all(math.isfinite(v) for v in (x, y, w, h, score)):
            reject(i, "non-finite box or score", det)
            continue
        if w <= 0 or h <= 0:
            reject(i, "empty box (w or h <= 0)", det)
            continue
        width, height = sizes[image_id]
        t = tolerance_px
        if x < -t or y < -t or x + w > width + t or y + h > height + t:
            reject(i, "box outside the image", det)
            continue
        out.accepted.append(
            {"image_id": image_id, "category_id": category_id, "bbox": [x, y, w, h], "score": score}
        )
        out.accepted_index.append(i)
    return out


def load_detections(path: str | Path) -> list[Any]:
    """Read a COCO results file (a JSON list of detections)."""
    p = Path(path)
    if not p.is_file():
        raise EvaluationError(f"detections file '{p}' does not exist")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise EvaluationError(f"{p} is not valid JSON: {err}") from None
    if not isinstance(data, list):
        raise EvaluationError(
            f"{p} must be a JSON list of {{image_id, category_id, bbox, score}} (COCO results)"
        )
    return data
