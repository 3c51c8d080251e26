"""What ``prepare`` dropped or changed, and why: the ``skipped`` / ``fixed`` lists of
``report.json`` and the counts printed at the end of a run."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Stable reason codes (``reason`` in report.json); ``detail`` says the specifics.
CORRUPT_IMAGE = "corrupt_image"  # also images.CORRUPT
IMAGE_TOO_LARGE = "image_too_large"  # images.TOO_LARGE: over the pixel limit, not decoded
UNSUPPORTED_IMAGE = "unsupported_image"  # images.UNSUPPORTED: a format that is not opened
MISSING_IMAGE = "missing_image"
MISSING_ANNOTATION = "missing_annotation"
MALFORMED_ANNOTATION = "malformed_annotation"
UNSAFE_PATH = "unsafe_path"
SIZE_MISMATCH = "size_mismatch"
ZERO_AREA_BOX = "zero_area_box"
BOX_OUTSIDE_IMAGE = "box_outside_image"
BOX_CLIPPED = "box_clipped"
MALFORMED_BOX = "malformed_box"
UNKNOWN_CLASS = "unknown_class"
DUPLICATE_ID = "duplicate_id"
NOT_IN_SPLIT = "not_in_any_split"
BOXES_ORIENTED = "boxes_oriented"  # boxes drawn on the stored pixels, turned with the image
NO_BOXES = "no_boxes"

# Changes too small or too common to list one by one: counted (``counts["notes"]``).
SUBPIXEL_CLIP = "boxes clipped by less than a pixel"
EXIF_APPLIED = "images shown in their EXIF orientation"
CONVERTED = "images converted to PNG (format, bit depth or orientation)"
SIZE_UNUSABLE = "annotated sizes of 0 replaced by the file's size"


@dataclass
class Report:
    """Collects ``{file, kind, reason, detail}`` records in the order they happen.

    ``kind`` is ``image`` (a whole image not kept; ``boxes`` says how many of its boxes
    went with it), ``box`` (one box) or ``annotation`` (a whole annotation file that could
    not be used). ``notes`` counts small changes that are not listed one by one.
    """

    skipped: list[dict[str, Any]] = field(default_factory=list)
    fixed: list[dict[str, Any]] = field(default_factory=list)
    notes: Counter[str] = field(default_factory=Counter)

    def skip(self, file: str, kind: str, reason: str, detail: str, boxes: int | None = None) -> None:
        record: dict[str, Any] = {"file": file, "kind": kind, "reason": reason, "detail": detail}
        if boxes is not None:
            record["boxes"] = boxes
        self.skipped.append(record)

    def skip_image(self, file: str, reason: str, detail: str, boxes: int) -> None:
        """A whole image not kept, with the number of its boxes that went with it."""
        lost = f"{boxes} box{'es' if boxes != 1 else ''}" if boxes else "no boxes"
        self.skip(file, "image", reason, f"{detail} ({lost} went with it)", boxes=boxes)

    def note(self, what: str, n: int = 1) -> None:
        self.notes[what] += n

    def fix(self, file: str, kind: str, reason: str, detail: str) -> None:
        self.fixed.append({"file": file, "kind": kind, "reason": reason, "detail": detail})

    def counts(self) -> dict[str, Any]:
        """``{"skipped": {reason: n}, "fixed": {reason: n}, "boxes_in_skipped_images": n,
        "notes": {what: n}}``, keys sorted."""
        return {
            "skipped": dict(sorted(Counter(r["reason"] for r in self.skipped).items())),
            "fixed": dict(sorted(Counter(r["reason"] for r in self.fixed).items())),
            "boxes_in_skipped_images": sum(int(r.get("boxes", 0)) for r in self.skipped),
            "notes": dict(sorted(self.notes.items())),
        }

    def as_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "fixed": self.fixed}
