"""Running a detector on images of any size: resize, forward, post-process, rescale.

:class:`Detector` bundles a model with its :class:`~ssd.model.postprocess.PostProcessor` and
class names; boxes come back in each image's own pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor

from ssd.config import PostprocessConfig
from ssd.model.builder import build_postprocessor
from ssd.model.fusion import fold_batchnorm
from ssd.model.network import SSD
from ssd.model.weights import load_model


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def preprocess(images: Sequence[Tensor], size: int) -> Tensor:
    """uint8 (or float in [0, 1]) ``[3, H, W]`` images -> float batch ``[N, 3, size, size]``."""
    batch = []
    for img in images:
        if img.ndim != 3 or img.shape[0] not in (1, 3):
            raise ValueError(f"expected an image [3, H, W], got shape {tuple(img.shape)}")
        if img.shape[0] == 1:
            img = img.expand(3, -1, -1)
        img = (
            TF.to_dtype(img, torch.float32, scale=True) if img.dtype == torch.uint8 else img.float()
        )
        batch.append(TF.resize(img, [size, size], antialias=True))
    return torch.stack(batch)


class Detector:
    """A trained SSD ready to detect: ``predict(images) -> list of {boxes, scores, labels}``.

    ``postprocess`` holds the inference settings (``postprocess`` section of params.yaml);
    None gives the paper's (score 0.01, NMS 0.45, 200 per image).
    """

    def __init__(
        self,
        model: SSD,
        class_names: list[str],
        postprocess: PostprocessConfig | None = None,
        device: str = "auto",
    ) -> None:
        self.device = resolve_device(device)
        # An inference copy: BatchNorm folded into the convolutions, channels_last.
        # The model passed in is left as it was (training can go on with it).
        self.model = fold_batchnorm(model).to(self.device).to(memory_format=torch.channels_last)
        self.class_names = list(class_names)
        self.input_size = model.input_size
        self.settings = postprocess or PostprocessConfig()
        self.postprocess = build_postprocessor(self.model, self.settings)

    @property
    def detect_score_threshold(self) -> float:
        """What detect and the MLflow model return: ``postprocess.detect_score_threshold``
        (``"f1"`` must have been resolved to a number by then, see
        :func:`ssd.evaluation.confusion.deploy_threshold`)."""
        value = self.settings.detect_score_threshold
        if isinstance(value, str):
            raise ValueError(
                f"postprocess.detect_score_threshold '{value}' was not resolved to a number"
            )
        return value

    @torch.inference_mode()
    def predict(
        self, images: Sequence[Tensor], score_threshold: float | None = None
    ) -> list[dict[str, Tensor]]:
        """Detections per image; boxes (x1, y1, x2, y2) in that image's pixels, on the CPU.

        ``score_threshold``: only detections scoring above it (None: everything above
        ``postprocess.score_threshold``, as mAP needs). Raising the candidate threshold
        before NMS keeps the same top detections, faster.
        """
        if not images:
            return []
        sizes = [(int(i.shape[-2]), int(i.shape[-1])) for i in images]
        x = preprocess(images, self.input_size).to(self.device)
        x = x.contiguous(memory_format=torch.channels_last)
        logits, offsets = self.model(x)
        threshold = None
        if score_threshold is not None:
            threshold = max(score_threshold, self.settings.score_threshold)
        dets = self.postprocess(logits, offsets, sizes, threshold)
        return [{k: v.cpu() for k, v in d.items()} for d in dets]


def load_detector(
    path: str | Path, device: str = "auto", postprocess: PostprocessConfig | None = None
) -> Detector:
    """Load a detector saved by :func:`ssd.model.weights.save_detector` (no pickle), with the
    inference settings ``postprocess`` (None: the paper's)."""

    model, _, names = load_model(path)
    return Detector(model, names, postprocess, device)
