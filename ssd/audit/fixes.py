"""Applying the fixes a person confirmed: a copy of a split's COCO ground truth with each
confirmed suspect's change made (a box added, relabelled, replaced or deleted)."""

from __future__ import annotations

import copy
from typing import Any

from ssd.audit.rank import KINDS, Suspect


def apply_fixes(ground_truth: dict[str, Any], confirmed: list[Suspect]) -> dict[str, Any]:
    """A copy of ``ground_truth`` with the confirmed suspects fixed (see :class:`Suspect`).

    New boxes (``missing``) get annotation ids after the largest one present, in the order
    given. ``area`` follows the box. The input is not changed.

    Raises:
        ValueError: a suspect names an annotation or image the ground truth lacks, or a
            class it does not have.
    """
    out = copy.deepcopy(ground_truth)
    ids = {str(c["name"]): int(c["id"]) for c in out["categories"]}
    by_id = {int(a["id"]): a for a in out["annotations"]}
    images = {img["id"] for img in out["images"]}
    next_id = max(by_id, default=0) + 1
    deleted: set[int] = set()

    def category(name: str | None, s: Suspect) -> int:
        if name not in ids:
            raise ValueError(f"suspect {s.id}: class {name!r} is not one of {sorted(ids)}")
        return ids[name]

    for s in confirmed:
        if s.kind == "missing":
            if s.image_id not in images or s.model_box is None:
                raise ValueError(f"suspect {s.id}: image {s.image_id} is not in the ground truth")
            x, y, w, h = (round(float(v), 2) for v in s.model_box)
            out["annotations"].append(
                {
                    "id": next_id,
                    "image_id": s.image_id,
                    "category_id": category(s.model_label, s),
                    "bbox": [x, y, w, h],
                    "area": round(w * h, 2),
                    "iscrowd": 0,
                    "difficult": 0,
                }
            )
            next_id += 1
            continue
        if s.annotation_id not in by_id:
            raise ValueError(
                f"suspect {s.id}: annotation {s.annotation_id} is not in the ground truth"
            )
        ann = by_id[s.annotation_id]
        if s.kind == "wrong_class":
            ann["category_id"] = category(s.model_label, s)
        elif s.kind == "loose":
            if s.model_box is None:
                raise ValueError(f"suspect {s.id}: a loose box needs model_box")
            x, y, w, h = (round(float(v), 2) for v in s.model_box)
            ann["bbox"], ann["area"] = [x, y, w, h], round(w * h, 2)
        elif s.kind == "spurious":
            deleted.add(int(s.annotation_id))
        else:
            raise ValueError(f"suspect {s.id}: unknown kind {s.kind!r}; kinds: {KINDS}")
    out["annotations"] = [a for a in out["annotations"] if int(a["id"]) not in deleted]
    return out
