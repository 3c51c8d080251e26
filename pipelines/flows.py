"""Prefect flows: the pipeline as a graph of its DVC stages, and one flow per stage.

How DVC and Prefect fit together (one source of truth): ``dvc.yaml`` defines the stages,
their code, inputs and params. Every Prefect task here runs one DVC stage
(``dvc repro --single-item <stage>``, which runs that stage's ``ssd`` subcommand, the same
library function as the CLI), so a deployment run is recorded in ``dvc.lock`` exactly like
a ``dvc repro`` from the shell. ``ssd-pipeline`` runs prepare, train, evaluate, register and
audit as five tasks in order (their states and logs in the run graph; a failed run retried from
the UI reruns only what DVC finds changed), streams each stage's output (training progress
included) into the run's log, and ends with a markdown artifact: the headline metrics, AP by
size, the TIDE errors, the registry decision and where to look next.

With ``set_params`` (``["train.lr=0.01"]``) the flow is a DVC experiment: the values are
validated, written to ``params.yaml`` (comments kept), the stages run, ``dvc exp save``
records the result as an experiment (``dvc exp show`` lists it), and the workspace goes
back to where it was: its own ``params.yaml`` and ``dvc.lock``, and their outputs restored
from DVC's cache (``dvc checkout``), whether the run succeeded or failed; ``dvc exp apply
<name>`` adopts the experiment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from pipelines.commands import stream, venv_bin
from ssd.config import load_config, parse_override
from ssd.errors import ConfigError
from ssd.integrations.env import configure_offline_defaults

configure_offline_defaults()

# audit (the label audit) comes last: nothing depends on it, so it never holds up register.
STAGES = ("prepare", "train", "evaluate", "register", "audit")
# A retry helps where a stage fails for an outside reason (a tracking server blip, a file
# system hiccup); a training failure is the code's or the data's and would fail again.
RETRIES = {"prepare": 1, "train": 0, "evaluate": 1, "register": 2, "audit": 1}


_bin = venv_bin


def _stream(cmd: list[str], cwd: Path) -> list[str]:
    """Run ``cmd`` in ``cwd``, every output line into the Prefect log (and returned);
    raise on failure."""
    logger = get_run_logger()
    logger.info("running %s in %s", " ".join(cmd), cwd)
    code, lines = stream(cmd, cwd, logger.info)
    if code != 0:
        raise RuntimeError(
            f"`{' '.join(cmd)}` failed (exit {code}); its output is in the log above. "
            "The stages that finished are kept (dvc.lock, DVC's run cache): a retry does "
            "not run them again."
        )
    return lines


def _stage_task(stage: str) -> Any:
    @task(
        name=stage,
        retries=RETRIES[stage],
        retry_delay_seconds=10,
        task_run_name=f"dvc repro {stage}",
    )
    def run_stage(project_dir: str, force: bool = False) -> str:
        cmd = [_bin("dvc"), "repro", "--single-item", stage] + (["--force"] if force else [])
        _stream(cmd, Path(project_dir))
        return stage

    return run_stage


STAGE_TASKS = {stage: _stage_task(stage) for stage in STAGES}


@task(name="set-params", task_run_name="set params")
def set_params_task(project_dir: str, set_params: list[str]) -> list[str]:
    """Validate ``KEY=VALUE`` overrides against the config, then write them to params.yaml
    (as ``dvc exp run --set-param`` does; comments and order are kept)."""
    from ruamel.yaml import YAML

    path = Path(project_dir) / "params.yaml"
    try:
        load_config(path, set_params)  # every key and value checked before anything runs
        parsed = [parse_override(item) for item in set_params]
    except ConfigError as err:
        raise ValueError(str(err)) from None
    ryaml = YAML()
    ryaml.preserve_quotes = True
    # null stays null (ruamel writes an empty value), as the user wrote it
    ryaml.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    data = ryaml.load(path.read_text()) or {}
    for parts, value in parsed:
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    with path.open("w") as fh:
        ryaml.dump(data, fh)
    get_run_logger().info("params.yaml: %s", ", ".join(set_params))
    return set_params


@task(name="save-experiment", task_run_name="dvc exp save")
def save_experiment_task(project_dir: str, name: str | None) -> str | None:
    """Record the workspace (params, dvc.lock, metrics) as a DVC experiment; its name."""
    out = _stream(
        [_bin("dvc"), "exp", "save", *(["--name", name] if name else [])], Path(project_dir)
    )
    saved = [line.rsplit(":", 1)[1].strip() for line in out if "saved as:" in line]
    return saved[-1] if saved else name


@task(name="push", task_run_name="dvc push", retries=1, retry_delay_seconds=10)
def push_task(project_dir: str) -> None:
    """Send the outputs to the project's default DVC remote (``dvc push``): on a cluster the
    worker's disk goes with the job. A failure is one message (pipelines/remote.py)."""
    from pipelines.remote import RemoteError, push

    try:
        push(project_dir, log=get_run_logger().info)
    except RemoteError as err:
        raise RuntimeError(str(err)) from None


