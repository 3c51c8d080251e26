"""Checks every source shares: decode the image, compare its size with the annotation,
drop empty or unknown boxes, clip boxes to the image. Each decision goes to the report."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ssd.data import report as R
from ssd.data.records import RawImage


@dataclass
class Box:
    """A kept box: ``(x, y, w, h)`` in pixels (COCO), 0-based class index, difficult flag."""

    x: float
    y: float
    w: float
    h: float
    label: int
    difficult: bool


@dataclass
class ValidImage:
    """An image that passed every check, ready to be written."""

    file_name: str
    width: int
    height: int
    split: str | None
    path: Path | None = None
    pixels: Image.Image | None = None
    boxes: list[Box] = field(default_factory=list)


def decode_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of the image at ``path``, decoding all of it so that a truncated
    or corrupt file fails here (``OSError`` / ``ValueError``) and not during training."""
    with Image.open(path) as im:
        im.load()
        return im.size


def _fmt(values: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def validate_image(raw: RawImage, classes: list[str], report: R.Report) -> ValidImage | None:
    """Return the image with its usable boxes, or ``None`` (reported) when it can't be kept.

    Boxes with zero or negative area are dropped; boxes reaching outside the image are
    clipped to it (reported as fixed) and dropped only if nothing is left. When the
    source gives ``normalized`` boxes (YOLO), they are scaled by the decoded size.
    """
    where = raw.annotation
    lost = f" ({len(raw.boxes)} boxes not kept)" if raw.boxes else ""
    if raw.pixels is not None:
        width, height = raw.pixels.size
    else:
        if raw.path is None or not raw.path.is_file():
            report.skip(
                where, "image", R.MISSING_IMAGE, f"image file {raw.file_name} not found{lost}"
            )
            return None
        try:
            width, height = decode_size(raw.path)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            report.skip(
                where, "image", R.CORRUPT_IMAGE, f"{raw.file_name} cannot be decoded: {err}{lost}"
            )
            return None
    if raw.annotated_size is not None:
        aw, ah = raw.annotated_size
        if aw <= 0 or ah <= 0:
            report.fix(
                where,
                "image",
                R.SIZE_FROM_FILE,
                f"annotated size {aw}x{ah} is not usable; using the file's {width}x{height}",
            )
        elif (aw, ah) != (width, height):
            report.skip(
                where,
                "image",
                R.SIZE_MISMATCH,
                f"annotation says {aw}x{ah} but {raw.file_name} is {width}x{height}; "
                f"fix the annotation's size (boxes may be in the wrong scale){lost}",
            )
            return None

    kept: list[Box] = []
    for i, b in enumerate(raw.boxes):
        corners = (b.x1, b.y1, b.x2, b.y2)
        if raw.normalized:
            corners = (b.x1 * width, b.y1 * height, b.x2 * width, b.y2 * height)
        name = classes[b.label] if 0 <= b.label < len(classes) else str(b.label)
        what = f"box {i} ({name}) {_fmt(corners)}"
        if not all(math.isfinite(v) for v in corners):
            report.skip(where, "box", R.MALFORMED_BOX, f"{what} has a non-finite coordinate")
            continue
        x1, y1, x2, y2 = corners
        if x2 <= x1 or y2 <= y1:
            report.skip(where, "box", R.ZERO_AREA_BOX, f"{what} has zero or negative area")
            continue
        cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
        cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
        if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
            if cx2 <= cx1 or cy2 <= cy1:
                report.skip(
                    where,
                    "box",
                    R.BOX_OUTSIDE_IMAGE,
                    f"{what} lies outside the {width}x{height} image",
                )
                continue
            report.fix(
                where,
                "box",
                R.BOX_CLIPPED,
                f"{what} clipped to {_fmt((cx1, cy1, cx2, cy2))} ({width}x{height} image)",
            )
        kept.append(Box(cx1, cy1, cx2 - cx1, cy2 - cy1, b.label, b.difficult))
    return ValidImage(
        file_name=raw.file_name,
        width=width,
        height=height,
        split=raw.split,
        path=raw.path,
        pixels=raw.pixels,
        boxes=kept,
    )
