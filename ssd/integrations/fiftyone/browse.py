"""Browse the evaluation's errors in the FiftyOne App (``ssd browse``).

:func:`build_browse_dataset` turns a prepared split and the reports of ``ssd evaluate`` into
a persistent FiftyOne dataset named ``ssd-<data.name>-<split>``:

* ``ground_truth`` and ``predictions``: :class:`fiftyone.core.labels.Detections` with
  boxes ``[x, y, w, h]`` relative to the image size (FiftyOne's format); predictions carry
  ``confidence``, ground truth ``difficult``.
* FiftyOne's own ``evaluate_detections`` (COCO-style matching at IoU 0.5, eval key
  ``eval``): per object ``eval`` = ``tp`` / ``fp`` / ``fn``, ``eval_id``, ``eval_iou``.
* ``error_type`` per object, from the TIDE labels that ``ssd evaluate`` wrote to
  ``errors/detections.json`` and ``errors/ground_truth.json``
  (:mod:`ssd.evaluation.tide`): ``classification``, ``localization``, ``both``,
  ``duplicate``, ``background`` on predictions, ``missed`` on ground truth, ``none`` for a
  true positive, ``not_scored`` for a prediction past the 100-per-image cap. A ground-truth
  box that a ``classification`` / ``localization`` error would have found carries that
  type too. Counting ``error_type`` on predictions for the first five types and on ground
  truth for ``missed`` gives ``metrics.json``'s ``errors.counts``. Every error is also a
  label tag ``error:<type>``, so the App's tag filter shows one type in one click.
* ``size`` per object: ``small`` / ``medium`` / ``large`` by COCO's area bounds (box area in
  pixels², :func:`ssd.data.prepared.size_of`).
* Saved views: :data:`SAVED_VIEWS` (FiftyOne's evaluation patches among them), and
  :data:`CONFIDENT_VIEW`, which ``ssd browse`` opens: the predictions at or above the
  evaluation's F1-optimal threshold.
* Only the predictions scoring ``min_confidence`` (:data:`MIN_CONFIDENCE`, 0.1) or more are
  loaded: mAP needs the ~200 detections per image down to 0.01, which ``ssd evaluate``
  scored and ``reports/`` keep, but nobody browses them, and FiftyOne's evaluation slows
  with the square of the labels on a sample (the default test split's 22,530 detections
  kept ``ssd browse`` ~20 minutes in ``evaluate_detections``; its 943 above 0.1, seconds).
  ``ds.info`` says how many were left out; FiftyOne's own ``eval`` (and its mAP) is of the
  loaded ones, ``metrics.json`` of all.
* The objects' extra attributes (``error_type``, ``size``, ``tide_iou``, ...) are declared
  on the dataset, so the App's sidebar filters on them.

Re-running replaces the samples, the evaluation and these saved views; views the user saved
in the App are kept. :func:`launch_app` serves the App on 127.0.0.1 by default.

FiftyOne reads its settings when imported: call
:func:`ssd.integrations.env.configure_offline_defaults` first (the CLI does) so that its
database and files live in ``<project>/.fiftyone`` and nothing is tracked.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import fiftyone as fo
from fiftyone import ViewField as F

from ssd.data.prepared import PreparedSplit, annotation_area, size_of
from ssd.errors import BrowseError
from ssd.integrations.fiftyone.convert import coco_samples

EVAL_KEY = "eval"
IOU = 0.5
HIGH_CONFIDENCE = 0.5
DEFAULT_CONFIDENCE = 0.3  # the default view's cut when the evaluation has no F1 threshold
# Predictions below this are not loaded (see the module doc); the label audit's
# background_score (0.1) is the lowest score any of its rankings or mistakenness uses.
MIN_CONFIDENCE = 0.1

# TIDE's short labels (ssd.evaluation.tide) -> the names shown in the App.
ERROR_TYPE_NAMES: dict[str, str] = {
    "tp": "none",
    "cls": "classification",
    "loc": "localization",
    "both": "both",
    "dupe": "duplicate",
    "bkg": "background",
    "miss": "missed",
    "beyond_max_dets": "not_scored",
}
ERROR_TYPES: tuple[str, ...] = (
    "classification",
    "localization",
    "both",
    "duplicate",
    "background",
    "missed",
)


def dataset_name(prepared_dir: str | Path, split: str) -> str:
    """``ssd-<data.name>-<split>``: the prepared folder's name is ``data.name``."""
    return f"ssd-{Path(prepared_dir).resolve().name}-{split}"


