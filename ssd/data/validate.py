"""Checks every source shares: the image lies inside the dataset root and decodes (with the
one image reader, :mod:`ssd.data.images`), its size agrees with the annotation, boxes are
usable and inside the image. Each decision goes to the report.

An image file is opened once (:meth:`~ssd.data.safety.DatasetRoot.read_file`): the bytes
that were checked are the bytes decoded and the bytes written to the prepared dataset.
"""

from __future__ import annotations

import errno
import math
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ssd.data import report as R
from ssd.data.images import TOO_LARGE, DecodedImage, ImageReadError, decode_image, orient_box
from ssd.data.records import RawImage
from ssd.data.safety import DatasetRoot, UnsafePath, read_regular_file

CONVERTED_SUFFIX = ".png"  # a source image that is not plain JPEG / PNG is written as PNG


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
    """An image that passed every check, ready to be written.

    ``file_name`` is its name under the prepared ``images/``; ``pixels`` are written (as
    PNG) when set, else ``data``, the bytes of the source file at ``path`` as read once
    and checked, unchanged.
    """

    file_name: str
    width: int
    height: int
    split: str | None
    path: Path | None = None
    pixels: Image.Image | None = None
    boxes: list[Box] = field(default_factory=list)
    data: bytes | None = field(default=None, repr=False)


def _fmt(values: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def _decode(
    raw: RawImage, root: DatasetRoot | None, report: R.Report
) -> tuple[DecodedImage, bytes] | None:
    """The decoded source image and the file's bytes (read once, inside ``root``); ``None``
    when it was reported as not kept."""
    where, n = raw.annotation, len(raw.boxes)
    missing = f"image file {raw.file_name} not found"
    if raw.path is None:
        report.skip_image(where, R.MISSING_IMAGE, missing, n)
        return None
    try:
        data = root.read_file(raw.path) if root is not None else read_regular_file(raw.path)
    except UnsafePath as err:
        report.skip_image(where, R.UNSAFE_PATH, f"image {err}", n)
        return None
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.EINVAL, errno.ENAMETOOLONG, errno.ELOOP):
            report.skip_image(where, R.MISSING_IMAGE, missing, n)  # or a folder, a FIFO ...
        elif err.errno == errno.EFBIG:
            report.skip_image(where, TOO_LARGE, f"{raw.file_name}: {err.strerror}; not read", n)
        else:
            report.skip_image(where, R.CORRUPT_IMAGE, f"{raw.file_name}: {err.strerror}", n)
        return None
    try:
        return decode_image(data), data
    except ImageReadError as err:
        report.skip_image(where, err.reason, f"{raw.file_name}: {err}", n)
        return None


def validate_image(
    raw: RawImage, classes: list[str], report: R.Report, root: DatasetRoot | None = None
) -> ValidImage | None:
    """Return the image with its usable boxes, or ``None`` (reported) when it can't be kept.

    The image must lie inside ``root`` (every symlink followed) and decode. Sizes and boxes
    are those of the displayed image (its EXIF orientation applied): boxes annotated on
    the stored pixels (the annotated size is the stored one) are turned with the image.
    Boxes with zero or negative area are dropped; boxes reaching outside the image are
    clipped to it (listed as fixed when a coordinate moves by a pixel or more, counted
    otherwise) and dropped only if nothing is left. ``normalized`` boxes (YOLO) are
    scaled by the displayed size.
    """
    where, n = raw.annotation, len(raw.boxes)
    if raw.refused is not None:
        reason, detail = raw.refused
        report.skip_image(where, reason, detail, n)
        return None
    decoded: DecodedImage | None = None
    data: bytes | None = None
    if raw.pixels is not None:
        width, height = raw.pixels.size
    else:
        read = _decode(raw, root, report)
        if read is None:
            return None
        decoded, data = read
        width, height = decoded.size
        if decoded.orientation != 1:
            report.note(R.EXIF_APPLIED)

    turn = 1  # the orientation to apply to the boxes (1: they are drawn on what is shown)
    if raw.annotated_size is not None:
        aw, ah = raw.annotated_size
        if aw <= 0 or ah <= 0:
            report.note(R.SIZE_UNUSABLE)  # the file's size is used: nothing to list
        elif (aw, ah) == (width, height):
            pass
        elif decoded is not None and decoded.orientation != 1 and (aw, ah) == decoded.stored_size:
            turn = decoded.orientation
            report.fix(
                where,
                "image",
                R.BOXES_ORIENTED,
                f"annotated size {aw}x{ah} is that of the stored pixels, which EXIF "
                f"orientation {turn} shows as {width}x{height}; its {n} boxes were turned "
                "with the image",
            )
        else:
            report.skip_image(
                where,
                R.SIZE_MISMATCH,
                f"annotation says {aw}x{ah} but {raw.file_name} is {width}x{height}; "
                "fix the annotation's size (boxes may be in the wrong scale)",
                n,
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
        if turn != 1 and decoded is not None:
            corners = orient_box(corners, turn, decoded.stored_size)
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
            moved = max(abs(a - c) for a, c in zip((x1, y1, x2, y2), (cx1, cy1, cx2, cy2)))
            if moved < 1.0:
                report.note(R.SUBPIXEL_CLIP)
            else:
                report.fix(
                    where,
                    "box",
                    R.BOX_CLIPPED,
                    f"{what} clipped to {_fmt((cx1, cy1, cx2, cy2))} ({width}x{height} image)",
                )
        kept.append(Box(cx1, cy1, cx2 - cx1, cy2 - cy1, b.label, b.difficult))

    file_name, pixels = raw.file_name, raw.pixels
    if decoded is not None and not decoded.plain:
        # TIFF, BMP, 16-bit, CMYK, EXIF-rotated ...: the prepared copy is what every reader
        # (torchvision, a browser, FiftyOne) shows the same way, with the checked size.
        file_name, pixels = raw.file_name + CONVERTED_SUFFIX, decoded.pixels
        report.note(R.CONVERTED)
    return ValidImage(
        file_name=file_name,
        width=width,
        height=height,
        split=raw.split,
        path=raw.path,
        pixels=pixels,
        boxes=kept,
        data=data if pixels is None else None,
    )
