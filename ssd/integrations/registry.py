"""``ssd register``: put the trained detector in the MLflow model registry.

Each call logs the detector (pyfunc, from code) in a run tagged with the dataset
fingerprint and code version, logs the evaluation metrics, and registers a new version
of ``tracking.model_name`` (``ssd-<data.name>``), then writes ``registry.json``. The alias
``champion`` moves to the new version only when it beats the current champion on
``tracking.champion_metric`` (``map`` by default); otherwise the version stays registered
without the alias and the result says why.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssd.data.prepared import PreparedSplit
from ssd.errors import RegistryError
from ssd.integrations.env import (
    check_tracking_server,
    configure_offline_defaults,
    resolve_tracking_uri,
)
from ssd.integrations.mlflow_model import log_detector_model
from ssd.integrations.mlflow_tracking import RUN_FILE, use_experiment
from ssd.provenance import dataset_fingerprint, git_commit

log = logging.getLogger(__name__)

CHAMPION = "champion"
REGISTERED = "registered"  # the logged model a version is made from (ssd train logs "trained")


def _flat_numeric(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _evaluation_figures(metrics_path: Path) -> dict[str, Any]:
    """The top-level figures of ``evaluation.json`` beside ``metrics.json`` (VOC mAP, AP by
    size, AR, ...), which ``metrics.json`` leaves out to stay short; {} when unreadable."""
    try:
        detail = json.loads(metrics_path.with_name("evaluation.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return {}
    return _flat_numeric(detail) if isinstance(detail, dict) else {}


def decide_champion(
    new: float | None,
    current: float | None,
    metric: str,
    min_delta: float = 0.001,
    floor: float = 0.0,
) -> tuple[bool, str]:
    """Whether the new version takes the alias, and why (pure, for testing): only a value of
    at least ``floor`` (``tracking.champion_min``), and only a strict improvement by more
    than ``min_delta`` moves it (a tie never does)."""
    if new is None:
        return False, f"the new version has no '{metric}' value; alias left where it is"
    if new < floor:
        return False, (
            f"{metric} {new:.4f} is below tracking.champion_min {floor:g}: registered, but "
            "too weak to be the champion; alias left where it is"
        )
    if current is None:
        return True, f"first version with a '{metric}' value ({new:.4f}); it becomes champion"
    if new > current + min_delta:
        return (
            True,
            f"{metric} {new:.4f} beats the champion's {current:.4f} by more than {min_delta:g}",
        )
    return False, (
        f"{metric} {new:.4f} does not beat the champion's {current:.4f} by more than "
        f"{min_delta:g}; alias unchanged"
    )


@dataclass(frozen=True)
class Policy:
    """When a version is registered and when it becomes champion (``tracking`` section)."""

    metric: str = "map"
    min_delta: float = 0.001
    register_min: float = 0.01
    champion_min: float = 0.0


def training_run(model_dir: Path) -> str | None:
    """The MLflow run that trained the detector in ``model_dir`` (``ssd train`` writes
    ``mlflow_run.json`` there when it tracks), or None."""
    path = model_dir / RUN_FILE
    try:
        run_id = json.loads(path.read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None
    return str(run_id) if run_id else None


def register_detector(
    model_dir: str | Path,
    metrics_path: str | Path,
    split: PreparedSplit,
    out: str | Path,
    *,
    tracking_uri: str | None = None,
    experiment: str = "ssd",
    model_name: str = "ssd",
    policy: Policy = Policy(),
    postprocess: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Register ``model_dir`` with the metrics in ``metrics_path``; write what happened to
    ``out`` (``registry.json``) and return it.

    A version below ``policy.register_min`` is not registered. Otherwise the pyfunc model
    (with ``postprocess`` as its settings; ``split``'s first image as its input example) is
    logged in the run that trained the detector, when known, so the registered version
    points at the training run (its params, curves and dataset); a child run ``register``
    under it records the decision. The alias ``champion`` moves only on a strict
    improvement (:func:`decide_champion`).
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
    metrics = _evaluation_figures(metrics_path) | metrics  # every figure, headline first
    metric = policy.metric
    if metric not in metrics:
        raise RegistryError(
            f"tracking.champion_metric '{metric}' is not in {metrics_path} nor in "
            f"evaluation.json beside it; choose one of {', '.join(sorted(_flat_numeric(metrics)))}"
        )
    value = metrics.get(metric)
    new_value = float(value) if isinstance(value, int | float) else None
    fingerprint = dataset_fingerprint(split.root)
    result: dict[str, Any] = {
        "model_name": model_name,
        "metric": metric,
        "value": new_value,
        "dataset_fingerprint": fingerprint,
        "version": None,
        "model_uri": None,
        "champion": False,
    }
    if new_value is None or new_value < policy.register_min:
        shown = "none" if new_value is None else f"{new_value:.4f}"
        result["reason"] = (
            f"{metric} {shown} is below tracking.register_min {policy.register_min:g}: "
            "not registered"
        )
        write_result(out, result)
        log.info("%s", result["reason"])
        return result

    configure_offline_defaults()
    uri = resolve_tracking_uri(tracking_uri)
    try:
        check_tracking_server(uri)
    except ConnectionError as err:
        raise RegistryError(str(err)) from None
    try:
        _register_in_mlflow(
            model_dir,
            metrics_path,
            metrics,
            split,
            uri,
            experiment,
            model_name,
            policy,
            postprocess,
            result,
        )
    except RegistryError:
        raise
    except Exception as err:  # MlflowException, a requests error: one message, not a traceback
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise RegistryError(
            f"registering in MLflow at {uri} failed: {first}; check tracking.tracking_uri and "
            "that the server (or database) is reachable"
        ) from None
    write_result(out, result)
    return result


def _register_in_mlflow(
    model_dir: Path,
    metrics_path: Path,
    metrics: dict[str, Any],
    split: PreparedSplit,
    uri: str,
    experiment: str,
    model_name: str,
    policy: Policy,
    postprocess: dict[str, Any] | None,
    result: dict[str, Any],
) -> None:
    """Log, register and decide (see :func:`register`); fills ``result``."""
    import mlflow
    from mlflow import MlflowClient

    metric, new_value = result["metric"], result["value"]
    fingerprint = result["dataset_fingerprint"]
    mlflow.set_tracking_uri(uri)
    experiment_id = use_experiment(experiment, uri)
    client = MlflowClient()
    train_id = training_run(model_dir)
    if train_id is not None:
        try:
            client.get_run(train_id)
        except Exception:  # trained against another tracking store
            train_id = None
    # What a version is: these weights with these inference settings. Registering the same
    # again is a no-op that names the version (ssd register is idempotent).
    identity = {
        "detector_sha256": _sha256(model_dir / "model.safetensors"),
        "postprocess": json.dumps(postprocess or {}, sort_keys=True),
    }
    tags = {
        "dataset": split.root.name,
        "dataset_fingerprint": fingerprint,
        "git_commit": git_commit() or "unknown",
    }
    current_version, current_value = None, None
    try:
        champ = client.get_model_version_by_alias(model_name, CHAMPION)
        current_version = champ.version
        raw = champ.tags.get(metric)
        current_value = float(raw) if raw is not None else None
    except Exception:  # no champion yet
        pass
    same = _same_version(client, model_name, identity)
    if same is not None:
        is_champion = current_version is not None and str(current_version) == str(same.version)
        reason = (
            f"already version {same.version} (the same detector with the same postprocess "
            f"settings): nothing new registered; {'it is' if is_champion else 'not'} the "
            "champion"
        )
        log.info("%s %s", model_name, reason)
        result.update(
            {
                "version": int(same.version),
                "champion": is_champion,
                "previous_champion_version": int(current_version) if current_version else None,
                "previous_champion_value": current_value,
                "reason": reason,
                "model_uri": f"models:/{model_name}/{same.version}",
                "training_run_id": same.tags.get("run_id"),
            }
        )
        return
    promote, reason = decide_champion(
        new_value, current_value, metric, policy.min_delta, policy.champion_min
    )
    # The model goes into the training run when there is one, as the logged model named
    # "registered" (beside "trained", which ssd train logged with the default settings);
    # the decision into a run `register` (a child of the training run, or on its own).
    model_tags = {"ssd.registered_as": model_name}
    if train_id is not None:
        with mlflow.start_run(run_id=train_id, experiment_id=experiment_id):
            model_uri = log_detector_model(
                model_dir, split.example_image(), postprocess, REGISTERED, model_tags
            )
    with mlflow.start_run(
        run_name=f"register-{split.root.name}",
        experiment_id=experiment_id,
        parent_run_id=train_id,
        tags={**tags, "stage": "register"},
    ) as register_run:
        if train_id is None:
            model_uri = log_detector_model(
                model_dir, split.example_image(), postprocess, REGISTERED, model_tags
            )
        mlflow.log_metrics(_flat_numeric(metrics))
        mlflow.log_dict({"decision": reason, "champion": promote}, "registry.json")
        _log_evaluation(metrics_path)
        version = mlflow.register_model(
            model_uri,
            model_name,
            tags={
                **tags,
                **identity,
                "run_id": train_id or register_run.info.run_id,
                metric: repr(new_value),
            },
        )
        mlflow.set_tag("model_version", str(version.version))
    if promote:
        client.set_registered_model_alias(model_name, CHAMPION, version.version)
    log.info("registered %s version %s: %s", model_name, version.version, reason)
    result.update(
        {
            "version": int(version.version),
            "champion": promote,
            "previous_champion_version": int(current_version) if current_version else None,
            "previous_champion_value": current_value,
            "reason": reason,
            "model_uri": f"models:/{model_name}/{version.version}",
            "training_run_id": train_id,
        }
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _same_version(client: Any, model_name: str, identity: dict[str, str]) -> Any:
    """The registered version of ``model_name`` with exactly these identity tags, or None."""
    try:
        versions = client.search_model_versions(f"name = '{model_name}'")
    except Exception:  # no such registered model yet
        return None
    for v in sorted(versions, key=lambda v: int(v.version)):
        if all(v.tags.get(k) == value for k, value in identity.items()):
            return v
    return None


def _log_evaluation(metrics_path: Path) -> None:
    """The evaluation behind the decision, on the register run: ``evaluation.json`` and
    the plots beside ``metrics.json`` (PR curves, F1 curve, confusion matrix, TIDE, ...)."""
    import mlflow

    detail = metrics_path.with_name("evaluation.json")
    if detail.is_file():
        mlflow.log_artifact(str(detail), "evaluation")
    plots = metrics_path.with_name("plots")
    if plots.is_dir():
        mlflow.log_artifacts(str(plots), "evaluation/plots")


def write_result(out: Path, result: dict[str, Any]) -> None:
    """``registry.json``: what happened and why."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
