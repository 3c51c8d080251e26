"""``ssd show-augmentations``: a PNG grid of augmented training samples with their boxes,
for a person to check that the augmentation does what it should."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid

from ssd.config import AugmentConfig
from ssd.data.dataset import DetectionDataset
from ssd.data.transforms import build_train_transforms
from ssd.infer.drawing import draw_boxes


def write_augmentation_grid(
    prepared_dir: str | Path,
    split: str,
    size: int,
    augment_cfg: AugmentConfig,
    out_png: str | Path,
    n: int = 16,
    seed: int = 0,
) -> Path:
    """Draw ``n`` augmented samples of ``split`` (images chosen and augmented from
    ``seed``; the global RNG state is restored afterwards) and save them as one PNG."""
    dataset = DetectionDataset(prepared_dir, split, build_train_transforms(size, augment_cfg))
    if len(dataset) == 0:
        raise ValueError(f"split '{split}' of {prepared_dir} has no images")
    tiles = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        picks = torch.randint(len(dataset), (n,)).tolist()
        for index in picks:
            image, target = dataset[index]
            pixels = (image.clamp(0, 1) * 255).to(torch.uint8)
            names = [dataset.class_names[int(label) - 1] for label in target["labels"]]
            colors = ["#ffd700" if d else "#d62728" for d in target["difficult"].tolist()]
            boxes = target["boxes"].as_subclass(torch.Tensor)
            tiles.append(draw_boxes(pixels, boxes, names, colors))
    grid = make_grid(tiles, nrow=math.ceil(math.sqrt(n)), padding=4, pad_value=255)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(out, format="PNG")
    return out
