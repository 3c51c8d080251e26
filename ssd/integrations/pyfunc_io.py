"""Turning images into a detections table (used by the MLflow pyfunc model)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torchvision.io import ImageReadMode, decode_image

from ssd.inference import Detector

COLUMNS = ["image", "label", "score", "x1", "y1", "x2", "y2"]


def _as_items(model_input: Any) -> list[Any]:
    if isinstance(model_input, pd.DataFrame):
        col = "image" if "image" in model_input.columns else model_input.columns[0]
        return list(model_input[col])
    if isinstance(model_input, str | np.ndarray):
        return [model_input]
    return list(model_input)


def detect_table(
    detector: Detector,
    model_input: Any,
    batch_size: int = 8,
    score_threshold: float | None = None,
) -> pd.DataFrame:
    """Detections for paths or HxWx3 uint8 arrays as a DataFrame (``COLUMNS``), those scoring
    at least ``score_threshold`` (None: ``postprocess.detect_score_threshold``)."""
    if score_threshold is None:
        score_threshold = detector.detect_score_threshold
    detector.postprocess.score_threshold = max(score_threshold, detector.settings.score_threshold)
    items = _as_items(model_input)
    rows: list[dict[str, Any]] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        tensors, names = [], []
        for i, item in enumerate(chunk):
            if isinstance(item, str):
                tensors.append(decode_image(item, mode=ImageReadMode.RGB))
                names.append(item)
            else:
                arr = np.asarray(item)
                if arr.ndim != 3 or arr.shape[2] != 3:
                    raise ValueError(f"image {start + i}: expected HxWx3 array, got {arr.shape}")
                tensors.append(
                    torch.from_numpy(np.ascontiguousarray(arr, dtype=np.uint8)).permute(2, 0, 1)
                )
                names.append(str(start + i))
        for name, det in zip(names, detector.predict(tensors), strict=True):
            for box, score, label in zip(
                det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist(), strict=True
            ):
                rows.append(
                    {
                        "image": name,
                        "label": detector.class_names[label - 1],
                        "score": score,
                        "x1": box[0],
                        "y1": box[1],
                        "x2": box[2],
                        "y2": box[3],
                    }
                )
    return pd.DataFrame(rows, columns=COLUMNS)
