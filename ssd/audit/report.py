"""The label audit's outputs: rank the probable label mistakes of a split
(:mod:`ssd.audit.rank`) from COCO results and write them out.

:func:`run_audit` takes COCO results from anywhere (``ssd audit`` runs the detector first,
:func:`ssd.infer.predict.detect_split`); :func:`audit_options` is the one place the ``audit``
config section becomes :class:`AuditOptions`. Outputs under
``out_dir`` (``reports/<data.name>``, next to what ``ssd evaluate`` writes, no file shared):

* ``audit.json`` – the split, the thresholds, the ``postprocess`` settings of the detector
  run, counts per kind and every suspect
  (:meth:`ssd.audit.rank.Suspect.to_dict`: ``id``, ``kind``, ``score``, ``rank``,
  ``image_id``, ``file_name``, ``box`` ``[x, y, w, h]`` pixels, ``label``,
  ``annotation_id``, ``model_label``, ``model_box``, ``model_score``, ``iou``, ``fix``,
  ``thumbnail``), by kind, most probable first.
* ``audit.csv`` – the same rows, boxes as ``x, y, w, h`` / ``model_x`` ... columns.
* ``audit/crops/<kind>/<rank>.png`` – a crop around each of the first
  ``thumbnails_per_kind`` suspects of each kind: the labelled box green, the model's box
  red (``missing``: the model's box only).
* ``audit/top_suspects.png`` – a grid, one row per kind, of the most probable suspects.
* ``audit/detections.json`` – the checked detections the audit used (COCO results), so
  the FiftyOne review (:mod:`ssd.integrations.fiftyone.audit`) and a re-run with other
  thresholds need no model.

No MLOps tool is imported here.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torchvision.io import write_png
from torchvision.transforms.v2 import functional as TF
from torchvision.utils import draw_bounding_boxes

from ssd.audit.rank import (
    KIND_DESCRIPTIONS,
    KINDS,
    AuditOptions,
    AuditResult,
    Suspect,
    audit_labels,
)
from ssd.config import AuditConfig, PostprocessConfig
from ssd.data.images import ImageReadError, read_image
from ssd.data.prepared import PreparedSplit
from ssd.data.safety import DatasetRoot, UnsafePath
from ssd.errors import DataError, EvaluationError
from ssd.evaluation.coco import coco_evaluate
from ssd.evaluation.inputs import check_detections
from ssd.evaluation.score import weak_model_note

log = logging.getLogger(__name__)

AUDIT_JSON = "audit.json"
AUDIT_CSV = "audit.csv"
AUDIT_DIR = "audit"  # crops/, top_suspects.png, detections.json
GRID_PNG = "top_suspects.png"
DETECTIONS_JSON = "detections.json"
LABEL_COLOR, MODEL_COLOR = "#2ca02c", "#d62728"
THUMBNAIL_SIDE = 160  # pixels, the longer side of a crop
CSV_COLUMNS: tuple[str, ...] = (
    "id",
    "kind",
    "rank",
    "score",
    "image_id",
    "file_name",
    "x",
    "y",
    "w",
    "h",
    "label",
    "annotation_id",
    "difficult",
    "model_label",
    "model_x",
    "model_y",
    "model_w",
    "model_h",
    "model_score",
    "iou",
    "fix",
    "thumbnail",
)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")


def audit_to_json(result: AuditResult, prepared_dir: str | Path | None = None) -> dict[str, Any]:
    """The content of ``audit.json``."""
    return {
        "split": result.split,
        "dataset": None if prepared_dir is None else str(prepared_dir),
        "class_names": result.class_names,
        "options": asdict(result.options),
        "num_images": result.num_images,
        "num_annotations": result.num_annotations,
        "num_detections": result.num_detections,
        "num_ignored_detections": result.num_ignored_detections,
        "num_rejected_detections": result.extra.get("rejected_detections", 0),
        "postprocess": result.extra.get("postprocess"),
        "num_suspects": len(result.suspects),
        "model_ap50": result.extra.get("model_ap50"),
        "note": weak_model_note(result.extra.get("model_ap50")),
        "counts": result.counts(),
        "kinds": KIND_DESCRIPTIONS,
        "suspects": [s.to_dict() for s in result.suspects],
    }


def audited_split(out_dir: str | Path) -> str | None:
    """The split of the ``audit.json`` in ``out_dir``; None when there is none (or it cannot
    be read: :func:`load_audit` says why)."""
    path = Path(out_dir) / AUDIT_JSON
    try:
        split = json.loads(path.read_text()).get("split")
    except (OSError, ValueError, AttributeError):
        return None
    return split if isinstance(split, str) else None


def load_audit(path: str | Path) -> AuditResult:
    """Read ``audit.json`` back (a file or the folder holding it).

    Raises:
        EvaluationError: the file is missing or is not an audit.
    """
    p = Path(path)
    p = p / AUDIT_JSON if p.is_dir() else p
    if not p.is_file():
        raise EvaluationError(f"{p} is missing; run `ssd audit` first")
    try:
        data = json.loads(p.read_text())
        return AuditResult(
            suspects=[Suspect.from_dict(row) for row in data["suspects"]],
            class_names=list(data["class_names"]),
            options=AuditOptions(**data["options"]),
            num_images=int(data["num_images"]),
            num_annotations=int(data["num_annotations"]),
            num_detections=int(data["num_detections"]),
            num_ignored_detections=int(data.get("num_ignored_detections", 0)),
            split=data.get("split"),
            extra={
                "dataset": data.get("dataset"),
                "rejected_detections": int(data.get("num_rejected_detections", 0)),
                "postprocess": data.get("postprocess"),
            },
        )
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise EvaluationError(f"{p} is not an audit written by `ssd audit`: {err}") from None


def _csv_row(s: Suspect) -> dict[str, Any]:
    row = {k: v for k, v in s.to_dict().items() if k in CSV_COLUMNS}
    row.update(zip(("x", "y", "w", "h"), s.box, strict=True))
    if s.model_box is not None:
        row.update(zip(("model_x", "model_y", "model_w", "model_h"), s.model_box, strict=True))
    return row


def _write_csv(path: Path, suspects: list[Suspect]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS))
        writer.writeheader()
        for s in suspects:
            writer.writerow(_csv_row(s))


def _crop(image: torch.Tensor, s: Suspect) -> torch.Tensor:
    """The region around the suspect's boxes (half their size again on each side, at least
    48 px), with the labelled box green and the model's box red, longer side 160 px."""
    _, height, width = image.shape
    boxes = [b for b in (s.box if s.kind != "missing" else None, s.model_box) if b is not None]
    x1 = min(b[0] for b in boxes)
    y1 = min(b[1] for b in boxes)
    x2 = max(b[0] + b[2] for b in boxes)
    y2 = max(b[1] + b[3] for b in boxes)
    mx, my = max(0.5 * (x2 - x1), 24.0), max(0.5 * (y2 - y1), 24.0)
    cx1, cy1 = max(0, int(x1 - mx)), max(0, int(y1 - my))
    cx2, cy2 = min(width, int(x2 + mx) + 1), min(height, int(y2 + my) + 1)
    crop = image[:, cy1:cy2, cx1:cx2]
    scale = THUMBNAIL_SIDE / max(crop.shape[1], crop.shape[2])
    size = [max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[2] * scale))]
    crop = TF.resize(crop, size, antialias=True)
    drawn, colors = [], []
    if s.kind != "missing":
        drawn.append(s.box)
        colors.append(LABEL_COLOR)
    if s.model_box is not None:
        drawn.append(s.model_box)
        colors.append(MODEL_COLOR)
    xyxy = torch.tensor([[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in drawn])
    xyxy = (xyxy - torch.tensor([cx1, cy1, cx1, cy1])) * scale
    return draw_bounding_boxes(crop, xyxy, colors=colors, width=2)


def write_thumbnails(
    result: AuditResult, prepared_dir: str | Path, out_dir: str | Path, per_kind: int = 50
) -> int:
    """Write the crops of the first ``per_kind`` suspects of each kind and set their
    ``thumbnail`` (relative to ``out_dir``). Images that cannot be read are skipped with a
    warning. Returns the number written."""
    root, out = Path(prepared_dir), Path(out_dir)
    rule = DatasetRoot(root, "the prepared dataset")
    shutil.rmtree(out / AUDIT_DIR / "crops", ignore_errors=True)  # no crop of an older run
    by_image: dict[str, list[Suspect]] = defaultdict(list)
    for s in result.suspects:
        s.thumbnail = None
        if s.rank <= per_kind:
            by_image[s.file_name].append(s)
    written = 0
    for file_name, suspects in by_image.items():
        try:  # the one reader (orientation, modes), the file opened once inside the dataset
            image = read_image(rule.read_file(root / file_name))
        except (ImageReadError, DataError, OSError, UnsafePath) as err:
            log.warning("no thumbnails for %s: %s", file_name, err)
            continue
        for s in suspects:
            rel = Path(AUDIT_DIR) / "crops" / s.kind / f"{s.rank:04d}.png"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            write_png(_crop(image, s), str(out / rel), compression_level=1)
            s.thumbnail = rel.as_posix()
            written += 1
    return written


def plot_top_suspects(
    result: AuditResult, out_dir: str | Path, per_kind: int = 8, path: Path | None = None
) -> Path:
    """One row per kind with suspects, its ``per_kind`` most probable thumbnails, each titled
    with rank, score and the change it proposes."""
    out = Path(out_dir)
    path = path or out / AUDIT_DIR / GRID_PNG
    rows = [k for k in KINDS if any(s.thumbnail for s in result.of_kind(k))]
    cols = max(1, per_kind)
    fig, axes = plt.subplots(
        max(1, len(rows)), cols, figsize=(1.9 * cols, 2.3 * max(1, len(rows))), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    if not rows:
        axes[0, 0].text(0, 0.5, "no suspects", fontsize=12)
    for r, kind in enumerate(rows):
        shown = [s for s in result.of_kind(kind) if s.thumbnail][:cols]
        axes[r, 0].set_title(kind, loc="left", fontsize=10, fontweight="bold", pad=18)
        for c, s in enumerate(shown):
            ax = axes[r, c]
            ax.imshow(read_image(out / str(s.thumbnail)).permute(1, 2, 0).numpy())
            ax.text(
                0.0, -0.02, f"#{s.rank} {s.score:.2f}  {s.change}", transform=ax.transAxes,
                fontsize=7, va="top",
            )  # fmt: skip
    fig.suptitle(
        f"Label audit of {result.split or 'the split'}: most probable mistakes "
        "(green: label, red: model)",
        fontsize=10,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_audit_report(
    result: AuditResult,
    prepared_dir: str | Path,
    out_dir: str | Path,
    *,
    detections: list[dict[str, Any]] | None = None,
    thumbnails_per_kind: int = 50,
    grid_per_kind: int = 8,
) -> Path:
    """Write ``audit.json``, ``audit.csv``, the crops, the grid (and ``detections``, when
    given) under ``out_dir``; return the path of ``audit.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_thumbnails(result, prepared_dir, out, thumbnails_per_kind)
    plot_top_suspects(result, out, grid_per_kind)
    if detections is not None:
        _write_json(out / AUDIT_DIR / DETECTIONS_JSON, detections)
    _write_csv(out / AUDIT_CSV, result.suspects)
    _write_json(out / AUDIT_JSON, audit_to_json(result, prepared_dir))
    return out / AUDIT_JSON


def audit_summary(result: AuditResult, out_dir: str | Path | None = None, top: int = 3) -> str:
    """What the command line prints: counts per kind and the most probable suspects."""
    counts = result.counts()
    lines = [
        f"label audit of {result.split or 'the split'}: {result.num_images} images, "
        f"{result.num_annotations} boxes, {result.num_detections} detections -> "
        f"{len(result.suspects)} suspects"
    ]
    note = weak_model_note(result.extra.get("model_ap50"))
    if note is not None:
        lines.append(f"  note: {note}; these suspects are the model's mistakes, not the labels'")
    for kind in KINDS:
        lines.append(f"  {kind:<12} {counts[kind]:>6}  {KIND_DESCRIPTIONS[kind]}")
    for kind in KINDS:
        for s in result.of_kind(kind)[:top]:
            what = s.change
            if s.kind in ("missing", "wrong_class", "loose"):
                what += f" (model score {s.model_score or 0.0:.2f})"
            else:
                what += f" (best detection score near it {s.model_score or 0.0:.2f})"
            box = ", ".join(f"{v:.0f}" for v in s.box)
            lines.append(f"    {kind:<12} {s.score:.2f}  {s.file_name} [{box}]  {what}")
    if out_dir is not None:
        out = Path(out_dir)
        lines.append(
            f"  written: {out / AUDIT_JSON}, {out / AUDIT_CSV}, {out / AUDIT_DIR / GRID_PNG}"
        )
    return "\n".join(lines)


def run_audit(
    split: PreparedSplit,
    detections: list[Any],
    out_dir: str | Path,
    options: AuditOptions | None = None,
    *,
    thumbnails_per_kind: int = 50,
    grid_per_kind: int = 8,
    postprocess: PostprocessConfig | None = None,
) -> AuditResult:
    """Audit the labels of a prepared split with COCO results; write every output.

    Args:
        split: the loaded split (:meth:`ssd.data.prepared.PreparedSplit.load`).
        detections: COCO results of the whole split, low scores included. Malformed ones,
            unknown image or category ids and non-finite values are not used
            (:func:`ssd.evaluation.inputs.check_detections`); boxes past the border are.
        out_dir: where the outputs go (created).
        options: the audit's thresholds (:func:`audit_options` builds them from the config).
        thumbnails_per_kind: crops written per kind (most probable first).
        grid_per_kind: suspects per row of the grid.
        postprocess: the inference settings that produced ``detections``, recorded in
            ``audit.json`` (None: detections from elsewhere).
    """
    checked = check_detections(detections, split)
    if checked.rejected:
        log.warning("%d detections not used: %s", len(checked.rejected), checked.summary(3))
    result = audit_labels(split.dataset, checked.accepted, options, split=split.name)
    result.extra["rejected_detections"] = len(checked.rejected)
    # how good the model is here, to say when it is too weak to audit anything
    result.extra["model_ap50"] = coco_evaluate(split.dataset, checked.accepted).stats.get("map50")
    result.extra["postprocess"] = None if postprocess is None else postprocess.model_dump()
    write_audit_report(
        result,
        split.root,
        out_dir,
        detections=checked.accepted,
        thumbnails_per_kind=thumbnails_per_kind,
        grid_per_kind=grid_per_kind,
    )
    return result


def require_weak_detections(postprocess: PostprocessConfig, options: AuditOptions) -> None:
    """The post-processing decides which detections exist: its score threshold must not be
    above ``options.background_score``, or boxes with weak evidence near them would look
    spurious (``postprocess.score_threshold`` 0.01, the default, keeps them).

    Raises:
        EvaluationError: the threshold is above the background score.
    """
    if postprocess.score_threshold > options.background_score:
        raise EvaluationError(
            f"postprocess.score_threshold ({postprocess.score_threshold}) is above "
            f"audit.background_score ({options.background_score}): the audit needs the weak "
            "detections to tell a spurious box from a hard object; use "
            "--set postprocess.score_threshold=0.01 (the default)"
        )


def audit_options(cfg: AuditConfig) -> AuditOptions:
    """The audit's thresholds from the ``audit`` section: the one place config -> options."""
    return AuditOptions(
        min_score=cfg.min_score,
        near_iou=cfg.near_iou,
        match_iou=cfg.match_iou,
        loose_iou=cfg.loose_iou,
        background_score=cfg.background_score,
        dedupe_iou=cfg.dedupe_iou,
    )
