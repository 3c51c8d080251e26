"""Review the label audit in the FiftyOne App, and export the confirmed fixes as a corrected
copy of the dataset in VOC, COCO or YOLO format (``ssd browse`` after ``ssd audit``).

The loop: ``ssd audit`` ranks the suspects (:mod:`ssd.audit.rank`) → this module puts
them on the split's FiftyOne dataset (:func:`build_audit_dataset`) → a person opens a saved
view, e.g. ``possible-missing-labels``, and tags each suspect ``confirmed`` or
``dismissed`` → :func:`export_corrected` writes every split of the prepared dataset with
the confirmed fixes applied, in the source's format, with FiftyOne's own exporters →
``ssd prepare`` reads it (``data.path`` pointed at it) → ``dvc repro``.

On the dataset ``ssd-<data.name>-<split>`` (the one ``ssd browse`` builds, or one with only
ground truth and the audit's detections when the split was not evaluated):

* ``audit``: :class:`fiftyone.core.labels.Detections`, one object per suspect. Its box is
  the suspect's ``box`` (the labelled box; for ``missing`` the detection's box), its
  ``label`` the class the box has after the fix. Attributes: ``kind``, ``score``, ``rank``,
  ``suspect_id``, ``annotation_id``, ``gt_label``, ``model_label``, ``model_score``,
  ``iou``, ``model_box`` (relative ``[x, y, w, h]``), ``change`` (e.g. ``RBC -> WBC``).
  The review is the label tag ``confirmed`` or ``dismissed`` on these objects; it survives
  a rebuild (kept by ``suspect_id``).
* ``ground_truth`` objects that are suspects: ``audit_kind``, ``audit_score``,
  ``audit_rank`` and the label tag ``audit:<kind>``; samples get the tag ``audit:<kind>``.
* Saved views (:data:`AUDIT_VIEWS`): one patch per suspect of a kind, highest score first,
  and ``audit-confirmed``. FiftyOne (1.22) stores a saved patches view as a snapshot made
  when it is saved: tags set in that view reach the dataset at once, but tags set
  elsewhere (another view, Python) show in it only after ``view.reload()``. Rebuilding
  saves the views again.

**FiftyOne's ``compute_mistakenness`` and what we compute ourselves.** Reading
``fiftyone.brain.internal.core.mistakenness`` (fiftyone-brain 0.25): for detections it
needs only each prediction's ``confidence`` (logits are optional and per object; SSD's
post-processing keeps a score per box, not a class distribution). It matches predictions
to ground truth once, class-agnostically at IoU 0.5, then: ``mistakenness`` =
``(1 + c)/2`` for a matched pair of different classes, ``(1 − c)/2`` otherwise;
``mistakenness_loc`` from the IoU of the *matched* pair (so only for IoU ≥ 0.5);
``possible_missing`` = an unmatched prediction with confidence > 0.95 (a fixed constant, a
flag with no score); ``possible_spurious`` = *every* unmatched ground-truth box (a flag with
no score, whatever the detector saw there). So it fits wrong-class ranking (our
``wrong_class`` score is the same idea, margin-based), but it cannot rank missing labels
below 0.95 confidence (an SSD rarely gets there), cannot see a box shifted to IoU < 0.5
(that pair turns into one "missing" and one "spurious" flag), and cannot tell a
spurious box on background from an object the detector found at IoU 0.4. Hence
:mod:`ssd.audit.rank` ranks all four kinds itself (and runs without FiftyOne, in the
DVC stage), and this module also runs ``compute_mistakenness`` on the predictions scoring
at least the audit's ``background_score`` (brain key ``mistakenness``: fields
``mistakenness``, ``mistakenness_loc``, ``possible_spurious`` on ground truth,
``possible_missing`` on predictions and the per-sample counts), shown side by side and in
the saved view ``fiftyone-mistakenness``.
``tests/integrations/test_audit_fiftyone.py`` measures both on planted mistakes.

FiftyOne reads its settings when imported: call
:func:`ssd.integrations.env.configure_offline_defaults` first (the CLI does).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import fiftyone as fo
import fiftyone.brain as fob
from fiftyone import ViewField as F

from ssd.audit.fixes import apply_fixes
from ssd.audit.rank import KINDS, AuditResult, Suspect
from ssd.audit.report import AUDIT_DIR, AUDIT_JSON, DETECTIONS_JSON, load_audit
from ssd.data.prepared import SPLITS, PreparedSplit
from ssd.errors import BrowseError
from ssd.integrations.fiftyone.browse import (
    MIN_CONFIDENCE,
    build_browse_dataset,
    color_scheme,
    dataset_name,
)
from ssd.integrations.fiftyone.convert import coco_samples, pixel_box, relative_box

log = logging.getLogger(__name__)

AUDIT_FIELD = "audit"
CONFIRMED, DISMISSED = "confirmed", "dismissed"
REVIEW_TAGS: tuple[str, str] = (CONFIRMED, DISMISSED)
MISTAKENNESS_KEY = "mistakenness"
EXPORT_FORMATS: dict[str, Any] = {
    "voc": fo.types.VOCDetectionDataset,
    "coco": fo.types.COCODetectionDataset,
    "yolo": fo.types.YOLOv5Dataset,
}
FIXES_JSON = "audit/fixes.json"  # in the export: what was changed (no reader looks there)


def _kind_view(kind: str) -> Callable[[fo.Dataset], fo.DatasetView]:
    def make(ds: fo.Dataset) -> fo.DatasetView:
        suspects = ds.filter_labels(AUDIT_FIELD, F("kind") == kind)
        return suspects.to_patches(AUDIT_FIELD).sort_by(f"{AUDIT_FIELD}.score", reverse=True)

    return make


def _confirmed(ds: fo.Dataset) -> fo.DatasetView:
    # A plain view (not patches): FiftyOne 1.22 keeps a saved patches view as a snapshot
    # taken when it was saved, so a patches view of tags would not show new tags.
    return ds.filter_labels(AUDIT_FIELD, F("tags").contains(CONFIRMED))


def _by_mistakenness(ds: fo.Dataset) -> fo.DatasetView:
    return ds.exists(MISTAKENNESS_KEY).sort_by(MISTAKENNESS_KEY, reverse=True)


AUDIT_VIEWS: dict[str, tuple[str, Callable[[fo.Dataset], fo.DatasetView]]] = {
    "possible-missing-labels": (
        "Confident detections no box covers, most probable first. Tag 'confirmed' to add "
        "the box, 'dismissed' to drop the suspect",
        _kind_view("missing"),
    ),
    "possible-wrong-class": (
        "Boxes a confident detection of another class covers. 'confirmed' relabels them",
        _kind_view("wrong_class"),
    ),
    "possible-loose-boxes": (
        "Boxes their confident same-class detection overlaps only partly. 'confirmed' "
        "replaces the box by the model's",
        _kind_view("loose"),
    ),
    "possible-spurious-labels": (
        "Boxes the model calls background. 'confirmed' deletes them",
        _kind_view("spurious"),
    ),
    "audit-confirmed": (
        "Images with suspects tagged 'confirmed' (only those shown): what an export fixes",
        _confirmed,
    ),
    "fiftyone-mistakenness": (
        "Samples by FiftyOne's compute_mistakenness (highest first), for comparison",
        _by_mistakenness,
    ),
}


def _audit_label(s: Suspect, width: float, height: float, tag: str | None) -> fo.Detection:
    after = s.model_label if s.kind in ("missing", "wrong_class") else s.label
    return fo.Detection(
        label=after,
        bounding_box=relative_box(s.box, width, height),
        kind=s.kind,
        score=float(s.score),
        rank=int(s.rank),
        suspect_id=s.id,
        annotation_id=s.annotation_id,
        gt_label=s.label,
        model_label=s.model_label,
        model_score=s.model_score,
        iou=s.iou,
        model_box=None if s.model_box is None else relative_box(s.model_box, width, height),
        change=s.change,
        tags=[tag] if tag else [],
    )


def read_review(ds: fo.Dataset) -> dict[str, str]:
    """``{suspect_id: "confirmed" | "dismissed"}`` from the tags on the ``audit`` objects
    (a suspect tagged both counts as dismissed)."""
    if not ds.has_sample_field(AUDIT_FIELD):
        return {}
    review: dict[str, str] = {}
    tagged = ds.filter_labels(AUDIT_FIELD, F("tags").contains(list(REVIEW_TAGS), all=False))
    ids, tags = tagged.values(
        [f"{AUDIT_FIELD}.detections.suspect_id", f"{AUDIT_FIELD}.detections.tags"]
    )
    for sample_ids, sample_tags in zip(ids, tags, strict=True):
        for suspect_id, label_tags in zip(sample_ids or [], sample_tags or [], strict=True):
            if DISMISSED in label_tags:
                review[suspect_id] = DISMISSED
            elif CONFIRMED in label_tags:
                review[suspect_id] = CONFIRMED
    return review


def add_audit(
    ds: fo.Dataset,
    result: AuditResult,
    review: Mapping[str, str] | None = None,
    mistakenness: bool = True,
) -> dict[str, int]:
    """Put the audit's suspects on ``ds`` (fields, tags, saved views; see the module doc).

    Args:
        ds: a dataset of the audited split whose samples carry ``image_id`` and whose
            ``ground_truth`` objects carry ``annotation_id`` (what ``ssd browse`` builds).
        result: the audit of that split (:func:`ssd.audit.report.load_audit`).
        review: decisions to restore, ``{suspect_id: tag}``; those already on ``ds`` are
            kept too (a re-run of the audit keeps the review of unchanged suspects).
        mistakenness: also run FiftyOne's ``compute_mistakenness`` (needs a
            ``predictions`` field with confidences) on the predictions scoring at least
            ``result.options.background_score``.

    Returns:
        Suspects per kind put on the dataset.

    Raises:
        BrowseError: a suspect's image is not in ``ds`` (the audit is of another split).
    """
    decisions = {**read_review(ds), **(review or {})}
    by_image: dict[Any, list[Suspect]] = defaultdict(list)
    for s in result.suspects:
        by_image[s.image_id].append(s)
    known = set(ds.values("image_id"))
    unknown = set(by_image) - known
    if unknown:
        raise BrowseError(
            f"{len(unknown)} audited images (e.g. {sorted(unknown, key=str)[:3]}) are not in "
            f"the dataset '{ds.name}'; the audit is of split '{result.split}': browse that "
            "split, or run `ssd audit` on this one"
        )
    if ds.has_sample_field(AUDIT_FIELD):
        ds.delete_sample_field(AUDIT_FIELD)
    gt_kind = {s.annotation_id: s for s in result.suspects if s.annotation_id is not None}
    for sample in ds.iter_samples(autosave=True, progress=False):
        width, height = sample.metadata.width, sample.metadata.height
        here = by_image.get(sample["image_id"], [])
        sample[AUDIT_FIELD] = fo.Detections(
            detections=[_audit_label(s, width, height, decisions.get(s.id)) for s in here]
        )
        for det in sample.ground_truth.detections if sample.ground_truth else []:
            on_box = gt_kind.get(det["annotation_id"])
            det.tags = [t for t in det.tags if not t.startswith("audit:")]
            det["audit_kind"] = on_box.kind if on_box else None
            det["audit_score"] = on_box.score if on_box else None
            det["audit_rank"] = on_box.rank if on_box else None
            if on_box:
                det.tags.append(f"audit:{on_box.kind}")
        kinds = sorted({s.kind for s in here})
        sample.tags = [t for t in sample.tags if not t.startswith("audit:")]
        sample.tags += [f"audit:{k}" for k in kinds]
    if mistakenness and ds.has_sample_field("predictions"):
        compute_fiftyone_mistakenness(ds, min_confidence=result.options.background_score)
    for view_name, (description, make) in AUDIT_VIEWS.items():
        if view_name == "fiftyone-mistakenness" and not ds.has_sample_field(MISTAKENNESS_KEY):
            continue
        ds.save_view(view_name, make(ds), description=description, overwrite=True)
    counts = result.counts()
    ds.info = {**ds.info, "audit": {"split": result.split, "counts": counts}}
    ds.save()
    return counts


def compute_fiftyone_mistakenness(ds: fo.Dataset, min_confidence: float = 0.0) -> None:
    """FiftyOne's ``compute_mistakenness`` of ``ground_truth`` against the ``predictions``
    scoring ``min_confidence`` or more (confidences, no logits), replacing an earlier run
    (brain key ``mistakenness``).

    Its matching saves every sample once per pass, and FiftyOne 1.22's save slows down with
    the square of the labels on a sample: on BCCD's test split with SSD's 200 detections
    per image (score threshold 0.01) it took about 3 CPU minutes for 72 images, 1 with the
    predictions scoring 0.1 or more. The audit's
    ``background_score`` (0.1) as ``min_confidence`` leaves the detections either ranking
    takes as evidence.
    """
    if MISTAKENNESS_KEY in ds.list_brain_runs():
        ds.delete_brain_run(MISTAKENNESS_KEY)
    view = ds.filter_labels("predictions", F("confidence") >= min_confidence, only_matches=False)
    fob.compute_mistakenness(
        view if min_confidence > 0 else ds,
        "predictions",
        label_field="ground_truth",
        mistakenness_field=MISTAKENNESS_KEY,
        missing_field="possible_missing",
        spurious_field="possible_spurious",
        use_logits=False,
        copy_missing=False,
        progress=None,
    )


def _plain_samples(data: PreparedSplit, detections: list[dict[str, Any]]) -> list[fo.Sample]:
    """Ground truth and detections of a split, without any evaluation."""
    return coco_samples(
        data.root,
        data.images,
        data.class_names,
        data.annotations,
        enumerate(detections),
        gt_attrs=lambda ann: {"annotation_id": int(ann["id"])},
        det_attrs=lambda index, det: {"detection_index": index},
    )


def build_audit_dataset(
    prepared_dir: str | Path,
    split: str,
    audit_dir: str | Path,
    reports_dir: str | Path | None = None,
    name: str | None = None,
    mistakenness: bool = True,
    say: Callable[[str], None] | None = None,
) -> fo.Dataset:
    """Build or update ``ssd-<data.name>-<split>`` with the audit on it, keeping the review.

    With ``reports_dir`` holding an evaluation of this split (``evaluation.json`` and
    ``errors/``), the dataset is the one ``ssd browse`` builds
    (:func:`ssd.integrations.fiftyone.browse.build_browse_dataset`) plus the audit;
    otherwise it holds the ground truth and the detections the audit used
    (``<audit_dir>/audit/detections.json``). Decisions (``confirmed`` / ``dismissed``) of
    suspects that are still suspects are kept across rebuilds.

    Args:
        prepared_dir: ``data/prepared/<name>``.
        split: the audited split.
        audit_dir: where ``ssd audit`` wrote ``audit.json`` (``reports/<data.name>``).
        reports_dir: where ``ssd evaluate`` wrote its reports, or ``None``.
        name: dataset name; default :func:`ssd.integrations.fiftyone.browse.dataset_name`.
        mistakenness: also run FiftyOne's ``compute_mistakenness``.
        say: told what is being done, step by step.

    Raises:
        BrowseError: ``audit.json`` is missing or is of another split.
    """
    prepared = Path(prepared_dir).resolve()
    audit_path = Path(audit_dir) / AUDIT_JSON
    if not audit_path.is_file():
        raise BrowseError(f"{audit_path} is missing; run `ssd audit` first")
    result = load_audit(audit_path)
    if result.split != split:
        raise BrowseError(
            f"{audit_path} is an audit of split '{result.split}', not '{split}'; "
            f"run `ssd audit --split {split}` or browse split '{result.split}'"
        )
    name = name or dataset_name(prepared, split)
    review = read_review(fo.load_dataset(name)) if fo.dataset_exists(name) else {}

    evaluation = Path(reports_dir) / "evaluation.json" if reports_dir is not None else None
    if evaluation is not None and evaluation.is_file():
        evaluated = json.loads(evaluation.read_text()).get("split") == split
    else:
        evaluated = False
    if evaluated and reports_dir is not None:
        ds = build_browse_dataset(prepared, split, reports_dir, name=name, say=say)
    else:
        dets_path = Path(audit_dir) / AUDIT_DIR / DETECTIONS_JSON
        detections = json.loads(dets_path.read_text()) if dets_path.is_file() else []
        kept = [d for d in detections if float(d["score"]) >= MIN_CONFIDENCE]  # as browse does
        samples = _plain_samples(PreparedSplit.load(prepared, split), kept)
        if fo.dataset_exists(name):
            ds = fo.load_dataset(name)
            for key in ds.list_evaluations():
                ds.delete_evaluation(key)
            ds.clear()  # samples go; the user's own saved views stay
        else:
            ds = fo.Dataset(name)
        ds.persistent = True
        ds.default_classes = result.class_names
        ds.app_config.color_scheme = color_scheme()
        ds.add_samples(samples, progress=False)
        ds.info = {
            "prepared_dir": str(prepared),
            "split": split,
            "min_confidence": MIN_CONFIDENCE,
            "predictions_left_out": len(detections) - len(kept),
        }
    if say is not None:
        say(f"the label audit's {len(result.suspects)} suspects, FiftyOne's mistakenness")
    add_audit(ds, result, review=review, mistakenness=mistakenness)
    return ds


def load_review_dataset(prepared_dir: str | Path, split: str) -> fo.Dataset:
    """The dataset ``ssd-<data.name>-<split>`` with the audit on it, where the review is.

    Raises:
        BrowseError: there is no such dataset, or it has no audit.
    """
    name = dataset_name(prepared_dir, split)
    steps = f"run `ssd audit --split {split}`, then `ssd browse --split {split}` and review"
    if not fo.dataset_exists(name):
        raise BrowseError(f"there is no FiftyOne dataset {name}: {steps}")
    ds = fo.load_dataset(name)
    if not ds.has_sample_field(AUDIT_FIELD):
        raise BrowseError(f"{name} has no audit on it: {steps}")
    return ds


def confirmed_suspects(ds: fo.Dataset) -> list[Suspect]:
    """The suspects tagged ``confirmed`` (and not ``dismissed``), with pixel boxes, as
    :func:`ssd.audit.rank.apply_fixes` takes them. Read from the ``audit`` objects,
    so the App is the record of the review."""
    out: list[Suspect] = []
    if not ds.has_sample_field(AUDIT_FIELD):
        return out
    view = ds.filter_labels(
        AUDIT_FIELD, F("tags").contains(CONFIRMED) & ~F("tags").contains(DISMISSED)
    )
    root = ds.info.get("prepared_dir")
    for sample in view.iter_samples(progress=False):
        width, height = sample.metadata.width, sample.metadata.height
        file_name = os.path.relpath(sample.filepath, root) if root else sample.filepath
        for d in sample[AUDIT_FIELD].detections:
            model_box = d["model_box"]
            out.append(
                Suspect(
                    id=d["suspect_id"],
                    kind=d["kind"],
                    score=float(d["score"]),
                    rank=int(d["rank"]),
                    image_id=sample["image_id"],
                    file_name=file_name,
                    box=pixel_box(d.bounding_box, width, height),
                    label=d["gt_label"],
                    annotation_id=d["annotation_id"],
                    model_label=d["model_label"],
                    model_box=None if model_box is None else pixel_box(model_box, width, height),
                    model_score=d["model_score"],
                    iou=d["iou"],
                )
            )
    return sorted(out, key=lambda s: (KINDS.index(s.kind), s.rank))


def _common_dir(paths: Sequence[str]) -> str:
    return os.path.commonpath([os.path.dirname(p) for p in paths])


def export_corrected(
    prepared_dir: str | Path,
    export_dir: str | Path,
    fmt: str,
    fixes: Mapping[str, Sequence[Suspect]] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write every split of the prepared dataset, with ``fixes`` applied, as a dataset in
    ``fmt`` that ``ssd prepare`` reads back with the same splits (``data.source=fmt``,
    ``data.path=export_dir``).

    Args:
        prepared_dir: ``data/prepared/<name>``.
        export_dir: the new dataset's folder; written whole or not at all (built in a
            sibling ``.partial`` folder).
        fmt: ``voc`` (``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``,
            ``classes.txt``), ``coco`` (``<split>/`` images and
            ``annotations/instances_<split>.json``) or ``yolo`` (``images/<split>/``,
            ``labels/<split>/``, ``dataset.yaml``).
        fixes: confirmed suspects per split (e.g. ``{"test": confirmed_suspects(ds)}``).
        overwrite: replace an existing ``export_dir``.

    Layouts, labels and media are written by FiftyOne's exporters
    (``fiftyone.types.VOCDetectionDataset``, ``COCODetectionDataset``, ``YOLOv5Dataset``).
    We add what they lack: VOC's ``ImageSets/Main`` split lists and ``classes.txt`` (the
    VOC reader sorts class names unless ``data.names_file: classes.txt`` is set); COCO's
    fixed ``info.date_created`` (so the same review exports the same bytes for DVC).
    What is lost: YOLO has no ``difficult`` flag; VOC stores integer pixels (boxes are
    rounded to the nearest pixel; integer boxes come back exactly); image and annotation
    ids are renumbered by ``ssd prepare``; VOC's ``pose`` / ``truncated`` are not kept.
    ``audit/fixes.json`` lists the fixes applied.

    Raises:
        ValueError: unknown format, ``export_dir`` exists (without ``overwrite``), or a fix
            that does not fit the dataset.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {sorted(EXPORT_FORMATS)}")
    prepared = Path(prepared_dir).resolve()
    target = Path(export_dir)
    if target.exists() and not overwrite:
        raise ValueError(f"{target} exists; choose another folder or pass overwrite")
    fixes = dict(fixes or {})
    loaded = [
        PreparedSplit.load(prepared, s, allow_empty=True)
        for s in SPLITS
        if (prepared / f"{s}.json").is_file()
    ]
    splits = {data.name: data for data in loaded if data.images}  # an empty split: no files
    if not splits:
        raise ValueError(f"{prepared} has no split with images; run `ssd prepare` first")
    unknown = set(fixes) - set(splits)
    if unknown:
        raise ValueError(f"fixes for splits {sorted(unknown)} that {prepared} does not have")
    classes = next(iter(splits.values())).class_names
    work = target.parent / f".{target.name}.partial"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    tmp = fo.Dataset()  # temporary: deleted below, never persistent
    # Several splits go into one folder on purpose; FiftyOne warns about each merge.
    export_log = logging.getLogger("fiftyone.core.collections")
    level = export_log.level
    export_log.setLevel(logging.ERROR)
    try:
        for split, data in splits.items():
            coco = apply_fixes(data.dataset, list(fixes.get(split, [])))
            # VOC holds integer pixels and FiftyOne's writer truncates x * width (29.0 can
            # come out as 28): half a pixel added first makes it round, so integer boxes
            # survive exactly (BCCD: 698 of 4886 boxes moved by 1 px without it).
            nudge = 0.5 if fmt == "voc" else 0.0
            samples = _export_samples(prepared, coco, classes, split, nudge)
            tmp.add_samples(samples, progress=False)
        for split in splits:
            view = tmp.match_tags(split)
            _export_split(view, work, fmt, split, classes, list(tmp.values("filepath")))
        if fmt == "voc":
            sets = work / "ImageSets" / "Main"
            sets.mkdir(parents=True)
            rel_dir = _common_dir(tmp.values("filepath"))
            for split in splits:
                stems = [
                    os.path.splitext(os.path.relpath(p, rel_dir))[0]
                    for p in tmp.match_tags(split).values("filepath")
                ]
                (sets / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
            (work / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
        record = {
            "source": str(prepared),
            "format": fmt,
            "fixes": {s: [f.to_dict() for f in fixes[s]] for s in sorted(fixes)},
        }
        (work / FIXES_JSON).parent.mkdir(parents=True, exist_ok=True)
        (work / FIXES_JSON).write_text(json.dumps(record, indent=1) + "\n")
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        export_log.setLevel(level)
        tmp.delete()
    if target.exists():
        shutil.rmtree(target)
    work.rename(target)
    return target


def _export_samples(
    prepared: Path, coco: dict[str, Any], classes: list[str], split: str, nudge: float = 0.0
) -> list[fo.Sample]:
    """Samples of one split, tagged with it; boxes moved by ``nudge`` pixels right and down."""
    moved = [
        {**a, "bbox": [a["bbox"][0] + nudge, a["bbox"][1] + nudge, *a["bbox"][2:]]}
        for a in coco["annotations"]
    ]
    return coco_samples(
        prepared,
        coco["images"],
        classes,
        moved,
        gt_attrs=lambda a: {
            "difficult": int(a.get("difficult", 0)),  # VOC writes it as <difficult>
            "iscrowd": int(a.get("difficult", 0)),  # COCO: ssd prepare reads it as difficult
        },
        sample_attrs=lambda img: {"tags": [split]},
    )


def _export_split(
    view: fo.DatasetView, work: Path, fmt: str, split: str, classes: list[str], all_paths: list[str]
) -> None:
    common: dict[str, Any] = {
        "export_dir": str(work),
        "dataset_type": EXPORT_FORMATS[fmt],
        "label_field": "ground_truth",
        "progress": False,
    }
    if fmt == "voc":  # one image folder for all splits: names relative to all images
        view.export(
            **common,
            data_path="JPEGImages",
            labels_path="Annotations",
            rel_dir=_common_dir(all_paths),
            include_paths=False,
            extra_attrs=["difficult"],
        )
    elif fmt == "coco":
        view.export(
            **common,
            data_path=split,
            labels_path=f"annotations/instances_{split}.json",
            rel_dir=_common_dir(view.values("filepath")),
            classes=classes,
            extra_attrs=False,
            info={"description": "corrected by ssd audit", "date_created": ""},
        )
    else:
        view.export(
            **common,
            split=split,
            rel_dir=_common_dir(view.values("filepath")),
            classes=classes,
            include_path=False,
        )