def _high_confidence_false_positives(ds: fo.Dataset) -> fo.DatasetView:
    """Each false positive with confidence ≥ 0.5 as its own patch, most confident first."""
    fps = ds.filter_labels(
        "predictions", (F(EVAL_KEY) == "fp") & (F("confidence") >= HIGH_CONFIDENCE)
    )
    return fps.to_patches("predictions").sort_by("predictions.confidence", reverse=True)


def _missed_small_objects(ds: fo.Dataset) -> fo.DatasetView:
    """Small ground-truth boxes no detection found (FiftyOne ``fn``), with all predictions."""
    return ds.filter_labels("ground_truth", (F(EVAL_KEY) == "fn") & (F("size") == "small"))


def _localization_errors(ds: fo.Dataset) -> fo.DatasetView:
    """Predictions of the right class whose box overlaps its object too little (0.1–0.5)."""
    return ds.filter_labels("predictions", F("error_type") == "localization")


def _class_confusions(ds: fo.Dataset) -> fo.DatasetView:
    """Predictions on an object (IoU ≥ 0.5) with the wrong class."""
    return ds.filter_labels("predictions", F("error_type") == "classification")


def _evaluation_patches(ds: fo.Dataset) -> fo.DatasetView:
    """FiftyOne's own evaluation patches: every TP pair, FP and FN as a patch (``eval``)."""
    return ds.to_evaluation_patches(EVAL_KEY)


SAVED_VIEWS: dict[str, tuple[str, Callable[[fo.Dataset], fo.DatasetView]]] = {
    "high-confidence-false-positives": (
        "False positives with confidence >= 0.5, one patch each, most confident first",
        _high_confidence_false_positives,
    ),
    "missed-small-objects": (
        "Small ground-truth objects (area < 32^2 px) that no detection found",
        _missed_small_objects,
    ),
    "localization-errors": (
        "Detections of the right class with IoU 0.1-0.5 to their object (TIDE loc)",
        _localization_errors,
    ),
    "class-confusions": (
        "Detections on an object (IoU >= 0.5) with the wrong class (TIDE cls)",
        _class_confusions,
    ),
    "evaluation-patches": (
        "FiftyOne's evaluation patches: each true positive, false positive and miss (IoU 0.5)",
        _evaluation_patches,
    ),
}
# The view `ssd browse` opens: predictions at or above the evaluation's F1-optimal threshold
# (every loaded prediction, down to MIN_CONFIDENCE, is in the dataset, one click away:
# choose the dataset itself in the view menu, or any other saved view).
CONFIDENT_VIEW = "confident-predictions"


# Field colours the App draws with: light, saturated ones that read on the synthetic set's
# dark shapes and on BCCD's pink cells (FiftyOne's pool gave the predictions navy, lost on
# dark shapes). Ground truth and predictions differ in hue; the audit's suspects stand out.
FIELD_COLORS = {"ground_truth": "#00e676", "predictions": "#ffd600", "audit": "#ff4081"}


def color_scheme() -> fo.ColorScheme:
    """The dataset's App colours: one per field (:data:`FIELD_COLORS`), labels shown."""
    return fo.ColorScheme(
        color_by="field",
        fields=[{"path": path, "fieldColor": color} for path, color in FIELD_COLORS.items()],
        show_skeletons=True,
    )


def confident_predictions(ds: fo.Dataset, threshold: float) -> fo.DatasetView:
    """All samples, with only the predictions scoring at least ``threshold`` shown."""
    return ds.filter_labels("predictions", F("confidence") >= threshold, only_matches=False)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise BrowseError(
            f"{path} is missing; run `ssd evaluate` first (or pass --reports DIR where it wrote)"
        )
    return json.loads(path.read_text())


def _tags(error_type: str) -> list[str]:
    return [f"error:{error_type}"] if error_type in ERROR_TYPES else []


