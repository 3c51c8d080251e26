"""MLflow (and dvclive) as :class:`ssd.train.tracking.Tracker` s for ``ssd train``
(:func:`ssd.stages.train` assembles them).

If the tracking server cannot be reached, :func:`start_mlflow_run` warns once and returns
None: training goes on and its metrics stay in the local ``metrics.jsonl``.
"""

from __future__ import annotations

import logging
import urllib.request
from pathlib import Path
from typing import Any

from ssd.integrations.env import configure_offline_defaults, project_root, resolve_tracking_uri

log = logging.getLogger(__name__)

RUN_FILE = "mlflow_run.json"  # in the detector folder: the MLflow run that trained it
# MLflow 3's UI opens an experiment on the page its kind names; with no kind it guesses, and
# opened ours on its GenAI page (traces, token usage). The tag and its values are the UI's
# (mlflow/server/js: genai_development, custom_model_development).
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"


def use_experiment(name: str, uri: str) -> str:
    """Make ``name`` the active MLflow experiment, created if new; returns its id.

    A new experiment of a local (sqlite) store keeps its artifacts in ``<project>/mlruns``:
    MLflow's default, ``./mlruns``, is taken from the working directory, which for a queued
    DVC experiment is a temporary copy deleted afterwards. Its kind is training runs
    (:data:`KIND`), also set on an experiment made before that had none.
    """
    import mlflow
    from mlflow import MlflowClient

    if mlflow.get_experiment_by_name(name) is None:
        local = not uri.startswith(("http://", "https://", "databricks"))
        try:
            mlflow.create_experiment(
                name,
                artifact_location=str(project_root() / "mlruns") if local else None,
                tags={KIND_TAG: KIND},
            )
        except Exception:  # created meanwhile by a run beside this one (a queue with --jobs 2)
            if mlflow.get_experiment_by_name(name) is None:
                raise
    experiment = mlflow.set_experiment(name)
    if KIND_TAG not in experiment.tags:
        MlflowClient().set_experiment_tag(experiment.experiment_id, KIND_TAG, KIND)
    return str(experiment.experiment_id)


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

    @property
    def run_id(self) -> str:
        return str(self.run.info.run_id)

    def log_dataset(self, prepared_dir: Path, name: str, digest: str, context: str) -> None:
        """The prepared dataset as the run's input (MLflow's Datasets tab): its folder as
        the source, the content fingerprint as the digest."""
        import warnings

        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset

        with warnings.catch_warnings():  # "can be interpreted in multiple ways": local
            warnings.simplefilter("ignore")
            source = resolve_dataset_source(str(prepared_dir.resolve()))
        self.mlflow.log_input(MetaDataset(source, name=name, digest=digest), context=context)  # type: ignore[abstract]


def start_mlflow_run(
    tracking_uri: str | None,
    experiment: str,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
) -> MlflowTracker | None:
    """Start an MLflow run, or warn once and return None when the server is unreachable."""
    configure_offline_defaults()
    uri = resolve_tracking_uri(tracking_uri)
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
        use_experiment(experiment, uri)
        run = mlflow.start_run(run_name=run_name, tags=tags)
    except Exception as err:
        log.warning("MLflow at %s failed (%s); continuing without it", uri, err)
        return None
    return MlflowTracker(run)


def start_dvclive(live_dir: Path, resume: bool) -> Any:
    """The dvclive tracker into ``live_dir`` (``models/<name>/live``), or None (warned) when
    dvclive is missing or fails: training goes on."""
    try:
        from ssd.integrations.dvclive_tracking import DvcLiveTracker

        return DvcLiveTracker(live_dir, resume=resume)
    except Exception as err:  # dvclive missing or failing: training goes on
        log.warning("dvclive unavailable (%s); training curves stay in metrics.jsonl", err)
        return None
