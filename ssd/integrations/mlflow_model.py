"""The detector as an MLflow pyfunc model, logged from code (no pickle).

:func:`log_detector_model` logs ``mlflow_pyfunc_model.py`` with the detector directory as
its artifact, the ``ssd`` package as code and the inference settings as ``model_config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# What the logged pyfunc model needs at load time (pinned by constraints.txt here).
PIP_REQUIREMENTS = [
    "torch==2.14.1",
    "torchvision==0.29.1",
    "safetensors",
    "pandas",
    "pillow",
    "pydantic>=2",
]


def log_detector_model(
    model_dir: str | Path,
    example_image: str | Path,
    postprocess: dict[str, Any] | None = None,
    name: str = "model",
) -> str:
    """Log the detector in ``model_dir`` as a pyfunc model of the active run; returns its URI.

    The model is logged from code (``mlflow_pyfunc_model.py``), with the ``ssd`` package as
    code, so loading it never unpickles an object. ``postprocess`` (the ``postprocess``
    section as a dict; None = defaults) is the model's ``model_config``: the inference
    settings it applies when loaded.
    """
    import mlflow
    import pandas as pd

    here = Path(__file__).resolve()
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=str(here.with_name("mlflow_pyfunc_model.py")),
        artifacts={"detector": str(model_dir)},
        input_example=pd.DataFrame({"image": [str(example_image)]}),
        pip_requirements=PIP_REQUIREMENTS,
        code_paths=[str(here.parents[1])],
        model_config=postprocess or {},
    )
    return str(info.model_uri)
