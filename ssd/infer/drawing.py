"""Boxes with labels a person can read: ``ssd detect``'s annotated images, the evaluation's
sample images and ``ssd show-augmentations``.

Built on :func:`torchvision.utils.draw_bounding_boxes` in two passes: every box outline
first, then every label (class and score) on a filled background of its box's colour, in a
TrueType font scaled to the image. Each label goes above its box, or, where that leaves the
image or covers a better-scoring label, just inside the box's top, below the box or inside
its bottom (:func:`place_labels`), shifted left so it ends inside the image. Labels are
drawn last and in increasing order (of score when given), so no outline crosses a label and
where labels still overlap the best one is on top.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torchvision.utils import draw_bounding_boxes

# tab10, then tab20's lighter tones: distinct colours for 20 classes before they repeat
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
    "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)  # fmt: skip


def class_color(label: int) -> str:
    """The colour of class ``label`` (1..C)."""
    return PALETTE[(label - 1) % len(PALETTE)]


def font_file() -> str:
    """DejaVu Sans, the TrueType font shipped with matplotlib (no system font needed)."""
    import matplotlib

    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")


def _text_color(color: str) -> str:
    """Black or white, whichever reads better on ``color`` (``#rrggbb``)."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "white"


Rect = tuple[float, float, float, float]  # x1, y1, x2, y2


def place_labels(
    boxes: Sequence[Sequence[float]],
    sizes: Sequence[tuple[float, float]],
    image_size: tuple[int, int],
    line: int,
    order: Sequence[int],
) -> list[Rect]:
    """Where each label goes: ``[x1, y1, x2, y2]`` per box, for labels of ``sizes`` (w, h)
    on ``boxes`` (x1, y1, x2, y2 pixels) in an image of ``image_size`` (height, width).

    Labels are placed best first (``order`` is worst first): above the box, else inside its
    top, below it, inside its bottom, the first of these inside the image that covers no
    label placed before (else the first inside the image); each shifted left as far as
    needed to end at the image's right edge.
    """
    height, width = image_size
    placed: dict[int, Rect] = {}
    for i in reversed(order):
        x1, y1, _, y2 = boxes[i]
        w, h = sizes[i]
        x = max(0.0, min(x1 - line, width - w))
        tries = [y1 - h - line, y1 + line, y2 + line, y2 - h - line]
        inside = [y for y in tries if 0 <= y <= height - h] or [max(0.0, min(y1, height - h))]
        free = [
            y
            for y in inside
            if not any(
                x < r[2] and r[0] < x + w and y < r[3] and r[1] < y + h for r in placed.values()
            )
        ]
        y = (free or inside)[0]
        placed[i] = (x, y, x + w, y + h)
    return [placed[i] for i in range(len(boxes))]


def draw_boxes(
    image: Tensor,
    boxes: Tensor,
    labels: Sequence[str],
    colors: Sequence[str],
    scores: Sequence[float] | None = None,
) -> Tensor:
    """``image`` (uint8 ``[3, H, W]``) with ``boxes`` (``[K, 4]`` x1, y1, x2, y2 pixels) and
    their ``labels`` drawn (see the module docstring); ``colors`` are ``#rrggbb`` per box."""
    boxes = boxes.detach().float().cpu().reshape(-1, 4)
    # boxes that cannot be drawn (degenerate or non-finite detections) are left out
    keep = [
        i
        for i, (x1, y1, x2, y2) in enumerate(boxes.tolist())
        if all(map(math.isfinite, (x1, y1, x2, y2))) and x2 >= x1 and y2 >= y1
    ]
    if not keep:
        return image
    boxes, labels, colors = boxes[keep], [labels[i] for i in keep], [colors[i] for i in keep]
    scores = [scores[i] for i in keep] if scores is not None else None
    height, width = int(image.shape[-2]), int(image.shape[-1])
    line = max(1, round(max(height, width) / 300))
    size = int(min(48, max(10, round(min(height, width) / 30))))
    out = draw_bounding_boxes(image, boxes, colors=list(colors), width=line)
    # The label sits on a zero-size box (nothing drawn) whose corner is where the text goes;
    # torchvision fills the text's bounding box grown by 1 px, 1 px in from that corner.
    from PIL import ImageFont

    font = ImageFont.truetype(font_file(), size)
    sizes = []
    for text in labels:
        _, _, right, bottom = font.getbbox(text)
        sizes.append((float(right + 3), float(bottom + 3)))
    order = sorted(range(len(boxes)), key=lambda i: scores[i] if scores is not None else i)
    rects = place_labels(boxes.tolist(), sizes, (height, width), line, order)
    anchors = torch.tensor([[r[0], r[1], r[0], r[1]] for r in rects])
    return draw_bounding_boxes(
        out,
        anchors[order],
        labels=[labels[i] for i in order],
        colors=[colors[i] for i in order],
        width=0,
        font=font_file(),
        font_size=size,
        fill_labels=True,
        label_colors=[_text_color(colors[i]) for i in order],
        label_background_colors=[colors[i] for i in order],
    )
