"""Prefect flows: one per stage, plus ``ssd-pipeline`` for the whole chain.

How DVC and Prefect fit together (one source of truth): ``dvc.yaml`` defines the stages
and their inputs; each DVC stage runs one ``ssd`` subcommand, which calls the same library
function as the stage's flow below. The ``ssd-pipeline`` flow runs ``dvc repro`` (or
``dvc exp run --set-param ...`` when given parameter overrides), so every deployment run
is recorded in ``dvc.lock`` exactly like a ``dvc repro`` from the shell, and produces the
same outputs. The per-stage flows are for running one stage under Prefect by hand; they
do not update ``dvc.lock`` (``dvc status`` will then show that stage as changed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from ssd.config import load_config
from ssd.integrations.env import configure_offline_defaults

configure_offline_defaults()


@task(name="prepare")
def prepare_task(params: str, overrides: list[str]) -> str:
    from ssd.data.prepare import prepare_dataset

    return str(prepare_dataset(load_config(params, overrides).data).out_dir)


@task(name="train")
def train_task(params: str, overrides: list[str], resume: bool) -> str:
    from ssd.integrations.mlflow_tracking import tracked_train

    result = tracked_train(load_config(params, overrides), resume=resume, progress=False)
    return str(result.model_dir)


@task(name="evaluate")
def evaluate_task(params: str, overrides: list[str]) -> dict[str, Any]:
    from ssd.evaluation.run import evaluate_from_config

    metrics = evaluate_from_config(load_config(params, overrides))
    return {k: v for k, v in metrics.items() if isinstance(v, int | float)}


@task(name="register", retries=2, retry_delay_seconds=10)  # a tracking server may blip
def register_task(params: str, overrides: list[str]) -> dict[str, Any]:
    from ssd.integrations.registry import register_from_config

    return register_from_config(load_config(params, overrides))


@flow(name="prepare")
def prepare_flow(params: str = "params.yaml", overrides: list[str] | None = None) -> str:
    return prepare_task(params, overrides or [])


@flow(name="train")
def train_flow(
    params: str = "params.yaml", overrides: list[str] | None = None, resume: bool = True
) -> str:
    # resume=True: a retried or re-triggered run continues from the last checkpoint.
    return train_task(params, overrides or [], resume)


@flow(name="evaluate")
def evaluate_flow(
    params: str = "params.yaml", overrides: list[str] | None = None
) -> dict[str, Any]:
    return evaluate_task(params, overrides or [])


@flow(name="register")
def register_flow(
    params: str = "params.yaml", overrides: list[str] | None = None
) -> dict[str, Any]:
    return register_task(params, overrides or [])


def _dvc_command(set_params: list[str], force: bool) -> list[str]:
    dvc = str(Path(sys.executable).with_name("dvc"))
    if set_params:
        cmd = [dvc, "exp", "run"]
        for p in set_params:
            cmd += ["--set-param", p]
    else:
        cmd = [dvc, "repro"]
    return cmd + (["--force"] if force else [])


@task(name="dvc-repro", retries=1, retry_delay_seconds=5)
def dvc_repro_task(project_dir: str, set_params: list[str], force: bool) -> None:
    """Run the DVC pipeline, streaming its output into the Prefect log."""
    logger = get_run_logger()
    cmd = _dvc_command(set_params, force)
    logger.info("running %s in %s", " ".join(cmd), project_dir)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    proc = subprocess.Popen(
        cmd, cwd=project_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip():
            logger.info(line.rstrip())
    if proc.wait() != 0:
        raise RuntimeError(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode}); the log above names the stage. "
            "Earlier stages' outputs are kept; rerun to continue from the failed stage."
        )


@flow(name="ssd-pipeline")
def ssd_pipeline(
    set_params: list[str] | None = None, force: bool = False, project_dir: str = "."
) -> dict[str, Any]:
    """prepare -> train -> evaluate -> register through DVC; returns the metrics and the
    registry outcome. ``set_params`` like ``["train.epochs=5"]`` runs a DVC experiment."""
    dvc_repro_task(project_dir, list(set_params or []), force)
    root = Path(project_dir)
    cfg = load_config(root / "params.yaml")
    reports = root / cfg.layout.reports
    metrics = json.loads((reports / "metrics.json").read_text())
    registry = (
        json.loads((reports / "registry.json").read_text())
        if (reports / "registry.json").is_file()
        else {}
    )
    summary = {k: metrics.get(k) for k in ("map", "map50", "map75", "voc07_map50", "voc_map50")}
    get_run_logger().info("metrics: %s; registry: %s", summary, registry.get("reason"))
    return {"metrics": summary, "registry": registry}
