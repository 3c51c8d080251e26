"""The ``ssd`` command line: parse, run one stage (:mod:`ssd.stages`), print.

Every subcommand loads the typed config once (``--params`` / ``--set``), calls one function
of :mod:`ssd.stages` and prints what it returned. Every error a user can act on is an
:class:`~ssd.errors.SSDError`: it is printed as one message, no traceback (:func:`fail`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from ssd import stages
from ssd.config import Config, load_config
from ssd.errors import SSDError, TrainingStopped

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
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        help="detector folder (model.safetensors + model.json), its .safetensors file, "
        "coco (a COCO detector, no training), or a registry URI models:/NAME@ALIAS or "
        "models:/NAME/VERSION",
    ),
]
ModelPathOpt = Annotated[
    Path | None,
    typer.Option("--model", help="detector to run (default: models/<data.name>/ssd)"),
]
DetectionsOpt = Annotated[
    Path | None,
    typer.Option(
        "--detections",
        help="COCO results JSON (a list of image_id, category_id, bbox as x y w h, score; "
        "low scores included) to use instead of running a model",
    ),
]
ReportsOpt = Annotated[
    Path | None, typer.Option("--out", help="report folder (default: reports/<data.name>)")
]
DeviceOpt = Annotated[
    str | None, typer.Option(help="auto, cpu, cuda, cuda:N (default: the section's device)")
]


@app.callback()
def _main() -> None:
    """SSD object detector: prepare data, train, evaluate, detect, export."""


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one clear error message and exit (no traceback)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@contextmanager
def reported(code: int = 2) -> Iterator[None]:
    """Every :class:`SSDError` inside as one message and exit status ``code`` (a signal
    that stopped training: 128 + its number, as if the signal had ended the process)."""
    try:
        yield
    except TrainingStopped as err:
        fail(str(err), 128 + err.signum)
    except SSDError as err:
        fail(str(err), code)


def get_config(params: Path, overrides: list[str] | None) -> Config:
    with reported():
        return load_config(params, overrides or [])


def _warn(message: str) -> None:
    typer.secho(message, fg=typer.colors.YELLOW, err=True)


def _log_to_stderr() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


# ----------------------------------------------------------------------------- model, data


@app.command()
def info(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Describe the configured model: feature maps, default boxes, parameters."""
    cfg = get_config(params, set_)
    with reported():
        desc = stages.info(cfg)
    if as_json:
        typer.echo(json.dumps(desc, indent=2))
        return
    width = max(len(k) for k in desc)
    for key, value in desc.items():
        typer.echo(f"{key:<{width}}  {value}")