def _build_samples(
    prepared_dir: Path, split: str, reports_dir: Path, min_confidence: float = 0.0
) -> tuple[list[fo.Sample], list[str], dict[str, Any], int]:
    """Samples with ground truth and the predictions scoring ``min_confidence`` or more; the
    class names; the metrics; how many predictions were left out."""
    data = PreparedSplit.load(prepared_dir, split)
    metrics = _read_json(reports_dir / "evaluation.json")
    if metrics.get("split") != split:
        raise BrowseError(
            f"{reports_dir}/evaluation.json is for split '{metrics.get('split')}', not '{split}'; "
            f"run `ssd evaluate --split {split}` or pass --split {metrics.get('split')}"
        )
    det_rows: dict[str, dict[str, Any]] = _read_json(reports_dir / "errors" / "detections.json")
    gt_rows: dict[str, dict[str, Any]] = _read_json(reports_dir / "errors" / "ground_truth.json")
    image_ids = {img["id"] for img in data.images}
    for ann in data.annotations:
        if str(ann["id"]) not in gt_rows:
            raise BrowseError(
                f"annotation {ann['id']} of {prepared_dir}/{split}.json is not in "
                f"{reports_dir}/errors/ground_truth.json; the reports are from another "
                "dataset: run `ssd evaluate` again"
            )
    detections = []
    left_out = 0
    for index, row in det_rows.items():
        if row["label"] == "rejected":  # invalid box: nothing to draw (see metrics.json)
            continue
        if float(row["score"]) < min_confidence:
            left_out += 1
            continue
        if row["image_id"] not in image_ids:
            raise BrowseError(
                f"detection {index} in {reports_dir}/errors/detections.json refers to image "
                f"{row['image_id']}, which {prepared_dir}/{split}.json does not have; "
                "run `ssd evaluate` again"
            )
        detections.append((int(index), row))

    def gt_attrs(ann: Mapping[str, Any]) -> dict[str, Any]:
        row = gt_rows[str(ann["id"])]
        error_type = ERROR_TYPE_NAMES.get(row["label"], row["label"])
        return {
            "annotation_id": int(ann["id"]),
            "error_type": error_type,
            "size": row.get("size") or size_of(annotation_area(dict(ann))),
            "tags": _tags(error_type),
        }

    def det_attrs(index: Any, row: Mapping[str, Any]) -> dict[str, Any]:
        error_type = ERROR_TYPE_NAMES.get(row["label"], row["label"])
        return {
            "detection_index": index,
            "error_type": error_type,
            "tide_iou": row.get("iou"),
            "size": size_of(float(row["bbox"][2]) * float(row["bbox"][3])),
            "tags": _tags(error_type),
        }

    samples = coco_samples(
        prepared_dir,
        data.images,
        data.class_names,
        data.annotations,
        detections,
        gt_attrs=gt_attrs,
        det_attrs=det_attrs,
    )
    for sample in samples:
        objects = sample.ground_truth.detections + sample.predictions.detections
        found = {d.error_type for d in objects} & set(ERROR_TYPES)
        sample.tags = sorted(f"error:{t}" for t in found)
    return samples, data.class_names, metrics, left_out


