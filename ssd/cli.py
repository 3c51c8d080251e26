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

from ssd.config import Config, load_config
from ssd.errors import ConfigError

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
    from ssd.errors import ModelError
    from ssd.model.builder import describe_model

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
    from ssd.data.prepare import prepare_dataset
    from ssd.errors import DataError

    cfg = get_config(params, set_)
    try:
        result = prepare_dataset(cfg.data)
    except (DataError, ConfigError) as err:
        fail(str(err))
        return
    except OSError as err:  # writing data/prepared/<name>: disk full, a name too long
        fail(f"cannot write the prepared dataset: {err}")
        return
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
    from ssd.data.preview import write_augmentation_grid
    from ssd.errors import DataError

    cfg = get_config(params, set_)
    try:
        path = write_augmentation_grid(
            cfg.layout.prepared,
            split,
            cfg.model.resolved_input_size,
            cfg.train.augment,
            out or cfg.layout.reports / "augmentations.png",
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
        Path | None,
        typer.Option("--model", help="detector to run (default: models/<data.name>/ssd)"),
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
        Path | None,
        typer.Option("--out", help="report folder (default: reports/<data.name>)"),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda, cuda:N (default: evaluate.device)")
    ] = None,
) -> None:
    """Score a model (--model) or a detection file (--detections) on a prepared split.

    Writes metrics.json (COCO, VOC, TIDE errors, default-box coverage), pr_curves.csv,
    per-object error labels, plots and the worst images drawn.
    """
    from ssd.data.prepared import SPLITS
    from ssd.errors import DataError, EvaluationError, ModelError, WeightsError
    from ssd.evaluation.run import evaluate_from_config

    if model is not None and detections is not None:
        fail("give one of --model PATH or --detections FILE, not both")
    cfg = get_config(params, set_)
    split_name = split or cfg.evaluate.split
    if split_name not in SPLITS:
        fail(f"--split must be one of {', '.join(SPLITS)}, got '{split_name}'")
    out_dir = out or cfg.layout.reports
    try:
        metrics = evaluate_from_config(cfg, model, detections, split_name, out_dir, device)
    except (EvaluationError, DataError, ConfigError, WeightsError, ModelError) as err:
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
    typer.echo(
        f"best F1 {metrics['f1']:.3f} at score threshold {metrics['f1_threshold']:.2f} "
        f"(precision {metrics['precision_at_f1']:.3f}, recall {metrics['recall_at_f1']:.3f}); "
        "deploy it with: ssd detect --score-threshold f1"
    )
    if metrics["prior_coverage"] is not None:
        typer.echo(f"default boxes cover (IoU≥0.5) {_percent(metrics['prior_coverage'])} % of GT")
    if metrics["images_per_second"] is not None:
        typer.echo(f"inference {metrics['images_per_second']:.1f} images/s")
    for reason, count in metrics["rejected_detections"]["by_reason"].items():
        typer.secho(f"rejected {count} detections: {reason}", fg=typer.colors.YELLOW, err=True)
    if metrics["num_detections_past_border"]:
        typer.echo(
            f"{metrics['num_detections_past_border']} detections reach past the image border "
            "(scored as given, as pycocotools does)"
        )
    typer.echo(f"wrote {out_dir}/metrics.json")


@app.command("suggest-priors")
def suggest_priors_command(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    split: Annotated[str, typer.Option("--split", help="split to fit on")] = "train",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="folder for suggested_priors.json (default: reports/<name>)"),
    ] = None,
) -> None:
    """Fit default-box scales and aspect ratios to the training boxes; show the coverage gain."""
    from ssd.errors import DataError, EvaluationError
    from ssd.evaluation.suggest import suggest_priors

    cfg = get_config(params, set_)
    out_dir = out or cfg.layout.reports
    try:
        report = suggest_priors(cfg.model, cfg.layout.prepared, out_dir, fit_split=split)
    except (EvaluationError, DataError, ConfigError, ValueError) as err:
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


