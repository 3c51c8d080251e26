"""The ``ssd`` command line: one subcommand per stage, all sharing ``--params`` / ``--set``.

Every subcommand loads the typed config once (:func:`ssd.config.load_config`), then calls
one library function. Errors in the user's input are printed as one message, no traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ssd.config import Config, ConfigError, load_config

app = typer.Typer(
    name="ssd",
    help="SSD object detector: prepare data, train, evaluate, detect, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ParamsOpt = Annotated[
    Path, typer.Option("--params", help="params file (YAML, one section per stage)")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="override one key, e.g. --set train.lr=0.01 (repeatable)"),
]


@app.callback()
def _main() -> None:
    """SSD object detector: prepare data, train, evaluate, detect, export."""


def fail(message: str, code: int = 2) -> None:
    """Print one clear error message and exit (no traceback)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def get_config(params: Path, overrides: list[str] | None) -> Config:
    try:
        return load_config(params, overrides or [])
    except ConfigError as err:
        fail(str(err))
        raise  # unreachable, for type checkers


# ---------------------------------------------------------------- ssd info
@app.command()
def info(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Describe the configured model: feature maps, default boxes, parameters."""
    from ssd.model import ModelError, describe_model

    cfg = get_config(params, set_)
    try:
        desc = describe_model(cfg.model)
    except ModelError as err:
        fail(str(err))
    if as_json:
        typer.echo(json.dumps(desc, indent=2))
        return
    width = max(len(k) for k in desc)
    for key, value in desc.items():
        typer.echo(f"{key:<{width}}  {value}")


# ---- data commands (ssd/data)
@app.command()
def prepare(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Turn the configured input (data.source, data.path) into data/prepared/<name>/."""
    from ssd.data.errors import DataError
    from ssd.data.prepare import prepare_dataset

    cfg = get_config(params, set_)
    try:
        prepare_dataset(cfg.data)
    except (DataError, ConfigError) as err:
        fail(str(err))


@app.command("show-augmentations")
def show_augmentations(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    out: Annotated[Path, typer.Option(help="PNG to write")] = Path("reports/augmentations.png"),
    split: Annotated[str, typer.Option(help="split to sample")] = "train",
    n: Annotated[int, typer.Option(help="number of samples")] = 16,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
) -> None:
    """Write a PNG grid of augmented training samples with their boxes drawn."""
    from ssd.data.errors import DataError
    from ssd.data.preview import write_augmentation_grid

    cfg = get_config(params, set_)
    try:
        path = write_augmentation_grid(
            cfg.data.prepared_dir,
            split,
            cfg.model.resolved_input_size,
            cfg.data.augment,
            out,
            n=n,
            seed=seed,
        )
    except (DataError, ConfigError, FileNotFoundError, ValueError) as err:
        fail(str(err))
    typer.echo(f"wrote {path}")


# ---- end of data commands


# ---- evaluation commands (ssd/evaluation)
def _percent(value: float | None) -> str:
    return "  n/a" if value is None else f"{100 * value:5.1f}"


@app.command()
def evaluate(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    model: Annotated[
        Path | None, typer.Option("--model", help="checkpoint to run on the split")
    ] = None,
    detections: Annotated[
        Path | None,
        typer.Option(
            "--detections",
            help="COCO results JSON [{image_id, category_id, bbox: [x,y,w,h], score}] "
            "to evaluate instead of running a model",
        ),
    ] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="train, val or test (default: evaluate.split)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="report folder (default: evaluate.out_dir)")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N")] = "auto",
) -> None:
    """Score a model (--model) or a detection file (--detections) on a prepared split.

    Writes metrics.json (COCO, VOC, TIDE errors, default-box coverage), pr_curves.csv,
    per-object error labels, plots and the worst images drawn.
    """
    from ssd.evaluation.errors import EvaluationError
    from ssd.evaluation.inputs import SPLITS, load_detections
    from ssd.evaluation.run import evaluate_detections, evaluate_model

    if (model is None) == (detections is None):
        fail("give exactly one of --model PATH or --detections FILE")
    cfg = get_config(params, set_)
    split_name = split or cfg.evaluate.split
    if split_name not in SPLITS:
        fail(f"--split must be one of {', '.join(SPLITS)}, got '{split_name}'")
    out_dir = out or Path(cfg.evaluate.out_dir)
    try:
        if model is not None:
            metrics = evaluate_model(
                model,
                cfg.data.prepared_dir,
                split_name,
                out_dir,
                batch_size=cfg.evaluate.batch_size,
                device=device,
            )
        else:
            assert detections is not None
            priors = None
            try:  # coverage of the configured default boxes (data vs config; any detector)
                from ssd.priors import build_priors

                priors = build_priors(cfg.model)
            except (ImportError, ValueError) as err:
                typer.secho(f"warning: no default-box coverage ({err})", err=True)
            metrics = evaluate_detections(
                cfg.data.prepared_dir,
                split_name,
                load_detections(detections),
                out_dir,
                priors=priors,
            )
    except (EvaluationError, ConfigError) as err:
        fail(str(err))
        return
    except (ValueError, OSError) as err:  # e.g. a checkpoint that cannot be read
        fail(f"evaluation failed: {err}")
        return
    errors = metrics["errors"]["dap"]
    typer.echo(
        f"{split_name}: {metrics['num_images']} images, {metrics['num_detections']} detections "
        f"({metrics['num_rejected_detections']} rejected)"
    )
    typer.echo(
        f"COCO AP {_percent(metrics['map'])}  AP50 {_percent(metrics['map50'])}  "
        f"AP75 {_percent(metrics['map75'])}  S/M/L {_percent(metrics['map_small'])} "
        f"{_percent(metrics['map_medium'])} {_percent(metrics['map_large'])}"
    )
    typer.echo(
        f"VOC mAP50 07 {_percent(metrics['voc07_map50'])}  area {_percent(metrics['voc_map50'])}"
    )
    typer.echo("TIDE dAP50  " + "  ".join(f"{k} {100 * v:.1f}" for k, v in errors.items()))
    if metrics["prior_coverage"] is not None:
        typer.echo(f"default boxes cover (IoU≥0.5) {_percent(metrics['prior_coverage'])} % of GT")
    if metrics["images_per_second"] is not None:
        typer.echo(f"inference {metrics['images_per_second']:.1f} images/s")
    for reason, count in metrics["rejected_detections"]["by_reason"].items():
        typer.secho(f"rejected {count} detections: {reason}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"wrote {out_dir}/metrics.json")


@app.command("suggest-priors")
def suggest_priors_command(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    split: Annotated[str, typer.Option("--split", help="split to fit on")] = "train",
    out: Annotated[
        Path | None, typer.Option("--out", help="folder for suggested_priors.json")
    ] = None,
) -> None:
    """Fit default-box scales and aspect ratios to the training boxes; show the coverage gain."""
    from ssd.evaluation.errors import EvaluationError
    from ssd.evaluation.suggest import suggest_priors

    cfg = get_config(params, set_)
    out_dir = out or Path(cfg.evaluate.out_dir)
    try:
        report = suggest_priors(cfg.model, cfg.data.prepared_dir, out_dir, fit_split=split)
    except (EvaluationError, ConfigError, ValueError) as err:
        fail(str(err))
        return
    cur, new = report["current"], report["suggested"]
    typer.echo(f"default boxes: {cur['num_priors']} now, {new['num_priors']} suggested")
    typer.echo("share of GT with a default box at IoU ≥ 0.5 (all / small / medium / large):")
    for name, cov in report["coverage"].items():
        for which in ("current", "suggested"):
            c = cov[which]
            sizes = " ".join(_percent(c["by_size"][s]["share_covered"]) for s in c["by_size"])
            typer.echo(f"  {name:<5} {which:<9} {_percent(c['share_covered'])} | {sizes}")
    typer.echo("to use them, set in params.yaml:\nmodel:\n  priors:")
    typer.echo(f"    scales: {json.dumps(new['scales'])}")
    typer.echo(f"    aspect_ratios: {json.dumps(new['aspect_ratios'])}")
    typer.echo(f"wrote {out_dir}/suggested_priors.json")


# ---- end of evaluation commands


# ---- training commands (ssd/train.py)
@app.command("train")
def train_cmd(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue from the last checkpoint in train.out_dir")
    ] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="no progress bars")] = False,
) -> None:
    """Train the SSD on the prepared dataset; tracks the run in MLflow."""
    import logging
    import os

    from ssd.integrations.env import configure_offline_defaults
    from ssd.model import ModelError
    from ssd.train import TrainingError, train
    from ssd.weights import WeightsError

    configure_offline_defaults()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = get_config(params, set_)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    tracker = None
    if cfg.tracking.enabled and rank0:
        from ssd.integrations.mlflow_tracking import start_mlflow_run
        from ssd.provenance import describe_run

        tags = {"dataset": cfg.data.name}
        if cfg.data.prepared_dir.is_dir():
            tags |= describe_run(cfg.data.prepared_dir)
        tracker = start_mlflow_run(cfg.tracking.tracking_uri, cfg.tracking.experiment,
                                   f"train-{cfg.data.name}", tags)
    try:
        result = train(cfg, tracker, resume=resume, progress=not no_progress)
    except (TrainingError, ModelError, WeightsError, FileNotFoundError) as err:
        if tracker is not None:
            tracker.end("FAILED")
        fail(str(err), code=1)
        return
    if tracker is not None:
        _log_pyfunc(tracker, result.model_dir, cfg)
        tracker.end()
    if rank0:
        typer.echo(f"trained {result.steps} steps in {result.seconds:.0f} s; "
                   f"detector in {result.model_dir}"
                   + (f" (best val mAP in {result.best_dir})" if result.best_dir else ""))
        if result.final_metrics:
            typer.echo("validation: " + ", ".join(f"{k}={v:.4f}" for k, v in result.final_metrics.items()))


def _log_pyfunc(tracker: object, model_dir: Path, cfg: Config) -> None:
    """Log the detector as an MLflow pyfunc model (example input: a validation image)."""
    import logging

    from ssd.integrations.mlflow_tracking import log_detector_model

    split = cfg.data.prepared_dir / "val.json"
    try:
        images = json.loads(split.read_text())["images"] if split.is_file() else []
        if not images:
            images = json.loads((cfg.data.prepared_dir / "train.json").read_text())["images"]
        example = cfg.data.prepared_dir / images[0]["file_name"]
        uri = log_detector_model(model_dir, example)
        typer.echo(f"MLflow model: {uri}")
    except Exception as err:  # tracking must not fail a finished training
        logging.getLogger(__name__).warning("could not log the MLflow model: %s", err)


# ---- end of training commands


# ---------------------------------------------------------------- (more subcommands below)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
