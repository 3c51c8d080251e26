"""MLflow as a :class:`ssd.tracking.Tracker`, and the detector as an MLflow pyfunc model.

If the tracking server cannot be reached, :func:`start_mlflow_run` warns once and returns
None: training goes on and its metrics stay in the local ``metrics.jsonl``.
"""

from __future__ import annotations

import logging
import urllib.request
from pathlib import Path
from typing import Any

from ssd.integrations.env import configure_offline_defaults, default_tracking_uri

log = logging.getLogger(__name__)

# What the logged pyfunc model needs at load time (pinned by constraints.txt here).
PIP_REQUIREMENTS = [
    "torch==2.14.1",
    "torchvision==0.29.1",
    "safetensors",
    "pandas",
    "pillow",
    "pydantic>=2",
]


def _reachable(uri: str, timeout: float = 3.0) -> bool:
    if not uri.startswith(("http://", "https://")):
        return True
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            return True
    except Exception:
        return False


class MlflowTracker:
    """Logs params, metrics and artifacts to the active MLflow run."""

    def __init__(self, run: Any) -> None:
        import mlflow

        self.mlflow = mlflow
        self.run = run

    def log_params(self, params: dict[str, Any]) -> None:
        items = [(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.mlflow.log_params(dict(items[i : i + 100]))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        self.mlflow.log_metrics(clean, step=step)

    def log_artifacts(self, path: str | Path, artifact_path: str | None = None) -> None:
        p = Path(path)
        if p.is_dir():
            self.mlflow.log_artifacts(str(p), artifact_path)
        elif p.is_file():
            self.mlflow.log_artifact(str(p), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        self.mlflow.end_run(status=status)


def start_mlflow_run(
    tracking_uri: str | None,
    experiment: str,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
) -> MlflowTracker | None:
    """Start an MLflow run, or warn once and return None when the server is unreachable."""
    configure_offline_defaults()
    uri = tracking_uri or default_tracking_uri()
    if not _reachable(uri):
        log.warning(
            "MLflow tracking server %s is unreachable; training continues and keeps "
            "its metrics in the local metrics.jsonl",
            uri,
        )
        return None
    import mlflow

    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment(experiment)
        run = mlflow.start_run(run_name=run_name, tags=tags)
    except Exception as err:
        log.warning("MLflow at %s failed (%s); continuing without it", uri, err)
        return None
    return MlflowTracker(run)


# ----------------------------------------------------------------------------- pyfunc model


def log_detector_model(
    model_dir: str | Path, example_image: str | Path, name: str = "model"
) -> str:
    """Log the detector in ``model_dir`` as a pyfunc model of the active run; returns its URI.

    The model is logged from code (``mlflow_pyfunc_model.py``), with the ``ssd`` package as
    code, so loading it never unpickles an object.
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
    )
    return str(info.model_uri)


# ----------------------------------------------------------------------------- the train stage


def tracked_train(cfg: Any, resume: bool = False, progress: bool = True) -> Any:
    """``ssd train`` with MLflow: the run gets params, metrics, provenance tags and the
    detector as a pyfunc model. Used by the CLI and the Prefect flow alike."""
    import json
    import os

    from ssd.provenance import describe_run
    from ssd.train import train

    rank0 = int(os.environ.get("RANK", "0")) == 0
    tracker = None
    if cfg.tracking.enabled and rank0:
        tags = {"dataset": cfg.data.name, "stage": "train"}
        if cfg.data.prepared_dir.is_dir():
            tags |= describe_run(cfg.data.prepared_dir)
        tracker = start_mlflow_run(
            cfg.tracking.tracking_uri, cfg.tracking.experiment, f"train-{cfg.data.name}", tags
        )
    try:
        result = train(cfg, tracker, resume=resume, progress=progress)
    except BaseException:
        if tracker is not None:
            tracker.end("FAILED")
        raise
    if tracker is not None:
        try:
            split = cfg.data.prepared_dir / "val.json"
            images = json.loads(split.read_text())["images"] if split.is_file() else []
            if not images:
                images = json.loads((cfg.data.prepared_dir / "train.json").read_text())["images"]
            uri = log_detector_model(
                result.model_dir, cfg.data.prepared_dir / images[0]["file_name"]
            )
            log.info("MLflow model: %s", uri)
        except Exception as err:  # tracking must not fail a finished training
            log.warning("could not log the MLflow model: %s", err)
        tracker.end()
    return result
