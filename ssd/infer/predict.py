"""Run a detector over a prepared split and return COCO-format detections.

The detector is anything with ``predict(images: list[uint8 Tensor [3, H, W]]) -> list[dict]``
returning ``{"boxes": [K, 4] XYXY in the original image pixels, "scores": [K],
"labels": [K] in 1..C}`` (:class:`ssd.infer.detector.Detector`). Images are read with
:meth:`PreparedSplit.read_image` (the one image reader), as training reads them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torchvision.ops import box_convert
from tqdm import tqdm

from ssd.config import PostprocessConfig
from ssd.data.prepared import PreparedSplit
from ssd.errors import EvaluationError
from ssd.infer.detector import load_detector


class SupportsPredict(Protocol):
    def predict(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]: ...


@dataclass(frozen=True)
class Detection:
    """One detection in its image's pixels: the one form every consumer takes it in (COCO
    results for evaluation, ``ssd detect``'s files, the MLflow model's table)."""

    category_id: int  # 1..C (label), 0 is background
    score: float
    box: list[float]  # x1, y1, x2, y2
    bbox: list[float]  # x, y, w, h (COCO), from the float32 boxes as the network gave them

    def coco(self, image_id: Any) -> dict[str, Any]:
        """As a COCO result ``{image_id, category_id, bbox: [x, y, w, h], score}``."""
        return {
            "image_id": image_id,
            "category_id": self.category_id,
            "bbox": self.bbox,
            "score": self.score,
        }


def detections_of(prediction: dict[str, torch.Tensor]) -> list[Detection]:
    """One image's ``{boxes XYXY, scores, labels}`` (:meth:`Detector.predict`) as rows."""
    boxes = prediction["boxes"].detach().float().cpu()
    xywh = box_convert(boxes, "xyxy", "xywh")
    scores = prediction["scores"].detach().float().cpu()
    labels = prediction["labels"].detach().cpu()
    return [
        Detection(int(c), float(s), [float(v) for v in b], [float(v) for v in w])
        for b, w, s, c in zip(
            boxes.tolist(), xywh.tolist(), scores.tolist(), labels.tolist(), strict=True
        )
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
                results.extend(d.coco(img["id"]) for d in detections_of(pred))
            bar.update(len(batch))
    return results, (len(images) / seconds if seconds > 0 else float("inf"))


@dataclass
class SplitDetections:
    """A detector's detections on a split (COCO results), its speed and default boxes."""

    detections: list[dict[str, Any]]
    images_per_second: float
    priors: torch.Tensor  # [A, 4] (cx, cy, w, h) in [0, 1], for the coverage report


def check_class_names(model_classes: list[str], split: PreparedSplit) -> None:
    """Fail with one message when a detector was trained on other classes than the split's."""
    if list(model_classes) != split.class_names:
        raise EvaluationError(
            f"class mismatch: the model predicts {list(model_classes)} but the dataset "
            f"'{split.root}' has {split.class_names}; evaluate the model on the "
            "dataset it was trained for (--set data.name=...)"
        )


def detect_split(
    model_path: str | Path,
    split: PreparedSplit,
    postprocess: PostprocessConfig | None = None,
    *,
    device: str = "cpu",
    batch_size: int = 8,
    progress: bool = True,
) -> SplitDetections:
    """Run the detector saved at ``model_path`` on every image of ``split`` with the
    inference settings ``postprocess`` (None: the paper's): what ``ssd evaluate`` and
    ``ssd audit`` score.

    Raises:
        EvaluationError: no detector there, or it was trained on other classes.
        WeightsError: the detector's files cannot be read.
    """
    path = Path(model_path)
    if not path.exists():
        raise EvaluationError(f"detector '{path}' does not exist; train first (`ssd train`)")
    detector = load_detector(path, device=device, postprocess=postprocess or PostprocessConfig())
    check_class_names(list(detector.class_names), split)
    detections, ips = predict_split(detector, split, batch_size, progress)
    return SplitDetections(detections, ips, detector.model.priors.detach().cpu())
