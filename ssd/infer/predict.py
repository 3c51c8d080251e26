"""Run a detector over a prepared split and return COCO-format detections.

The detector is anything with ``predict(images: list[uint8 Tensor [3, H, W]]) -> list[dict]``
returning ``{"boxes": [K, 4] XYXY in the original image pixels, "scores": [K],
"labels": [K] in 1..C}`` (:class:`ssd.infer.detector.Detector`). Images are read with
:meth:`PreparedSplit.read_image` (the one image reader), as training reads them.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import torch
from torchvision.ops import box_convert
from tqdm import tqdm

from ssd.data.prepared import PreparedSplit


class SupportsPredict(Protocol):
    def predict(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]: ...


def to_coco_results(image_id: Any, prediction: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
    """One image's ``{boxes XYXY, scores, labels}`` as COCO results (``bbox`` = [x, y, w, h])."""
    boxes = box_convert(prediction["boxes"].detach().float().cpu(), "xyxy", "xywh")
    scores = prediction["scores"].detach().float().cpu()
    labels = prediction["labels"].detach().cpu()
    return [
        {
            "image_id": image_id,
            "category_id": int(c),
            "bbox": [float(v) for v in b],
            "score": float(s),
        }
        for b, s, c in zip(boxes.tolist(), scores.tolist(), labels.tolist(), strict=True)
    ]


def predict_split(
    detector: SupportsPredict,
    split: PreparedSplit,
    batch_size: int = 8,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], float]:
    """Detections of ``detector`` on every image of the split, and its images per second.

    The speed counts ``detector.predict`` only (pre-processing, network, NMS), not reading
    and decoding the files.
    """
    results: list[dict[str, Any]] = []
    seconds = 0.0
    images = split.images
    desc = f"predict {split.name}"
    with tqdm(total=len(images), desc=desc, unit="img", disable=not progress) as bar:
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            tensors = [split.read_image(img) for img in batch]
            t0 = time.perf_counter()
            with torch.inference_mode():
                predictions = detector.predict(tensors)
            seconds += time.perf_counter() - t0
            for img, pred in zip(batch, predictions, strict=True):
                results.extend(to_coco_results(img["id"], pred))
            bar.update(len(batch))
    return results, (len(images) / seconds if seconds > 0 else float("inf"))
