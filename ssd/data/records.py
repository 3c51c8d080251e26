"""Source-neutral records: what every reader (VOC, COCO, YOLO, synthetic) hands to ``prepare``.

A reader only parses its format. Checks shared by all formats (decoding the image,
comparing sizes, clipping boxes, dropping empty boxes) happen once in ``validate.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ssd.data.safety import DatasetRoot


@dataclass
class RawBox:
    """One box as annotated: corners ``(x1, y1, x2, y2)`` in pixels, class index into
    ``SourceData.classes`` (0-based), VOC ``difficult`` flag."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: int
    difficult: bool = False


@dataclass
class RawImage:
    """One image as a source describes it.

    ``file_name`` is the image's name under the prepared ``images/`` folder (unique).
    ``path`` is the source file to copy; generated images carry ``pixels`` instead.
    ``annotated_size`` is ``(width, height)`` from the annotation, ``None`` when absent.
    ``annotation`` names the file reported when something about this image is wrong.
    ``split`` is the split the source assigns (``train``/``val``/``test``), or ``None``.
    Unknown classes and malformed entries are reported by the reader; boxes here carry
    valid class indices. ``refused`` = ``(reason, detail)`` when the reader already knows
    the image cannot be kept (an unsafe name, an ambiguous id): ``validate`` reports it
    with the number of its boxes, like every other image it does not keep.
    """

    file_name: str
    annotation: str
    path: Path | None = None
    pixels: Image.Image | None = None
    annotated_size: tuple[int, int] | None = None
    boxes: list[RawBox] = field(default_factory=list)
    split: str | None = None
    normalized: bool = False  # boxes in [0, 1] image units (YOLO), scaled once decoded
    refused: tuple[str, str] | None = None


@dataclass
class SourceData:
    """A reader's output: class names (index = label - 1), a stream of images and the
    splits the source defines (a defined split left without images is an error).

    ``root`` is the dataset root every image path must lie in (None: generated images);
    ``labels_at`` says where the boxes were looked for (for the message when there are none).
    """

    classes: list[str]
    images: Iterator[RawImage]
    description: dict[str, str] = field(default_factory=dict)
    splits: frozenset[str] = frozenset()  # the splits the source defines (may end up empty)
    root: DatasetRoot | None = None
    labels_at: str = ""
