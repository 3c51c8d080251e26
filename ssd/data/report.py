"""What ``prepare`` dropped or changed, and why: the ``skipped`` / ``fixed`` lists of
``report.json`` and the counts printed at the end of a run."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Stable reason codes (``reason`` in report.json); ``detail`` says the specifics.
CORRUPT_IMAGE = "corrupt_image"
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
SIZE_FROM_FILE = "size_from_file"


@dataclass
class Report:
    """Collects ``{file, kind, reason, detail}`` records in the order they happen.

    ``kind`` is ``image`` (a whole image not kept), ``box`` (one box) or ``annotation``
    (a whole annotation file that could not be used).
    """

    skipped: list[dict[str, str]] = field(default_factory=list)
    fixed: list[dict[str, str]] = field(default_factory=list)

    def skip(self, file: str, kind: str, reason: str, detail: str) -> None:
        self.skipped.append({"file": file, "kind": kind, "reason": reason, "detail": detail})

    def fix(self, file: str, kind: str, reason: str, detail: str) -> None:
        self.fixed.append({"file": file, "kind": kind, "reason": reason, "detail": detail})

    def counts(self) -> dict[str, dict[str, int]]:
        """``{"skipped": {reason: n}, "fixed": {reason: n}}``, reasons sorted."""
        return {
            "skipped": dict(sorted(Counter(r["reason"] for r in self.skipped).items())),
            "fixed": dict(sorted(Counter(r["reason"] for r in self.fixed).items())),
        }

    def as_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "fixed": self.fixed}