# The files an experiment run changes in the workspace; the outputs follow dvc.lock.
WORKSPACE_FILES = ("params.yaml", "dvc.lock")


@task(name="restore-workspace", task_run_name="restore workspace")
def restore_workspace_task(
    project_dir: str, saved: dict[str, str | None], experiment: str | None
) -> None:
    """Put back the workspace's own params.yaml and dvc.lock, and their outputs from DVC's
    cache (``dvc checkout``): an experiment never moves the user's workspace."""
    root, logger = Path(project_dir), get_run_logger()
    for name, text in saved.items():
        if text is not None:
            (root / name).write_text(text)
    if saved.get("dvc.lock") is None:
        logger.warning(
            "params.yaml is back as it was; there was no dvc.lock before this run, so the "
            "outputs in the workspace are the experiment's"
        )
        return
    _stream([_bin("dvc"), "checkout"], root)
    adopt = f"; adopt it with `dvc exp apply {experiment}`" if experiment else ""
    logger.info(
        "workspace back on its own params.yaml and dvc.lock, their outputs restored from "
        "DVC's cache; the experiment is in `dvc exp show`%s",
        adopt,
    )


def _fmt(value: Any) -> str:
    return "n/a" if not isinstance(value, int | float) else f"{value:.3f}"


def _audit_lines(reports: Path) -> list[str]:
    """The label audit's counts for the summary (none when the audit has not run)."""
    import json

    path = reports / "audit.json"
    if not path.is_file():
        return []
    audit = json.loads(path.read_text())
    counts = ", ".join(f"{k} {n}" for k, n in audit["counts"].items())
    return [
        f"**Label audit** ({audit['split']}): {counts} suspects; review them in "
        "`ssd browse`, export the fixes with `ssd audit-export`",
        "",
    ]


@task(name="summary", task_run_name="summary")
def summary_task(project_dir: str) -> dict[str, Any]:
    """The markdown artifact of the run: headline metrics, AP by size, TIDE errors, the
    registry decision and where to look next."""
    import json

    from ssd.evaluation.score import weak_model_note

    root = Path(project_dir)
    cfg = load_config(root / "params.yaml")
    reports = root / cfg.layout.reports
    metrics = json.loads((reports / "evaluation.json").read_text())  # every figure
    registry_file = reports / "registry.json"
    registry = json.loads(registry_file.read_text()) if registry_file.is_file() else {}
    dap = metrics.get("errors", {}).get("dap", {})
    weak = weak_model_note(metrics.get("map50"))
    lines = [
        f"# SSD pipeline: {cfg.data.name}, {metrics.get('split', '?')} split",
        "",
        *([f"**Note**: {weak}.", ""] if weak else []),
        # no "@" in the headers: markdown renderers make "mAP@0.5" a mailto: link
        "| COCO AP | AP50 | AP75 | VOC07 AP50 | F1 (threshold) |",
        "|---|---|---|---|---|",
        f"| {_fmt(metrics.get('map'))} | {_fmt(metrics.get('map50'))} | "
        f"{_fmt(metrics.get('map75'))} | {_fmt(metrics.get('voc07_map50'))} | "
        f"{_fmt(metrics.get('f1'))} ({_fmt(metrics.get('f1_threshold'))}) |",
        "",
        "**AP by object size** (COCO): "
        + ", ".join(f"{s} {_fmt(metrics.get(f'map_{s}'))}" for s in ("small", "medium", "large")),
        "",
        "**Why it fails** (TIDE dAP50, points of AP50 a fix would add): "
        + ", ".join(f"{k} {100 * v:.1f}" for k, v in dap.items()),
        "",
        f"**Registry**: {registry.get('model_uri') or 'not registered'}: "
        f"{registry.get('reason', 'no registry.json')}",
        "",
        *_audit_lines(reports),
        "**Where to look next**",
        f"- plots: `{cfg.layout.reports}/plots/` (PR, F1, confusion matrix, errors), "
        "`dvc plots show`",
        f"- the worst images: `{cfg.layout.reports}/samples/`",
        "- every error in the FiftyOne App: `make browse`",
        "- runs and models: `make mlflow-ui`; experiments: `dvc exp show`",
    ]
    markdown = "\n".join(lines)
    key = "ssd-" + "".join(c if c.isalnum() else "-" for c in cfg.data.name.lower())
    create_markdown_artifact(markdown, key=key, description="SSD pipeline summary")
    get_run_logger().info(
        "metrics: map %s, map50 %s; registry: %s",
        _fmt(metrics.get("map")),
        _fmt(metrics.get("map50")),
        registry.get("reason"),
    )
    return {"metrics": metrics, "registry": registry}


