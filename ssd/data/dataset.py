"""A prepared split as a torch ``Dataset`` for training.

``DetectionDataset(PreparedSplit.load(prepared_dir, split))[i]`` is ``(image, target)``:

- ``image``: ``tv_tensors.Image`` uint8 ``[3, H, W]`` (RGB, read by :meth:`PreparedSplit.read_image`,
  the one image reader that evaluation, ``ssd detect`` and the MLflow model use too)
  before transforms;
- ``target``: ``{"boxes": BoundingBoxes [K, 4] XYXY pixels, canvas_size (H, W),
  "labels": int64 [K] in 1..C (0 is background), "difficult": bool [K],
  "image_id": int, "orig_size": (H, W)}``.

``transforms`` (see ``transforms.py``) is called as ``transforms(image, target)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ssd.data.prepared import PreparedSplit

Target = dict[str, Any]
Transform = Callable[[Any, Target], tuple[Any, Target]]


class DetectionDataset(Dataset[tuple[Any, Target]]):
    """One split of a prepared dataset (a loaded :class:`PreparedSplit`, or its folder and
    name) as ``(image, target)`` samples for training."""

    def __init__(
        self,
        split: PreparedSplit | str | Path,
        name: str | None = None,
        transforms: Transform | None = None,
    ) -> None:
        if not isinstance(split, PreparedSplit):
            split = PreparedSplit.load(split, name or "train")
        self.split = split
        self.transforms = transforms
        self.class_names: list[str] = list(split.class_names)
        self.images: list[dict[str, Any]] = list(split.images)
        # Per image, boxes as XYXY float32 [K, 4], labels int64 [K], difficult bool [K].
        self._targets: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for img in self.images:
            anns = split.annotations_of(img["id"])
            xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
            xyxy = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
            labels = torch.tensor([a["category_id"] for a in anns], dtype=torch.int64)
            difficult = torch.tensor([bool(a.get("difficult", 0)) for a in anns], dtype=torch.bool)
            self._targets.append((xyxy, labels, difficult))

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        """Object classes, without background."""
        return len(self.class_names)

    def __getitem__(self, index: int) -> tuple[Any, Target]:
        info = self.images[index]
        image = tv_tensors.Image(self.split.read_image(info))
        height, width = image.shape[-2:]
        xyxy, labels, difficult = self._targets[index]
        target: Target = {
            "boxes": tv_tensors.BoundingBoxes(
                xyxy.clone(), format=tv_tensors.BoundingBoxFormat.XYXY, canvas_size=(height, width)
            ),
            "labels": labels.clone(),
            "difficult": difficult.clone(),
            "image_id": int(info["id"]),
            "orig_size": (int(height), int(width)),
        }
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def collate_detections(batch: list[tuple[Any, Target]]) -> tuple[torch.Tensor, list[Target]]:
    """Stack same-sized images into ``[N, 3, S, S]`` float32; keep targets as a list
    (each image has its own number of boxes)."""
    images = torch.stack([torch.as_tensor(image, dtype=torch.float32) for image, _ in batch])
    return images, [target for _, target in batch]
