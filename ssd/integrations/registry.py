"""``ssd register``: put the trained detector in the MLflow model registry.

Each call logs the detector (pyfunc, from code) in a run tagged with the dataset
fingerprint and code version, logs the evaluation metrics, and registers a new version
of ``tracking.model_name`` (``ssd-<data.name>``), then writes ``registry.json``. The alias
``champion`` moves to the new version only when it beats the current champion on
``tracking.champion_metric`` (``map`` by default); otherwise the version stays registered
without the alias and the result says why.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ssd.config import Config
from ssd.data.errors import DataError
from ssd.data.prepared import PreparedSplit
from ssd.integrations.env import (
    check_tracking_server,
    configure_offline_defaults,
    resolve_tracking_uri,
)
from ssd.integrations.mlflow_model import log_detector_model
from ssd.provenance import dataset_fingerprint, git_commit

log = logging.getLogger(__name__)

CHAMPION = "champion"


class RegistryError(RuntimeError):
    """Registration cannot proceed; the message says what is missing."""


def _flat_numeric(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def decide_champion(new: float | None, current: float | None, metric: str) -> tuple[bool, str]:
    """Whether the new version takes the alias, and why (pure, for testing)."""
    if new is None:
        return False, f"the new version has no '{metric}' value; alias left where it is"
    if current is None:
        return True, f"first version with a '{metric}' value ({new:.4f}); it becomes champion"
    if new > current:
        return True, f"{metric} {new:.4f} beats the champion's {current:.4f}"
    return False, f"{metric} {new:.4f} does not beat the champion's {current:.4f}; alias unchanged"


def register(
    model_dir: str | Path,
    metrics_path: str | Path,
    split: PreparedSplit,
    out: str | Path,
    tracking_uri: str | None = None,
    experiment: str = "ssd",
    model_name: str = "ssd",
    metric: str = "map",
    postprocess: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Register ``model_dir`` with the metrics in ``metrics_path``; write what happened to
    ``out`` (``registry.json``) and return it.

    ``split`` is the evaluated split (its dataset's fingerprint is recorded; its first image
    is the model's input example); ``postprocess`` travels with the model as its settings.
    """
    model_dir, metrics_path, out = Path(model_dir), Path(metrics_path), Path(out)
    if not (model_dir / "model.safetensors").is_file():
        raise RegistryError(f"no detector at '{model_dir}'; run `ssd train` first")
    if not metrics_path.is_file():
        raise RegistryError(f"no metrics at '{metrics_path}'; run `ssd evaluate` first")
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        first = str(err).splitlines()[0][:200] if str(err) else "nested too deeply"
        raise RegistryError(f"{metrics_path} cannot be read: {first}; run `ssd evaluate`") from None
    if not isinstance(metrics, dict):
        raise RegistryError(f"{metrics_path} is not a metrics object; run `ssd evaluate`")
    if metric not in metrics:
        raise RegistryError(
            f"tracking.champion_metric '{metric}' is not in {metrics_path}; "
            f"choose one of {', '.join(sorted(_flat_numeric(metrics)))}"
        )
    configure_offline_defaults()
    uri = resolve_tracking_uri(tracking_uri)
    try:
        check_tracking_server(uri)
    except ConnectionError as err:
        raise RegistryError(str(err)) from None
    try:
        return _register(
            model_dir, metrics, metrics_path, split, out, uri, experiment, model_name, metric,
            postprocess,
        )  # fmt: skip
    except RegistryError:
        raise
    except Exception as err:  # MlflowException, a requests error: one message, not a traceback
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise RegistryError(
            f"registering in MLflow at {uri} failed: {first}; check tracking.tracking_uri and "
            "that the server (or database) is reachable"
        ) from None


def _register(
    model_dir: Path,
    metrics: dict[str, Any],
    metrics_path: Path,
    split: PreparedSplit,
    out: Path,
    uri: str,
    experiment: str,
    model_name: str,
    metric: str,
    postprocess: dict[str, Any] | None,
) -> dict[str, Any]:
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    fingerprint = dataset_fingerprint(split.root)
    value = metrics.get(metric)
    new_value = float(value) if isinstance(value, int | float) else None
    with mlflow.start_run(run_name=f"register-{split.root.name}") as run:
        mlflow.set_tags(
            {
                "dataset": split.root.name,
                "dataset_fingerprint": fingerprint,
                "git_commit": git_commit() or "unknown",
                "stage": "register",
            }
        )
        mlflow.log_metrics(_flat_numeric(metrics))
        mlflow.log_artifact(str(metrics_path), "evaluation")
        model_uri = log_detector_model(model_dir, split.example_image(), postprocess)
    tags = {
        "dataset_fingerprint": fingerprint,
        "run_id": run.info.run_id,
        "champion_metric": metric,
    }
    if new_value is not None:
        tags[metric] = f"{new_value:.6f}"
    version = mlflow.register_model(model_uri, model_name, tags=tags)

    client = MlflowClient()
    current_version, current_value = None, None
    try:
        champ = client.get_model_version_by_alias(model_name, CHAMPION)
        current_version = champ.version
        raw = champ.tags.get(metric)
        current_value = float(raw) if raw is not None else None
    except Exception:  # no champion yet
        pass
    promote, reason = decide_champion(new_value, current_value, metric)
    if promote:
        client.set_registered_model_alias(model_name, CHAMPION, version.version)
    log.info("registered %s version %s: %s", model_name, version.version, reason)
    result = {
        "model_name": model_name,
        "version": int(version.version),
        "metric": metric,
        "value": new_value,
        "champion": promote,
        "previous_champion_version": int(current_version) if current_version else None,
        "previous_champion_value": current_value,
        "reason": reason,
        "dataset_fingerprint": fingerprint,
        "model_uri": f"models:/{model_name}/{version.version}",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def register_from_config(cfg: Config) -> dict[str, Any]:
    """The ``register`` stage: the detector of ``models/<data.name>/ssd`` with the metrics
    of ``reports/<data.name>/metrics.json``; writes ``reports/<data.name>/registry.json``."""
    metrics_path = cfg.layout.metrics
    if not cfg.tracking.enabled:
        result: dict[str, Any] = {
            "model_name": cfg.registered_model_name,
            "version": None,
            "champion": False,
            "model_uri": None,
            "reason": "tracking.enabled is false: nothing registered",
        }
        cfg.layout.registry.parent.mkdir(parents=True, exist_ok=True)
        cfg.layout.registry.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        return result
    split_name: str = cfg.evaluate.split
    if metrics_path.is_file():  # the split that was evaluated (evaluate --split may differ)
        try:
            recorded = json.loads(metrics_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            recorded = None  # register() says what is wrong with it
        if isinstance(recorded, dict):
            split_name = str(recorded.get("split", split_name))
    try:
        split = PreparedSplit.load(cfg.layout.prepared, split_name)
    except DataError as err:
        raise RegistryError(str(err)) from None
    return register(
        cfg.layout.detector,
        metrics_path,
        split,
        cfg.layout.registry,
        cfg.tracking.tracking_uri,
        cfg.tracking.experiment,
        cfg.registered_model_name,
        cfg.tracking.champion_metric,
        cfg.postprocess.model_dump(mode="json"),
    )
