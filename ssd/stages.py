"""One function per stage: the only place ``params.yaml`` meets the library.

Each takes the typed :class:`~ssd.config.Config` and hands the library explicit
arguments; the library never sees a whole config. The command line (:mod:`ssd.cli`: parse,
call one of these, print) runs them, DVC runs them through the command line (one stage =
one ``ssd`` subcommand) and so does Prefect (one task = one DVC stage). Here the trackers
are assembled (``train``) and "detector + split -> detections" is composed once
(:func:`_detections`, for ``evaluate`` and ``audit``).

Each stage imports the layers it runs inside its body: the code a DVC stage depends on
(``dvc.yaml`` deps, checked by ``tests/test_dvc_yaml.py``) is then the code it runs, and
``ssd --help`` starts without torch.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ssd.config import RAW_ROOT, Config
from ssd.errors import ConfigError, EvaluationError, RegistryError, SSDError
from ssd.locks import output_lock

if TYPE_CHECKING:
    from ssd.audit.rank import AuditResult
    from ssd.data.prepare import PrepareResult
    from ssd.infer.predict import SplitDetections
    from ssd.train.loop import TrainResult

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def _split(name: str | None, default: str, option: str = "--split") -> str:
    split = name or default
    if split not in SPLITS:
        raise ConfigError(f"{option} must be one of {', '.join(SPLITS)}, got '{split}'")
    return split


def _one_source(model: str | Path | None, detections: str | Path | None) -> None:
    if model is not None and detections is not None:
        raise ConfigError("give one of --model PATH or --detections FILE, not both")


# ----------------------------------------------------------------------------- model


def info(cfg: Config) -> dict[str, Any]:
    """``ssd info``: the configured model's feature maps, default boxes and parameters, for
    the classes of the prepared dataset when there is one (what ``ssd train`` builds)."""
    from ssd.model.builder import describe_model

    classes = None
    try:
        names = json.loads((cfg.layout.prepared / "classes.json").read_text(encoding="utf-8"))
        classes = len(names) if isinstance(names, list) and names else None
    except (OSError, ValueError):
        pass  # not prepared yet: model.num_classes, or the builder's default
    return describe_model(cfg.model, cfg.model.num_classes or classes)


# ----------------------------------------------------------------------------- data


def prepare(cfg: Config) -> PrepareResult:
    """``ssd prepare``: the configured input (``data.source``, ``data.path``) into
    ``data/prepared/<name>/``."""
    from ssd.data.prepare import prepare_dataset

    with output_lock(cfg.layout.prepared):  # one prepare per dataset at a time
        try:
            return prepare_dataset(cfg.data)
        except OSError as err:  # writing data/prepared/<name>: disk full, a name too long
            raise SSDError(f"cannot write the prepared dataset: {err}") from None


def show_augmentations(
    cfg: Config, split: str = "train", n: int = 16, seed: int = 0, out: Path | None = None
) -> Path:
    """``ssd show-augmentations``: a PNG grid of augmented samples with their boxes."""
    from ssd.data.preview import write_augmentation_grid

    try:
        return write_augmentation_grid(
            cfg.layout.prepared,
            split,
            cfg.model.resolved_input_size,
            cfg.train.augment,
            out or cfg.layout.reports / "augmentations.png",
            n=n,
            seed=seed,
        )
    except (FileNotFoundError, ValueError) as err:
        raise SSDError(str(err)) from None


# ----------------------------------------------------------------------------- train


def train(cfg: Config, resume: bool = False, progress: bool = True) -> TrainResult:
    """``ssd train``, one run at a time on ``models/<data.name>`` (:func:`_train`)."""
    with output_lock(cfg.layout.models):
        return _train(cfg, resume, progress)


def _train(cfg: Config, resume: bool, progress: bool) -> TrainResult:
    """``ssd train`` with its trackers: MLflow (params, metrics, provenance tags, the
    prepared dataset as the run's input, the detector as a pyfunc model; the run id goes into
    the detector's folder so ``ssd register`` registers against this run) and dvclive.

    The MLflow run always ends: FINISHED, FAILED, or KILLED when SIGTERM / SIGINT stopped
    training (during training at a step boundary with a checkpoint, before or after it at
    once). Training never depends on a tracker: one that fails is warned about and dropped.
    """
    from ssd.data.prepared import PreparedSplit
    from ssd.errors import TrainingStopped
    from ssd.integrations.mlflow_tracking import (
        RUN_FILE,
        start_dvclive,
        start_mlflow_run,
    )
    from ssd.provenance import describe_run
    from ssd.train.distributed import elastic_restarts, end_group
    from ssd.train.loop import train as train_loop
    from ssd.train.runtime import StopSignals
    from ssd.train.tracking import fan_out

    rank0 = int(os.environ.get("RANK", "0")) == 0
    tracker = None
    live = None
    if cfg.tracking.dvclive and rank0:  # after a torchrun restart: append to the curves
        live = start_dvclive(cfg.layout.models / "live", resume or elastic_restarts() > 0)
    with StopSignals(deferred=False):  # train_loop() defers them to a step boundary
        if cfg.tracking.enabled and rank0:
            tags = {"dataset": cfg.data.name, "stage": "train"}
            if cfg.layout.prepared.is_dir():
                # None (git_commit outside a git checkout) fails a tracking server's REST call
                described = describe_run(cfg.layout.prepared)
                tags |= {k: "unknown" if v is None else v for k, v in described.items()}
            tracker = start_mlflow_run(
                cfg.tracking.tracking_uri, cfg.tracking.experiment, f"train-{cfg.data.name}", tags
            )
            if tracker is not None and "dataset_fingerprint" in tags:
                try:
                    tracker.log_dataset(
                        cfg.layout.prepared, cfg.data.name, tags["dataset_fingerprint"], "training"
                    )
                except Exception as err:  # tracking must not fail a training
                    log.warning("could not log the dataset input: %s", err)
        try:
            trackers = [t for t in (tracker, live) if t is not None]
            result = train_loop(cfg, fan_out(trackers) if trackers else None, resume, progress)
            run_file = result.model_dir / RUN_FILE
            if rank0:  # the other ranks' unlink raced rank 0's write of this run's file
                run_file.unlink(missing_ok=True)  # never a previous training's run
            if tracker is not None:
                run_file.write_text(json.dumps({"run_id": tracker.run_id}) + "\n", "utf-8")
                try:
                    from ssd.integrations.mlflow_model import TRAINED, log_detector_model

                    example = PreparedSplit.load(cfg.layout.prepared, "train").example_image()
                    uri = log_detector_model(
                        result.model_dir,
                        example,
                        name=TRAINED,
                        tags={
                            "ssd.note": "as trained, default postprocess settings; "
                            "`ssd register` registers the logged model 'registered'"
                        },
                    )
                    log.info("MLflow model: %s", uri)
                except Exception as err:  # tracking must not fail a training
                    log.warning("could not log the MLflow model: %s", err)
        except BaseException as err:
            if live is not None:
                live.end()
            if tracker is not None:
                stopped = isinstance(err, TrainingStopped | KeyboardInterrupt)
                tracker.end("KILLED" if stopped else "FAILED")
            raise
    if live is not None:
        live.end()
    if tracker is not None:
        tracker.end()
    end_group()  # under torchrun: no worker exits before rank 0 has written everything
    return result


# ----------------------------------------------------------------------------- evaluate


def _detections(
    cfg: Config,
    model: str | Path | None,
    split_name: str,
    device: str,
    batch_size: int,
    progress: bool = True,
) -> SplitDetections:
    """The detector (``model``, default ``models/<data.name>/ssd``) run with the
    ``postprocess`` settings on a prepared split: what evaluate and audit score."""
    from ssd.data.prepared import PreparedSplit
    from ssd.infer.predict import detect_split

    split = PreparedSplit.load(cfg.layout.prepared, split_name)
    return detect_split(
        model or cfg.layout.detector,
        split,
        cfg.postprocess,
        device=device,
        batch_size=batch_size,
        progress=progress,
    )


def evaluate(
    cfg: Config,
    model: str | Path | None = None,
    detections: str | Path | None = None,
    split: str | None = None,
    out_dir: str | Path | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """``ssd evaluate``: score ``model`` (default ``models/<data.name>/ssd``) or a COCO
    results file on ``split`` (default ``evaluate.split``) with the ``postprocess``
    settings; every report in ``reports/<data.name>/`` (or ``out_dir``)."""
    from ssd.data.prepared import PreparedSplit
    from ssd.evaluation.inputs import load_detections
    from ssd.evaluation.report import evaluate_detections

    _one_source(model, detections)
    e = cfg.evaluate
    split_name = _split(split, e.split)
    options: dict[str, Any] = {
        "backend": e.coco_backend,
        "sample_images": e.sample_images,
        "sample_score_threshold": e.sample_score_threshold,
        "coverage_iou": e.coverage_iou,
    }
    data = PreparedSplit.load(cfg.layout.prepared, split_name)
    out = Path(out_dir) if out_dir is not None else cfg.layout.reports
    with output_lock(out):
        try:
            if detections is not None:
                return evaluate_detections(data, load_detections(detections), out, **options)
            found = _detections(cfg, model, split_name, device or e.device, e.batch_size)
            return evaluate_detections(
                data,
                found.detections,
                out,
                priors=found.priors,
                images_per_second=found.images_per_second,
                postprocess=cfg.postprocess,
                **options,
            )
        except (ValueError, OSError) as err:  # e.g. a checkpoint that cannot be read
            if isinstance(err, SSDError):
                raise
            raise SSDError(f"evaluation failed: {err}") from None


def suggest_priors(
    cfg: Config, split: str = "train", out_dir: Path | None = None
) -> dict[str, Any]:
    """``ssd suggest-priors``: default-box scales and aspect ratios fitted to ``split``'s
    boxes, with the coverage they gain."""
    from ssd.evaluation.suggest import suggest_priors as fit

    try:
        return fit(
            cfg.model, cfg.layout.prepared, out_dir or cfg.layout.suggested_priors, fit_split=split
        )
    except ValueError as err:
        if isinstance(err, SSDError):
            raise
        raise SSDError(str(err)) from None


# ----------------------------------------------------------------------------- register


def register(cfg: Config) -> dict[str, Any]:
    """``ssd register``, one at a time on ``reports/<data.name>`` (:func:`_register`)."""
    with output_lock(cfg.layout.reports):
        return _register(cfg)


def _register(cfg: Config) -> dict[str, Any]:
    """``ssd register``: the detector of ``models/<data.name>/ssd`` with the metrics of
    ``reports/<data.name>/metrics.json`` into the MLflow registry (``champion`` moves on a
    gain); writes ``reports/<data.name>/registry.json``."""
    from ssd.data.prepared import PreparedSplit
    from ssd.evaluation.confusion import deploy_threshold
    from ssd.integrations.env import configure_offline_defaults
    from ssd.integrations.registry import Policy, register_detector, write_result

    configure_offline_defaults()
    metrics_path = cfg.layout.metrics
    if not cfg.tracking.enabled:
        result: dict[str, Any] = {
            "model_name": cfg.registered_model_name,
            "version": None,
            "champion": False,
            "model_uri": None,
            "reason": "tracking.enabled is false: nothing registered",
        }
        write_result(cfg.layout.registry, result)
        return result
    split_name: str = cfg.evaluate.split
    if cfg.layout.evaluation.is_file():  # the split evaluated (evaluate --split may differ)
        try:
            recorded = json.loads(cfg.layout.evaluation.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            recorded = None  # register_detector() says what is wrong with the metrics
        if isinstance(recorded, dict):
            split_name = str(recorded.get("split", split_name))
    try:
        split = PreparedSplit.load(cfg.layout.prepared, split_name)
        threshold = deploy_threshold(cfg.postprocess.detect_score_threshold, metrics_path)
    except ValueError as err:
        raise RegistryError(str(err)) from None
    postprocess = cfg.postprocess.model_dump(mode="json") | {"detect_score_threshold": threshold}
    t = cfg.tracking
    return register_detector(
        cfg.layout.detector,
        metrics_path,
        split,
        cfg.layout.registry,
        tracking_uri=t.tracking_uri,
        experiment=t.experiment,
        model_name=cfg.registered_model_name,
        policy=Policy(t.champion_metric, t.champion_min_delta, t.register_min, t.champion_min),
        postprocess=postprocess,
    )


# ----------------------------------------------------------------------------- inference


def resolve_model(cfg: Config, model: str | Path) -> Path:
    """A detector folder for ``--model``: a path as given, ``coco`` (TF's COCO-trained SSD,
    converted from its wheel on first use), or a registry URI ``models:/NAME@ALIAS`` /
    ``models:/NAME/VERSION`` downloaded from MLflow."""
    from ssd.integrations.registry_load import is_model_uri, resolve_detector
    from ssd.model.coco.convert import MODEL_NAME, ensure_converted

    if str(model) == MODEL_NAME and not Path(model).exists():
        return ensure_converted()
    if not is_model_uri(model):
        return Path(model)
    return resolve_detector(str(model), cfg.tracking.tracking_uri)


def detect(
    cfg: Config,
    model: str | Path,
    inputs: list[str],
    out: Path,
    *,
    batch_size: int = 8,
    device: str = "auto",
    fmt: Literal["json", "csv"] = "json",
    draw: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """``ssd detect``: detections (COCO results + file name) and drawings for image files,
    kept at ``postprocess.detect_score_threshold`` (``f1``: the last evaluation's)."""
    from ssd.evaluation.confusion import deploy_threshold
    from ssd.infer.detect import detect_paths
    from ssd.infer.detector import load_detector

    path = resolve_model(cfg, model)
    try:
        threshold = deploy_threshold(cfg.postprocess.detect_score_threshold, cfg.layout.metrics)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    settings = cfg.postprocess.model_copy(update={"detect_score_threshold": threshold})
    try:
        detector = load_detector(path, device, settings)
        found = detect_paths(
            detector, inputs, out, batch_size=batch_size, draw=draw, fmt=fmt, progress=progress
        )
        f1 = isinstance(cfg.postprocess.detect_score_threshold, str)
        return found | {"threshold_from": str(cfg.layout.metrics) if f1 else None}
    except (ValueError, RuntimeError, OSError) as err:  # an unknown device, an unwritable --out
        if isinstance(err, SSDError):
            raise
        raise SSDError(f"detection failed: {err}") from None


def export(
    cfg: Config, model: str | Path, fmt: Literal["onnx", "torchscript"], out: Path | None
) -> Path:
    """``ssd export``: network + box decoding to ONNX or TorchScript, with the class names,
    input size and ``postprocess`` settings as metadata; by default into
    ``exports/<data.name>/`` (``model.onnx`` for the configured detector, else named after
    ``model``), outside every DVC stage's outputs."""
    from ssd.infer.export import export_detector

    path = resolve_model(cfg, model)
    if out is None:
        given = Path(str(model))
        if given.suffix == ".safetensors":
            given = given.parent
        same = given.resolve() == cfg.layout.detector.resolve()
        stem = "model" if same else "".join(c if c.isalnum() else "-" for c in str(model))
        out = cfg.layout.exports / (stem.strip("-") + (".onnx" if fmt == "onnx" else ".pt"))
    try:
        return export_detector(path, fmt, out, cfg.postprocess)
    except OSError as err:  # an unwritable --out
        if isinstance(err, SSDError):
            raise
        raise SSDError(f"export failed: {err}") from None


# ----------------------------------------------------------------------------- audit


def audit(
    cfg: Config,
    model: str | Path | None = None,
    detections: str | Path | None = None,
    split: str | None = None,
    out_dir: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
) -> AuditResult:
    """``ssd audit``: rank the labels of ``split`` (default ``audit.split``) that ``model``
    (default ``models/<data.name>/ssd``, with the ``postprocess`` settings) or a COCO results
    file says are probably wrong; outputs in ``reports/<data.name>/`` (or ``out_dir``)."""
    from ssd.audit.report import audit_options, require_weak_detections, run_audit
    from ssd.data.prepared import PreparedSplit
    from ssd.evaluation.inputs import load_detections

    _one_source(model, detections)
    a = cfg.audit
    split_name = _split(split, a.split)
    data = PreparedSplit.load(cfg.layout.prepared, split_name)
    out = Path(out_dir) if out_dir is not None else cfg.layout.reports
    options = audit_options(a)
    report: dict[str, Any] = {
        "thumbnails_per_kind": a.thumbnails_per_kind,
        "grid_per_kind": a.grid_per_kind,
    }
    with output_lock(out):
        try:
            if detections is not None:
                return run_audit(data, load_detections(detections), out, options, **report)
            require_weak_detections(cfg.postprocess, options)
            found = _detections(cfg, model, split_name, device or a.device, a.batch_size, progress)
            return run_audit(
                data, found.detections, out, options, postprocess=cfg.postprocess, **report
            )
        except (ValueError, OSError) as err:  # e.g. a detector that cannot be read
            if isinstance(err, SSDError):
                raise
            raise SSDError(f"audit failed: {err}") from None


# ----------------------------------------------------------------------------- FiftyOne


@dataclass
class Browse:
    """What ``ssd browse`` built: the dataset and what to print about it."""

    dataset: Any  # fiftyone.Dataset
    error_counts: dict[str, int]
    audit_counts: dict[str, int] | None
    saved_views: list[str]
    view: str | None  # the view the App opens on
    confidence_threshold: float | None = None

    def lines(self) -> list[str]:
        ds = self.dataset
        errors = ", ".join(f"{k} {v}" for k, v in self.error_counts.items())
        floor = ds.info.get("min_confidence")
        left_out = ds.info.get("predictions_left_out") or 0
        loaded = f"predictions scoring >= {floor:g}" if floor is not None else "predictions"
        lines = [
            f"dataset {ds.name}: {len(ds)} images, {ds.count('predictions.detections')} "
            f"{loaded} ({left_out} lower ones left out); their errors: {errors}"
        ]
        if self.audit_counts is not None:
            lines.append(
                "label audit: "
                + ", ".join(f"{k} {v}" for k, v in self.audit_counts.items())
                + " suspects; tag them 'confirmed' or 'dismissed', then `ssd audit-export`"
            )
        return [*lines, "saved views: " + ", ".join(self.saved_views)]


def browse(
    cfg: Config,
    split: str | None = None,
    reports: Path | None = None,
    say: Callable[[str], None] | None = None,
) -> Browse:
    """``ssd browse``: build or update the FiftyOne dataset ``ssd-<data.name>-<split>`` from
    the prepared split and the reports of ``ssd evaluate`` (and of ``ssd audit``, when it
    audited this split: its suspects, with the review tags kept); ``say`` is told each
    step."""
    from ssd.audit.report import audited_split
    from ssd.integrations.env import configure_offline_defaults

    configure_offline_defaults()  # before FiftyOne is imported: state in .fiftyone/
    from ssd.integrations.fiftyone.audit import build_audit_dataset
    from ssd.integrations.fiftyone.browse import (
        CONFIDENT_VIEW,
        build_browse_dataset,
        error_type_counts,
    )

    split_name = _split(split, cfg.evaluate.split)
    reports_dir = reports or cfg.layout.reports
    if audited_split(reports_dir) == split_name:  # `ssd audit` ran on this split
        ds = build_audit_dataset(cfg.layout.prepared, split_name, reports_dir, reports_dir, say=say)
    else:
        ds = build_browse_dataset(cfg.layout.prepared, split_name, reports_dir, say=say)
    # An audit of a split `ssd evaluate` did not score has no F1 threshold: the whole dataset.
    threshold = ds.info.get("confidence_threshold")
    return Browse(
        ds,
        error_type_counts(ds),
        ds.info["audit"]["counts"] if "audit" in ds.info else None,
        list(ds.list_saved_views()),
        CONFIDENT_VIEW if threshold is not None else None,
        threshold,
    )


def serve_app(
    result: Browse, address: str, port: int, opened: Callable[[list[str]], None] | None = None
) -> None:
    """Serve the FiftyOne App on ``result``'s dataset until Ctrl-C; ``opened`` gets what to
    tell the user once it is up (its URL, the view it opens on)."""
    from ssd.integrations.fiftyone.browse import app_url, launch_app

    session = launch_app(result.dataset, address=address, port=port, view=result.view)
    url = app_url(result.dataset, address, port, result.view)
    lines = [f"FiftyOne App: {url}  (Ctrl-C to stop)"]
    if result.confidence_threshold is not None:
        lines.append(
            f"it opens on predictions with confidence >= {result.confidence_threshold:.2f} "
            "(the evaluation's F1-optimal threshold); the dataset itself holds every loaded one"
        )
    if opened is not None:
        opened(lines)
    try:
        session.wait(-1)
    except KeyboardInterrupt:
        pass
    finally:
        session.close()


@dataclass
class AuditExport:
    """What ``ssd audit-export`` wrote, and the commands that prepare it as a new dataset."""

    path: Path
    fmt: str
    split: str
    counts: dict[str, int]
    next_steps: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        kinds = ", ".join(f"{k} {n}" for k, n in self.counts.items())
        return [
            f"wrote {self.path} ({self.fmt}): {sum(self.counts.values())} confirmed fixes in "
            f"{self.split} ({kinds}); the list is in audit/fixes.json there",
            *self.next_steps,
        ]


def audit_export(
    cfg: Config,
    out: Path,
    fmt: str | None = None,
    split: str | None = None,
    overwrite: bool = False,
) -> AuditExport:
    """``ssd audit-export``: the prepared dataset with the suspects tagged ``confirmed`` in
    the App fixed, every split written in VOC, COCO or YOLO layout by FiftyOne's exporters,
    for ``ssd prepare`` to read as a new dataset."""
    from collections import Counter

    from ssd.integrations.env import configure_offline_defaults

    configure_offline_defaults()  # before FiftyOne is imported: state in .fiftyone/
    from ssd.integrations.fiftyone.audit import (
        EXPORT_FORMATS,
        confirmed_suspects,
        export_corrected,
        load_review_dataset,
    )

    split_name = _split(split, cfg.audit.split)
    source = cfg.data.source
    chosen = fmt or ("coco" if source == "synthetic" else source)
    if chosen not in EXPORT_FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got '{chosen}'")
    confirmed = confirmed_suspects(load_review_dataset(cfg.layout.prepared, split_name))
    if not confirmed:
        raise EvaluationError(
            "no suspect is tagged 'confirmed': review the audit in the App first "
            f"(ssd browse --split {split_name})"
        )
    try:
        written = export_corrected(
            cfg.layout.prepared, out, chosen, {split_name: confirmed}, overwrite=overwrite
        )
    except (ValueError, OSError) as err:
        if isinstance(err, SSDError):
            raise
        raise SSDError(str(err)) from None
    sets = [f"data.name={written.name}", f"data.source={chosen}"]
    if chosen == "voc":
        sets.append("data.names_file=classes.txt")  # keeps the class order
    if written.resolve().parent == RAW_ROOT.resolve():  # where DVC's prepare stage reads
        steps = [
            "next, as a new dataset (the old one stays as it is):",
            f"  dvc add {written}",
            f"  set {', '.join(sets)} in params.yaml, then dvc repro",
            "  (without DVC: ssd prepare " + " ".join(f"--set {s}" for s in sets) + ")",
        ]
    else:
        steps = [
            f"next: ssd prepare {' '.join(f'--set {s}' for s in sets)} --set data.path={written}",
            "  (the DVC pipeline reads data/raw/<data.name>: export there to version it)",
        ]
    counts = dict(Counter(s.kind for s in confirmed))
    return AuditExport(written, chosen, split_name, counts, steps)


# ----------------------------------------------------------------------------- summary


def summary(cfg: Config) -> list[str]:
    """``ssd summary``: the headline figures of the last pipeline run, one screen."""
    from ssd.evaluation.report import headline_line
    from ssd.evaluation.score import weak_model_note

    reports = cfg.layout.reports
    if not cfg.layout.evaluation.is_file():
        raise EvaluationError(f"{cfg.layout.evaluation} is missing; run the pipeline first")
    metrics = json.loads(cfg.layout.evaluation.read_text())
    lines = [f"dataset {cfg.data.name}, split {metrics.get('split', cfg.evaluate.split)}:"]
    lines.append("  " + headline_line(metrics))
    weak = weak_model_note(metrics.get("map50"))
    if weak is not None:
        lines.append(f"  note: {weak}")
    dap = metrics.get("errors", {}).get("dap", {})
    if dap:
        lines.append("  TIDE dAP50: " + "  ".join(f"{k} {100 * v:.1f}" for k, v in dap.items()))
    if cfg.layout.registry.is_file():
        r = json.loads(cfg.layout.registry.read_text())
        lines.append(f"  registry: {r['model_uri']} - {r['reason']}")
    if cfg.layout.audit.is_file():
        found = json.loads(cfg.layout.audit.read_text())
        counts = ", ".join(f"{k} {n}" for k, n in found["counts"].items())
        lines.append(f"  label audit of {found['split']}: {counts} ({reports / 'audit'})")
    lines += [
        f"  metrics {cfg.layout.metrics}, plots {reports / 'plots'}, "
        f"error labels {reports / 'errors'}, detector {cfg.layout.detector}",
        "  next: make browse (FiftyOne), make mlflow-ui, dvc metrics show, dvc plots show",
        "  keep this run as the baseline of your experiments (DVC staged its files):\n"
        "    git commit -m 'pipeline run'    # then: dvc exp run -S train.lr=0.01; dvc exp show",
    ]
    return lines