def build_browse_dataset(
    prepared_dir: str | Path,
    split: str,
    reports_dir: str | Path,
    name: str | None = None,
    classwise: bool = True,
    min_confidence: float = MIN_CONFIDENCE,
    say: Callable[[str], None] | None = None,
) -> fo.Dataset:
    """Build or update the persistent dataset for browsing one evaluated split.

    Args:
        prepared_dir: ``data/prepared/<name>`` (``cfg.data.prepared_dir``).
        split: the split ``ssd evaluate`` scored (``metrics.json``'s ``split``).
        reports_dir: where ``ssd evaluate`` wrote ``metrics.json`` and ``errors/``.
        name: dataset name; default :func:`dataset_name`.
        classwise: FiftyOne matches predictions only to ground truth of their class (COCO's
            rule, so its ``tp``/``fp``/``fn`` agree with ``metrics.json``); ``False`` lets
            a wrong-class prediction take an object, which fills FiftyOne's confusion matrix.
        min_confidence: predictions scoring less are not loaded (their number is in
            ``ds.info["predictions_left_out"]``).
        say: told what is being done, step by step (FiftyOne's progress bars show the rest).

    Returns:
        The dataset, with the samples, the evaluation ``eval`` and :data:`SAVED_VIEWS`.

    Raises:
        BrowseError: the reports are missing or belong to another split or dataset.
        ssd.evaluation.EvaluationError: the prepared split is missing or empty.
    """
    prepared = Path(prepared_dir).resolve()
    reports = Path(reports_dir)
    tell = say or (lambda _: None)
    samples, names, metrics, left_out = _build_samples(prepared, split, reports, min_confidence)
    name = name or dataset_name(prepared, split)
    loaded = sum(len(s.predictions.detections) for s in samples)
    tell(
        f"loading {len(samples)} images and the {loaded} predictions scoring "
        f">= {min_confidence:g} into FiftyOne ({left_out} lower ones left out: "
        "mAP in metrics.json counts them, nobody browses them)"
    )

    if fo.dataset_exists(name):
        ds = fo.load_dataset(name)
        if EVAL_KEY in ds.list_evaluations():
            ds.delete_evaluation(EVAL_KEY)
        ds.clear()  # samples go; the user's own saved views stay
    else:
        ds = fo.Dataset(name)
    ds.persistent = True
    ds.default_classes = names
    ds.app_config.color_scheme = color_scheme()
    ds.add_samples(samples, progress=None)  # None: FiftyOne's setting (bars in a terminal)
    tell(f"FiftyOne's evaluate_detections (eval key '{EVAL_KEY}') on the loaded predictions")
    ds.evaluate_detections(
        "predictions",
        gt_field="ground_truth",
        eval_key=EVAL_KEY,
        iou=IOU,
        classwise=classwise,
        compute_mAP=True,
        progress=None,
    )
    # Declare the attributes we added to every object (error_type, size, tide_iou, ...) so the
    # App lists them in its sidebar and can filter on them.
    ds.add_dynamic_sample_fields()
    for view_name, (description, make) in SAVED_VIEWS.items():
        ds.save_view(view_name, make(ds), description=description, overwrite=True)
    threshold = float(metrics.get("f1_threshold") or DEFAULT_CONFIDENCE)
    ds.save_view(
        CONFIDENT_VIEW,
        confident_predictions(ds, threshold),
        description=f"Predictions with confidence >= {threshold:.2f} (the evaluation's "
        f"F1-optimal threshold); the dataset itself has those >= {min_confidence:g}",
        overwrite=True,
    )
    ds.info = {
        "prepared_dir": str(prepared),
        "split": split,
        "reports_dir": str(reports.resolve()),
        "error_counts": metrics.get("errors", {}).get("counts", {}),
        "map50": metrics.get("map50"),
        "map": metrics.get("map"),
        "confidence_threshold": threshold,
        "min_confidence": min_confidence,
        "predictions_left_out": left_out,
    }
    ds.save()
    return ds


def error_type_counts(ds: fo.Dataset) -> dict[str, int]:
    """Errors per TIDE type, counted as ``metrics.json`` counts them (see the module doc)."""
    pred = Counter(ds.values("predictions.detections.error_type", unwind=True))
    gt = Counter(ds.values("ground_truth.detections.error_type", unwind=True))
    return {t: (gt if t == "missed" else pred)[t] for t in ERROR_TYPES}


def app_url(
    ds: fo.Dataset, address: str = "127.0.0.1", port: int = 5151, view: str | None = None
) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}/datasets/{ds.name}" + (f"?view={view}" if view else "")


def launch_app(
    ds: fo.Dataset, address: str = "127.0.0.1", port: int = 5151, view: str | None = None
) -> fo.Session:
    """Serve the App for ``ds`` (opened on the saved view ``view``, if given) on
    ``address:port`` without opening a browser.

    The server (and the database) stop when this process ends; ``session.wait(-1)`` keeps
    it running until Ctrl-C. FiftyOne's banner and its SSH port-forwarding advice for
    "remote" sessions are not printed; the caller prints :func:`app_url`.
    """
    names = ("fiftyone.core.session.session", "fiftyone.core.service")
    quiet = [logging.getLogger(n) for n in names]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.WARNING)
    try:
        _start_server_first(address, port)
        shown = ds.load_saved_view(view) if view else ds
        return fo.launch_app(shown, address=address, port=port, remote=True, auto=False)
    finally:
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)


def _start_server_first(address: str, port: int) -> None:
    """Start the App server and wait until it answers, before the session connects.

    fiftyone 1.22's ``launch_app`` opens the session's client (which pings the server at
    once) before it starts the server, so the first ping always fails and prints "Could not
    connect session, trying again in 10 seconds", and the App waits those 10 s. Started
    here, in FiftyOne's own registry of servers (``_server_services``, which the session
    reuses and stops when it closes), the server is up when the client first asks.
    """
    import urllib.request

    import fiftyone.core.service as fos
    import fiftyone.core.session.session as fss

    services = getattr(fss, "_server_services", None)
    if services is None or port in services:
        return  # another FiftyOne: let launch_app do as it does
    services[port] = fos.ServerService(port, address=address, do_not_track=fo.config.do_not_track)
    host = f"[{address}]" if ":" in address else address
    if address in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    for _ in range(240):  # 60 s
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/fiftyone", timeout=2):
                return
        except OSError:
            time.sleep(0.25)