# ---- training commands (ssd/train/loop.py)
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

    from ssd.errors import DataError, ModelError, TrainingError, TrainingStopped, WeightsError
    from ssd.integrations.env import configure_offline_defaults
    from ssd.integrations.mlflow_tracking import tracked_train

    configure_offline_defaults()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = get_config(params, set_)

    try:
        result = tracked_train(cfg, resume=resume, progress=not no_progress)
    except TrainingStopped as err:  # exit status as if the signal had ended the process
        fail(str(err), code=128 + err.signum)
        return
    except (TrainingError, ModelError, WeightsError, DataError, FileNotFoundError) as err:
        fail(str(err), code=1)
        return
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(
            f"trained {result.steps} steps in {result.seconds:.0f} s; "
            f"detector in {result.model_dir}"
            + (f" (best val mAP in {result.best_dir})" if result.best_dir else "")
        )
        if result.final_metrics:
            typer.echo(
                "validation: " + ", ".join(f"{k}={v:.4f}" for k, v in result.final_metrics.items())
            )


@app.command("register")
def register_cmd(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Register the trained detector in the MLflow registry; move 'champion' if it is better."""
    import logging

    from ssd.errors import RegistryError
    from ssd.integrations.env import configure_offline_defaults
    from ssd.integrations.registry import register_from_config

    configure_offline_defaults()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = get_config(params, set_)
    try:
        result = register_from_config(cfg)
    except RegistryError as err:
        fail(str(err), code=1)
        return
    if result["model_uri"] is None:
        typer.echo(result["reason"])
    else:
        typer.echo(f"registered {result['model_uri']}: {result['reason']}")
    typer.echo(f"wrote {cfg.layout.registry}")


# ---- end of training commands


# ---- inference commands (ssd/infer/detect.py, ssd/infer/export.py)
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        help="detector folder (model.safetensors + model.json), its .safetensors file, "
        "or a registry URI models:/NAME@ALIAS or models:/NAME/VERSION",
    ),
]


def _local_detector(model: str, cfg: Config) -> Path:
    """The detector path for --model, downloading a models:/ URI from the MLflow registry."""
    from ssd.errors import RegistryError
    from ssd.integrations.registry_load import is_model_uri, resolve_detector

    if not is_model_uri(model):
        return Path(model)
    try:
        return resolve_detector(model, cfg.tracking.tracking_uri)
    except RegistryError as err:
        fail(str(err))
        raise  # unreachable, for type checkers


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
    from ssd.errors import DetectError, ModelError, WeightsError
    from ssd.infer.detect import detect_paths
    from ssd.infer.detector import load_detector

    if fmt not in ("json", "csv"):
        fail(f"--format must be json or csv, got '{fmt}'")
    from ssd.evaluation.confusion import deploy_threshold

    overrides = list(set_ or [])
    if score_threshold is not None:
        overrides.append(f"postprocess.detect_score_threshold={score_threshold}")
    cfg = get_config(params, overrides)
    path = _local_detector(model, cfg)
    try:
        threshold = deploy_threshold(cfg.postprocess.detect_score_threshold, cfg.layout.metrics)
    except ValueError as err:
        fail(str(err))
        return
    settings = cfg.postprocess.model_copy(update={"detect_score_threshold": threshold})
    try:
        detector = load_detector(path, device, settings)
        summary = detect_paths(
            detector,
            inputs,
            out,
            batch_size=batch_size,
            draw=not no_draw,
            fmt="csv" if fmt == "csv" else "json",
            progress=not no_progress,
        )
    except (DetectError, WeightsError, ModelError) as err:
        fail(str(err))
        return
    except (ValueError, RuntimeError, OSError) as err:  # an unknown device, an unwritable --out
        fail(f"detection failed: {err}")
        return
    for item in summary["skipped"]:
        typer.secho(
            f"skipped {item['file_name']}: {item['reason']}", fg=typer.colors.YELLOW, err=True
        )
    speed = summary["images_per_second"]
    typer.echo(
        f"{summary['num_images']} images, {summary['num_detections']} detections, "
        f"{summary['num_skipped']} skipped" + (f" ({speed:.1f} images/s)" if speed else "")
    )
    typer.echo(f"wrote {out / summary['detections_file']} and {out / 'summary.json'}")
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
            help="file to write (default: model.onnx / model.torchscript.pt next to the detector)",
        ),
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Export network + box decoding to ONNX or TorchScript (NMS left to the caller).

    The file carries the class names, input size and post-processing settings (the
    postprocess section of --params / --set) as metadata; see ssd/infer/export.py for the inputs,
    outputs and the reference post-processing.
    """
    from ssd.errors import ExportError, ModelError, WeightsError
    from ssd.infer.export import FORMATS, export_detector

    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    cfg = get_config(params, set_)
    path = _local_detector(model, cfg)
    try:
        written = export_detector(
            path, "onnx" if fmt == "onnx" else "torchscript", out, cfg.postprocess
        )
    except (ExportError, WeightsError, ModelError) as err:
        fail(str(err))
        return
    except OSError as err:  # an unwritable --out
        fail(f"export failed: {err}")
        return
    typer.echo(f"wrote {written} ({written.stat().st_size / 1e6:.1f} MB)")


# ---- end of inference commands


# ---- browse command (ssd/integrations/fiftyone/browse.py)
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
    from ssd.audit.report import audited_split
    from ssd.data.prepared import SPLITS
    from ssd.errors import DataError, EvaluationError
    from ssd.integrations.env import configure_offline_defaults

    configure_offline_defaults()  # before FiftyOne is imported: state in .fiftyone/
    from ssd.errors import BrowseError
    from ssd.integrations.fiftyone.audit import build_audit_dataset
    from ssd.integrations.fiftyone.browse import (
        app_url,
        build_browse_dataset,
        error_type_counts,
        launch_app,
    )

    cfg = get_config(params, set_)
    split_name = split or cfg.evaluate.split
    if split_name not in SPLITS:
        fail(f"--split must be one of {', '.join(SPLITS)}, got '{split_name}'")
    reports_dir = reports or cfg.layout.reports
    try:
        if audited_split(reports_dir) == split_name:  # `ssd audit` ran on this split
            ds = build_audit_dataset(
                cfg.layout.prepared, split_name, reports_dir, reports_dir=reports_dir
            )
        else:
            ds = build_browse_dataset(cfg.layout.prepared, split_name, reports_dir)
    except (BrowseError, DataError, EvaluationError) as err:
        fail(str(err))
        return
    counts = error_type_counts(ds)
    typer.echo(
        f"dataset {ds.name}: {len(ds)} images; errors "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
    )
    if "audit" in ds.info:
        audit_counts = ds.info["audit"]["counts"]
        typer.echo(
            "label audit: "
            + ", ".join(f"{k} {v}" for k, v in audit_counts.items())
            + " suspects; tag them 'confirmed' or 'dismissed', then `ssd audit-export`"
        )
    typer.echo("saved views: " + ", ".join(ds.list_saved_views()))
    if no_launch:
        return
    from ssd.integrations.fiftyone.browse import CONFIDENT_VIEW

    # An audit of a split `ssd evaluate` did not score has no F1 threshold: the whole dataset.
    view = CONFIDENT_VIEW if "confidence_threshold" in ds.info else None
    session = launch_app(ds, address=address, port=port, view=view)
    typer.echo(f"FiftyOne App: {app_url(ds, address, port, view)}  (Ctrl-C to stop)")
    if view is not None:
        typer.echo(
            f"it opens on predictions with confidence >= {ds.info['confidence_threshold']:.2f}, "
            "every prediction is in the dataset itself"
        )
    try:
        session.wait(-1)
    except KeyboardInterrupt:
        pass
    finally:
        session.close()


# ---- end of browse command


# ---- label audit commands (ssd/audit/rank*.py, ssd/integrations/fiftyone/audit.py)
@app.command()
def audit(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    model: Annotated[
        Path | None,
        typer.Option("--model", help="detector to run (default: models/<data.name>/ssd)"),
    ] = None,
    detections: Annotated[
        Path | None,
        typer.Option(
            "--detections",
            help="COCO results JSON [{image_id, category_id, bbox: [x,y,w,h], score}], low "
            "scores included, to audit with instead of running a model",
        ),
    ] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="train, val or test (default: audit.split)")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="report folder (default: reports/<data.name>)"),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda, cuda:N (default: audit.device)")
    ] = None,
) -> None:
    """Rank the labels a detector says are probably wrong: missing, wrong class, loose, spurious.

    Writes audit.json, audit.csv, crops of the top suspects and a grid
    (audit/top_suspects.png). Review them in the App (`ssd browse`), then `ssd audit-export`.
    """
    from ssd.audit.report import audit_from_config, audit_summary
    from ssd.data.prepared import SPLITS
    from ssd.errors import DataError, EvaluationError

    if model is not None and detections is not None:
        fail("give one of --model PATH or --detections FILE, not both")
    cfg = get_config(params, set_)
    split_name = split or cfg.audit.split
    if split_name not in SPLITS:
        fail(f"--split must be one of {', '.join(SPLITS)}, got '{split_name}'")
    out_dir = out or cfg.layout.reports
    try:
        result = audit_from_config(cfg, model, detections, split_name, out_dir, device)
    except (EvaluationError, DataError, ConfigError) as err:
        fail(str(err))
        return
    except (ValueError, OSError) as err:  # e.g. a detector that cannot be read
        fail(f"audit failed: {err}")
        return
    typer.echo(audit_summary(result, out_dir))
    if split_name == "train":
        typer.secho(
            "note: a model audits the split it was trained on too kindly (it learnt those "
            "labels, mistakes included); val or test give a fairer list",
            fg=typer.colors.YELLOW,
            err=True,
        )
    typer.echo(
        f"next: ssd browse --split {split_name} (tag suspects 'confirmed' or 'dismissed'), "
        "then ssd audit-export --out data/raw/<new name>"
    )


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
        typer.Option(
            "--format",
            help="voc, coco or yolo (default: data.source; synthetic: coco)",
        ),
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
    from collections import Counter

    from ssd.config import RAW_ROOT
    from ssd.data.prepared import SPLITS
    from ssd.errors import DataError
    from ssd.integrations.env import configure_offline_defaults

    configure_offline_defaults()  # before FiftyOne is imported: state in .fiftyone/
    from ssd.errors import BrowseError
    from ssd.integrations.fiftyone.audit import (
        EXPORT_FORMATS,
        confirmed_suspects,
        export_corrected,
        load_review_dataset,
    )

    cfg = get_config(params, set_)
    split_name = split or cfg.audit.split
    if split_name not in SPLITS:
        fail(f"--split must be one of {', '.join(SPLITS)}, got '{split_name}'")
    source = cfg.data.source
    chosen = fmt or ("coco" if source == "synthetic" else source)
    if chosen not in EXPORT_FORMATS:
        fail(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got '{chosen}'")
    try:
        confirmed = confirmed_suspects(load_review_dataset(cfg.layout.prepared, split_name))
    except (BrowseError, DataError) as err:
        fail(str(err))
        return
    if not confirmed:
        fail(
            "no suspect is tagged 'confirmed': review the audit in the App first "
            f"(ssd browse --split {split_name})"
        )
    try:
        written = export_corrected(
            cfg.layout.prepared, out, chosen, {split_name: confirmed}, overwrite=overwrite
        )
    except (DataError, ValueError, OSError) as err:
        fail(str(err))
        return
    kinds = Counter(s.kind for s in confirmed)
    typer.echo(
        f"wrote {written} ({chosen}): {len(confirmed)} confirmed fixes in {split_name} ("
        + ", ".join(f"{k} {n}" for k, n in kinds.items())
        + "); the list is in audit/fixes.json there"
    )
    sets = [f"data.name={written.name}", f"data.source={chosen}"]
    if chosen == "voc":
        sets.append("data.names_file=classes.txt")  # keeps the class order
    if written.resolve().parent == RAW_ROOT.resolve():  # where DVC's prepare stage reads
        typer.echo(
            "next, as a new dataset (the old one stays as it is):\n"
            f"  dvc add {written}\n"
            f"  set {', '.join(sets)} in params.yaml, then dvc repro\n"
            "  (without DVC: ssd prepare " + " ".join(f"--set {s}" for s in sets) + ")"
        )
    else:
        typer.echo(
            f"next: ssd prepare {' '.join(f'--set {s}' for s in sets)} --set data.path={written}"
            f"\n  (the DVC pipeline reads data/raw/<data.name>: export there to version it)"
        )


# ---- end of label audit commands


# ---------------------------------------------------------------- (more subcommands below)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