@app.command()
def prepare(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Turn the configured input (data.source, data.path) into data/prepared/<name>/."""
    cfg = get_config(params, set_)
    with reported():
        result = stages.prepare(cfg)
    typer.echo(result.summary())


@app.command("show-augmentations")
def show_augmentations(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(help="PNG to write (default: reports/<data.name>/augmentations.png)"),
    ] = None,
    split: Annotated[str, typer.Option(help="split to sample")] = "train",
    n: Annotated[int, typer.Option(help="number of samples")] = 16,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
) -> None:
    """Write a PNG grid of augmented training samples with their boxes drawn."""
    cfg = get_config(params, set_)
    with reported():
        path = stages.show_augmentations(cfg, split, n, seed, out)
    typer.echo(f"wrote {path}")


# ----------------------------------------------------------------------------- train, register


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
    import os

    from ssd.integrations.env import configure_offline_defaults

    configure_offline_defaults()
    _log_to_stderr()
    cfg = get_config(params, set_)
    with reported(code=1):
        try:
            result = stages.train(cfg, resume=resume, progress=not no_progress)
        except FileNotFoundError as err:  # a file that vanished under training
            raise SSDError(str(err)) from None
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo("\n".join(result.lines()))


@app.command(
    "launch",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def launch_cmd(ctx: typer.Context) -> None:
    """torchrun with one message per failure: `ssd launch --nnodes=2 --nproc-per-node=1
    --rdzv-backend=c10d --rdzv-endpoint=HOST:PORT -m ssd.cli train ...` (docs/cluster.md)."""
    from ssd.integrations.torchrun import launch

    _log_to_stderr()
    with reported(code=1):
        launch(ctx.args)


@app.command("register")
def register_cmd(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Register the trained detector in the MLflow registry; move 'champion' if it is better."""
    _log_to_stderr()
    cfg = get_config(params, set_)
    with reported(code=1):
        result = stages.register(cfg)
    if result["model_uri"] is None:
        typer.echo(result["reason"])
    else:
        typer.echo(f"registered {result['model_uri']}: {result['reason']}")
    typer.echo(f"wrote {cfg.layout.registry}")


# ----------------------------------------------------------------------------- evaluate


@app.command()
def evaluate(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    model: ModelPathOpt = None,
    detections: DetectionsOpt = None,
    split: Annotated[
        str | None, typer.Option("--split", help="train, val or test (default: evaluate.split)")
    ] = None,
    out: ReportsOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Score a model (--model) or a detection file (--detections) on a prepared split.

    Writes metrics.json (COCO, VOC, TIDE errors, default-box coverage), pr_curves.csv,
    per-object error labels, plots and the worst images drawn.
    """
    from ssd.evaluation.report import evaluation_lines

    cfg = get_config(params, set_)
    with reported():
        metrics = stages.evaluate(cfg, model, detections, split, out, device)
    lines = evaluation_lines(metrics)
    for line in lines[:-1] if metrics["num_detections_past_border"] else lines:
        typer.echo(line)
    for reason, count in metrics["rejected_detections"]["by_reason"].items():
        _warn(f"rejected {count} detections: {reason}")
    if metrics["num_detections_past_border"]:
        typer.echo(lines[-1])
    typer.echo(f"wrote {out or cfg.layout.reports}/metrics.json")


@app.command("suggest-priors")
def suggest_priors_command(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    split: Annotated[str, typer.Option("--split", help="split to fit on")] = "train",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="folder for suggested_priors.json and .png (default: reports/<name>/priors)",
        ),
    ] = None,
) -> None:
    """Fit default-box scales and aspect ratios to the training boxes; show the coverage gain."""
    cfg = get_config(params, set_)
    with reported():
        report = stages.suggest_priors(cfg, split, out)
    from ssd.evaluation.suggest import suggestion_lines

    typer.echo("\n".join(suggestion_lines(report)))
    typer.echo(f"wrote {out or cfg.layout.suggested_priors}/suggested_priors.json")


# ----------------------------------------------------------------------------- inference


@app.command()
def detect(
    inputs: Annotated[list[str], typer.Argument(help="image files, folders or glob patterns")],
    model: ModelOpt,
    out: Annotated[Path, typer.Option("--out", help="output folder")] = Path("reports/detect"),
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="images per pass")] = 8,
    score_threshold: Annotated[
        str | None,
        typer.Option(
            "--score-threshold",
            help="keep detections scoring at least this, in [0, 1], or 'f1' for the "
            "F1-optimal threshold of the last evaluation (default: "
            "postprocess.detect_score_threshold)",
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N")] = "auto",
    fmt: Annotated[
        str, typer.Option("--format", help="json (detections.json) or csv (detections.csv)")
    ] = "json",
    no_draw: Annotated[bool, typer.Option("--no-draw", help="no annotated images")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="no progress bar")] = False,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Detect objects in images; write detections (COCO results + file_name) and drawings.

    Post-processing (NMS etc.) follows the postprocess section of --params / --set.
    """
    if fmt not in ("json", "csv"):
        fail(f"--format must be json or csv, got '{fmt}'")
    overrides = list(set_ or [])
    if score_threshold is not None:
        overrides.append(f"postprocess.detect_score_threshold={score_threshold}")
    cfg = get_config(params, overrides)
    with reported():
        summary = stages.detect(
            cfg,
            model,
            inputs,
            out,
            batch_size=batch_size,
            device=device,
            fmt="csv" if fmt == "csv" else "json",
            draw=not no_draw,
            progress=not no_progress,
        )
    for item in summary["skipped"]:
        _warn(f"skipped {item['file_name']}: {item['reason']}")
    from ssd.infer.detect import summary_lines

    typer.echo("\n".join(summary_lines(summary, out)))
    if summary["num_images"] == 0:
        fail("no readable image among the inputs", code=1)


@app.command("export")
def export_cmd(
    model: ModelOpt,
    fmt: Annotated[str, typer.Option("--format", help="onnx or torchscript")] = "onnx",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="file to write (default: exports/<data.name>/model.onnx or .pt for the "
            "configured detector, else named after --model)",
        ),
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Export network + box decoding to ONNX or TorchScript (NMS left to the caller).

    The file carries the class names, input size and post-processing settings (the
    postprocess section of --params / --set) as metadata; see ssd/infer/export.py for the
    inputs, outputs and the reference post-processing.
    """
    if fmt not in ("onnx", "torchscript"):
        fail(f"--format must be one of onnx, torchscript, got '{fmt}'")
    cfg = get_config(params, set_)
    with reported():
        written = stages.export(cfg, model, "onnx" if fmt == "onnx" else "torchscript", out)
    typer.echo(f"wrote {written} ({written.stat().st_size / 1e6:.1f} MB)")


# ----------------------------------------------------------------------------- label audit


@app.command()
def audit(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    model: ModelPathOpt = None,
    detections: DetectionsOpt = None,
    split: Annotated[
        str | None, typer.Option("--split", help="train, val or test (default: audit.split)")
    ] = None,
    out: ReportsOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Rank the labels a detector says are probably wrong: missing, wrong class, loose, spurious.

    Writes audit.json, audit.csv, crops of the top suspects and a grid
    (audit/top_suspects.png). Review them in the App (`ssd browse`), then `ssd audit-export`.
    """
    from ssd.audit.report import audit_summary

    cfg = get_config(params, set_)
    with reported():
        result = stages.audit(cfg, model, detections, split, out, device)
    typer.echo(audit_summary(result, out or cfg.layout.reports))
    if result.split == "train":
        _warn(
            "note: a model audits the split it was trained on too kindly (it learnt those "
            "labels, mistakes included); val or test give a fairer list"
        )
    typer.echo(
        f"next: ssd browse --split {result.split} (tag suspects 'confirmed' or 'dismissed'), "
        "then ssd audit-export --out data/raw/<new name>"
    )


@app.command()
def browse(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    split: Annotated[
        str | None, typer.Option("--split", help="evaluated split (default: evaluate.split)")
    ] = None,
    reports: Annotated[
        Path | None,
        typer.Option("--reports", help="folder `ssd evaluate` wrote (default: reports/<name>)"),
    ] = None,
    port: Annotated[int, typer.Option("--port", help="App port")] = 5151,
    address: Annotated[
        str, typer.Option("--address", help="App address (0.0.0.0 serves the network)")
    ] = "127.0.0.1",
    no_launch: Annotated[
        bool, typer.Option("--no-launch", help="build or update the dataset only")
    ] = False,
) -> None:
    """Browse the evaluation's errors in the FiftyOne App (dataset + saved views).

    Builds or updates the persistent dataset ssd-<data.name>-<split> from the prepared split
    and the reports of `ssd evaluate` (and of `ssd audit`, when it audited this split: its
    suspects, with the review tags kept), then serves the App until Ctrl-C.
    """
    cfg = get_config(params, set_)
    with reported():
        result = stages.browse(cfg, split, reports, say=typer.echo)
    typer.echo("\n".join(result.lines()))
    if not no_launch:
        stages.serve_app(result, address, port, lambda lines: typer.echo("\n".join(lines)))


@app.command("audit-export")
def audit_export(
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="folder of the corrected copy, e.g. data/raw/<new name> (DVC's place)"
        ),
    ],
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="voc, coco or yolo (default: data.source; synthetic: coco)"),
    ] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="the reviewed split (default: audit.split)")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="replace --out if it exists")
    ] = False,
) -> None:
    """Write the prepared dataset with the suspects tagged 'confirmed' in the App fixed.

    Every split is written (only the reviewed one changes) in VOC, COCO or YOLO layout by
    FiftyOne's exporters, for `ssd prepare` to read as a new dataset.
    """
    cfg = get_config(params, set_)
    with reported():
        result = stages.audit_export(cfg, out, fmt, split, overwrite)
    typer.echo("\n".join(result.lines()))


# ----------------------------------------------------------------------------- summary


@app.command()
def summary(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """The headline figures of the last pipeline run, one screen (what `make run` ends with)."""
    cfg = get_config(params, set_)
    with reported():
        lines = stages.summary(cfg)
    typer.echo("\n".join(lines))


if __name__ == "__main__":  # pragma: no cover
    app()
