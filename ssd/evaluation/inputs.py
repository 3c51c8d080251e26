"""Check a list of COCO-format detections against a prepared split.

Detections are COCO results: ``{image_id, category_id, bbox: [x, y, w, h] pixels, score}``.
What pycocotools can score is kept (boxes past the border included); nothing invalid is
used silently: each rejected detection is returned with its index and the reason.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssd.data.prepared import PreparedSplit
from ssd.errors import EvaluationError


@dataclass
class CheckedDetections:
    """Detections split into the ones used and the ones rejected (with reasons).

    ``past_border`` counts accepted boxes that reach outside their image and
    ``degenerate`` accepted boxes with zero or negative width or height: both are scored as
    given, as pycocotools scores them.
    """

    accepted: list[dict[str, Any]]
    accepted_index: list[int]  # position of each accepted detection in the input list
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {"index", "reason", "detection"}
    past_border: int = 0
    degenerate: int = 0

    def summary(self, max_examples: int = 20) -> dict[str, Any]:
        reasons = Counter(r["reason"] for r in self.rejected)
        return {
            "count": len(self.rejected),
            "by_reason": dict(sorted(reasons.items())),
            "examples": self.rejected[:max_examples],
            "kept_past_border": self.past_border,
            "kept_degenerate": self.degenerate,
        }


def check_detections(detections: list[Any], split: PreparedSplit) -> CheckedDetections:
    """Keep every detection pycocotools can score: only malformed entries, unknown image or
    category ids and non-finite values are rejected (each with its reason).

    Args:
        detections: COCO results ``{image_id, category_id, bbox: [x, y, w, h], score}``.
        split: the ground truth they are evaluated against.

    Returns:
        The accepted detections (normalised to plain ``int`` / ``float``) with their input
        positions, the rejected ones with a reason each, and how many accepted boxes reach
        past the image border or are degenerate (kept and scored as given).
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
            image_id, category_id = det["image_id"], det["category_id"]
            hash(image_id)
        except (TypeError, ValueError, OverflowError):
            reject(i, "malformed (non-numeric values)", det)
            continue
        if image_id not in sizes:
            reject(i, "unknown image_id", det)
            continue
        if isinstance(category_id, bool) or not isinstance(category_id, int | float):
            reject(i, "unknown category_id", det)
            continue
        if not (float(category_id).is_integer() and 1 <= category_id <= num_classes):
            reject(i, "unknown category_id", det)
            continue
        if not all(math.isfinite(v) for v in (x, y, w, h, score)):
            reject(i, "non-finite box or score", det)
            continue
        width, height = sizes[image_id]
        if w <= 0 or h <= 0:
            out.degenerate += 1
        elif x < 0 or y < 0 or x + w > width or y + h > height:
            out.past_border += 1
        out.accepted.append(
            {
                "image_id": image_id,
                "category_id": int(category_id),
                "bbox": [x, y, w, h],
                "score": score,
            }
        )
        out.accepted_index.append(i)
    return out


def load_detections(path: str | Path) -> list[Any]:
    """Read a COCO results file (a JSON list of detections)."""
    p = Path(path)
    if not p.is_file():
        raise EvaluationError(f"detections file '{p}' does not exist")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise EvaluationError(f"{p} is not a readable JSON file: {str(err)[:200]}") from None
    if not isinstance(data, list):
        raise EvaluationError(
            f"{p} must be a JSON list of {{image_id, category_id, bbox, score}} (COCO results)"
        )
    return data
