"""Turning images into a detections table (used by the MLflow pyfunc model).

Paths and ``data:image/...;base64,`` URIs are read by the one image reader
(:func:`ssd.data.images.read_image`), arrays taken by
:func:`ssd.data.images.image_from_array`: the model sees the pixels training, evaluation
and ``ssd detect`` see.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
import pandas as pd

from ssd.data.images import ImageReadError, image_from_array, read_image
from ssd.infer.detector import Detector
from ssd.infer.predict import detections_of

COLUMNS = ["image", "label", "score", "x1", "y1", "x2", "y2"]
DATA_URI = "data:image/"


def _data_uri_bytes(uri: str) -> bytes:
    """The bytes of a ``data:image/<type>;base64,<data>`` URI (how an input example ships)."""
    head, _, data = uri.partition(",")
    if not head.endswith(";base64") or not data:
        raise ImageReadError("a data: URI must be data:image/<type>;base64,<data>", "corrupt_image")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ImageReadError("the data: URI is not valid base64", "corrupt_image") from None


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
    """Detections for paths or arrays (H x W x 3 uint8, or any array
    :func:`~ssd.data.images.image_from_array` takes) as a DataFrame (``COLUMNS``), those
    scoring at least ``score_threshold`` (None: ``postprocess.detect_score_threshold``).

    Raises:
        ValueError: an image that cannot be used, naming it and why.
    """
    if score_threshold is None:
        score_threshold = detector.detect_score_threshold
    items = _as_items(model_input)
    rows: list[dict[str, Any]] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        tensors, names = [], []
        for i, item in enumerate(chunk):
            inline = isinstance(item, str) and item.startswith(DATA_URI)
            name = item if isinstance(item, str) and not inline else str(start + i)
            try:
                if inline:
                    tensors.append(read_image(_data_uri_bytes(item)))
                elif isinstance(item, str):
                    tensors.append(read_image(item))
                else:
                    tensors.append(image_from_array(item))
            except ImageReadError as err:
                raise ValueError(f"image {name}: {err}") from None
            names.append(name)
        for name, pred in zip(names, detector.predict(tensors, score_threshold), strict=True):
            for det in detections_of(pred):
                x1, y1, x2, y2 = det.box
                label = detector.class_names[det.category_id - 1]
                rows.append(
                    {"image": name, "label": label, "score": det.score}
                    | {"x1": x1, "y1": y1, "x2": x2, "y2": y2}
                )
    return pd.DataFrame(rows, columns=COLUMNS)
