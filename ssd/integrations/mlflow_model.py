"""The detector as an MLflow pyfunc model, logged from code (no pickle).

:func:`log_detector_model` logs ``mlflow_pyfunc_model.py`` with the detector directory as
its artifact, the ``ssd`` package as code and the inference settings as ``model_config``.
"""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path
from typing import Any

from ssd.config import PostprocessConfig

# What the logged pyfunc model needs at load time (pinned by constraints.txt here).
PIP_REQUIREMENTS = [
    "torch==2.14.1",
    "torchvision==0.29.1",
    "safetensors",
    "pandas",
    "pillow",
    "pydantic>=2",
]


def image_data_uri(path: str | Path, side: int = 96) -> str:
    """A ``data:image/png;base64,...`` URI of the image at ``path``, shrunk to at most
    ``side`` pixels: an input example that works wherever the model is loaded."""
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB")
        small.thumbnail((side, side))
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


TRAINED = "trained"  # the logged model of ``ssd train`` (registry.py: "registered")
PREFIX = "postprocess."  # model_config's keys: MLflow logs them as the run's params


def log_detector_model(
    model_dir: str | Path,
    example_image: str | Path,
    postprocess: dict[str, Any] | None = None,
    name: str = "model",
    tags: dict[str, str] | None = None,
) -> str:
    """Log the detector in ``model_dir`` as a pyfunc model of the active run; returns its URI.

    The model is logged from code (``mlflow_pyfunc_model.py``), with the ``ssd`` package as
    code, so loading it never unpickles an object. ``postprocess`` (the ``postprocess``
    section as a dict) is the model's ``model_config`` (keys ``postprocess.<key>``, which
    MLflow also logs as the run's params): the inference settings it applies when loaded;
    None = no ``model_config`` (the defaults apply, and no params are logged, so the
    settings ``ssd register`` logs later into the same run are the ones the run shows).
    ``name`` and ``tags`` are the logged model's (the run's "Logged models"). Its
    signature: a DataFrame with an ``image`` column (file paths or ``data:`` URIs) in, one
    row per detection out, and the inference param
    ``score_threshold`` (default: the settings' ``detect_score_threshold``). The input
    example is the example image itself, inlined as a small ``data:`` URI.
    """
    import mlflow
    import pandas as pd

    settings = PostprocessConfig.model_validate(postprocess or {})
    threshold = settings.detect_score_threshold
    default = 0.3 if isinstance(threshold, str) else float(threshold)
    here = Path(__file__).resolve()
    config = settings.model_dump(mode="json")
    # A run's params cannot change: registering the run's detector again with other settings
    # keeps the first ones as the run's params (each version has its own model_config), and
    # MLflow's warning about it is not the user's problem.
    quiet = _DropMessage("Changing param values is not allowed")
    logging.getLogger("mlflow.models.model").addFilter(quiet)
    try:
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(here.with_name("mlflow_pyfunc_model.py")),
            artifacts={"detector": str(model_dir)},
            input_example=(
                pd.DataFrame({"image": [image_data_uri(example_image)]}),
                {"score_threshold": default},
            ),
            pip_requirements=PIP_REQUIREMENTS,
            code_paths=[str(here.parents[1])],
            model_config=None
            if postprocess is None
            else {PREFIX + k: v for k, v in config.items()},
            tags=tags,
        )
    finally:
        logging.getLogger("mlflow.models.model").removeFilter(quiet)
    return str(info.model_uri)


class _DropMessage(logging.Filter):
    """Drops log records whose message contains ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()