@flow(name="ssd-pipeline")
def ssd_pipeline(
    set_params: list[str] | None = None,
    force: bool = False,
    project_dir: str = ".",
    experiment_name: str | None = None,
    push: bool = False,
) -> dict[str, Any]:
    """prepare -> train -> evaluate -> register -> audit, each its DVC stage; ``set_params`` like
    ``["train.epochs=5"]`` makes the run a DVC experiment (named ``experiment_name``), after
    which the workspace is restored as it was. ``push``: ``dvc push`` the outputs to the
    default DVC remote at the end (before the workspace is restored)."""
    if not set_params:
        for stage in STAGES:
            STAGE_TASKS[stage](project_dir, force)
        if push:
            push_task(project_dir)
        return dict(summary_task(project_dir))
    root = Path(project_dir)
    saved = {
        name: (root / name).read_text() if (root / name).is_file() else None
        for name in WORKSPACE_FILES
    }
    name = experiment_name
    try:
        set_params_task(project_dir, list(set_params))
        for stage in STAGES:
            STAGE_TASKS[stage](project_dir, force)
        name = save_experiment_task(project_dir, experiment_name)
        if push:
            push_task(project_dir)
        result: dict[str, Any] = summary_task(project_dir)  # the experiment's reports
    finally:
        restore_workspace_task(project_dir, saved, name)
    return result


def _stage_flow(stage: str) -> Any:
    description = f"The DVC stage `{stage}` alone (its upstream outputs must be up to date)."

    @flow(name=stage, description=description)
    def run_one(project_dir: str = ".", force: bool = False) -> str:
        return str(STAGE_TASKS[stage](project_dir, force))

    return run_one


prepare_flow = _stage_flow("prepare")


@task(name="train-torchrun", task_run_name="torchrun train, dvc commit train")
def torchrun_train_task(
    project_dir: str,
    nnodes: int,
    nproc_per_node: int,
    node_rank: int,
    rdzv_endpoint: str | None,
    resume: bool,
) -> list[str]:
    """The train stage's command under torchrun; node 0 records it in dvc.lock."""
    from pipelines.launch import launch_train
    from ssd.errors import SSDError

    try:
        return launch_train(
            project_dir,
            nnodes=nnodes,
            nproc_per_node=nproc_per_node,
            node_rank=node_rank,
            rdzv_endpoint=rdzv_endpoint,
            resume=resume,
            log=get_run_logger().info,
        )
    except SSDError as err:
        raise RuntimeError(str(err)) from None


@flow(
    name="train",
    description="The DVC stage `train` (its upstream outputs must be up to date); with "
    "nnodes / nproc_per_node, under torchrun (one run per node, each with its node_rank).",
)
def train_flow(
    project_dir: str = ".",
    force: bool = False,
    nnodes: int = 1,
    nproc_per_node: int = 1,
    node_rank: int = 0,
    rdzv_endpoint: str | None = None,
    resume: bool = False,
) -> str:
    """``dvc repro train``; with several processes or nodes, the stage's command under
    torchrun (``rdzv_endpoint``: node 0's ``host:port``, needed for several nodes), recorded in
    ``dvc.lock`` by node 0 (``dvc commit train``); ``resume`` continues from the last
    checkpoint (torchrun runs only)."""
    if nnodes == 1 and nproc_per_node == 1:
        return str(STAGE_TASKS["train"](project_dir, force))
    torchrun_train_task(project_dir, nnodes, nproc_per_node, node_rank, rdzv_endpoint, resume)
    return "train"


evaluate_flow = _stage_flow("evaluate")
register_flow = _stage_flow("register")
audit_flow = _stage_flow("audit")
