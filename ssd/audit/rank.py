"""Find the labels that are probably wrong, using a detector's own detections (label audit).

Every real dataset has label mistakes: objects nobody boxed, wrong classes, loose boxes,
boxes on nothing. A detector trained on the data sees most objects anyway, so where a
confident detection and the ground truth (GT) disagree, the label is a *suspect*. Four
kinds, each ranked by a score in [0, 1] (most probable first):

* ``missing`` – a confident detection that no GT box covers: an object nobody labelled.
  Score ``s · (1 − IoU_max)``: the detection's score ``s``, lowered by its largest overlap
  with any GT box (an unlabelled cell half hidden by a labelled one ranks below a free one).
  Suspects of several classes on one object are merged (class-agnostic NMS).
* ``wrong_class`` – a GT box that a confident detection of *another* class covers
  (IoU ≥ ``match_iou``) better than any detection of the GT's class scores.
  Score ``s_other − s_same``: the margin by which the model prefers the other class.
* ``loose`` – a GT box whose best-overlapping confident detection of the *same* class
  overlaps it only ``near_iou ≤ IoU < loose_iou``: the box is loose, tight or shifted.
  Score ``s · (1 − IoU)``.
* ``spurious`` – a GT box near which (IoU ≥ ``near_iou``) the detector puts nothing of any
  class scoring ``background_score`` or more: the model calls it background.
  Score ``1 − s_near`` (``s_near``: the best score of any detection near the box).
  ``difficult`` boxes are never called spurious (the model is not expected to find them).

Each detection is assigned to the GT box it overlaps most ("owner"); only owned detections
speak for a box, so a detection on a neighbouring object does not make a box look loose
or mislabelled. A GT box is a ``wrong_class`` or a ``loose`` suspect, never both
(``wrong_class`` wins: a confident other-class box is stronger evidence).

A suspect is not a verdict: a hard object the model misses looks like a spurious label, a
model error looks like a missing label. The audit orders the review; a person decides
(see :mod:`ssd.integrations.fiftyone.audit`). :func:`apply_fixes` then writes the
confirmed fixes into a COCO dict.

Matching is vectorised per image with :func:`torchvision.ops.box_iou` (no Python loop over
boxes). Pure: no file, no MLOps tool. Inputs are the COCO dict that ``ssd prepare`` writes
and COCO results (``ssd.evaluation.inputs``). FiftyOne's ``compute_mistakenness`` and why
this module does its own ranking: :mod:`ssd.integrations.fiftyone.audit`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import Tensor
from torchvision.ops import box_convert, box_iou, nms

KINDS: tuple[str, ...] = ("missing", "wrong_class", "loose", "spurious")
KIND_DESCRIPTIONS: dict[str, str] = {
    "missing": "confident detection that no ground-truth box covers (label it)",
    "wrong_class": "box a confident detection of another class covers (relabel it)",
    "loose": "box its confident same-class detection overlaps only partly (redraw it)",
    "spurious": "box the model calls background (delete it)",
}
FIX_ACTIONS: dict[str, str] = {
    "missing": "add",
    "wrong_class": "relabel",
    "loose": "replace_box",
    "spurious": "delete",
}


@dataclass(frozen=True)
class AuditOptions:
    """Thresholds of the audit; defaults fit a detector whose post-processing keeps scores
    down to 0.01 (``postprocess.score_threshold``), as SSD's does; built from the
    ``audit`` config section by :func:`ssd.audit.report.audit_options`.

    Attributes:
        min_score: a detection is *confident* at this score or above; only confident
            detections raise ``missing``, ``wrong_class`` and ``loose`` suspects.
        near_iou: a detection and a GT box are about the same object at this IoU or above.
        match_iou: a detection covers a GT box at this IoU or above (the COCO/VOC match).
        loose_iou: a GT box whose best confident same-class detection overlaps it less
            than this is ``loose``.
        background_score: a GT box with no detection scoring this or more near it is
            ``spurious``.
        dedupe_iou: ``missing`` suspects overlapping more than this are one object.
    """

    min_score: float = 0.5
    near_iou: float = 0.3
    match_iou: float = 0.5
    loose_iou: float = 0.7
    background_score: float = 0.1
    dedupe_iou: float = 0.5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not 0 <= value <= 1:
                raise ValueError(f"audit option {f.name} must be in [0, 1], got {value}")
        if not self.near_iou <= self.match_iou <= self.loose_iou:
            raise ValueError(
                "audit options must satisfy near_iou <= match_iou <= loose_iou, got "
                f"{self.near_iou}, {self.match_iou}, {self.loose_iou}"
            )


@dataclass
class Suspect:
    """One probable label mistake. Boxes are ``[x, y, w, h]`` in image pixels.

    Attributes:
        id: stable key (``<kind>:<image_id>:<annotation_id>``; for ``missing``
            ``missing:<image_id>:<x>:<y>:<w>:<h>``), used to keep a review across re-runs.
        kind: one of :data:`KINDS`.
        score: how probable the mistake is, in [0, 1] (see the module doc, per kind).
        rank: 1 for the most probable suspect of its kind.
        image_id, file_name: the image (``file_name`` relative to the prepared folder).
        box: where to look: the GT box, or for ``missing`` the detection's box.
        label: the GT class there now (``None`` for ``missing``).
        annotation_id: the GT annotation (``None`` for ``missing``).
        difficult: the GT box's ``difficult`` flag.
        model_label, model_box, model_score: the detection that disagrees (``None`` for
            ``spurious``, whose ``model_score`` is the best score of any detection near it).
        iou: IoU of ``box`` and ``model_box``; for ``missing`` the detection's largest IoU
            with any GT box.
        thumbnail: crop image written by :mod:`ssd.audit.report` (relative to
            the report folder), or ``None``.

    Confirming a suspect means (:func:`apply_fixes`): ``missing`` – add ``model_box`` as
    ``model_label``; ``wrong_class`` – relabel the box ``model_label``; ``loose`` – replace
    the box by ``model_box``; ``spurious`` – delete the box.
    """

    id: str
    kind: str
    score: float
    rank: int
    image_id: Any
    file_name: str
    box: list[float]
    label: str | None
    annotation_id: int | None
    difficult: bool = False
    model_label: str | None = None
    model_box: list[float] | None = None
    model_score: float | None = None
    iou: float | None = None
    thumbnail: str | None = None

    @property
    def fix(self) -> str:
        """What confirming it does: ``add``, ``relabel``, ``replace_box`` or ``delete``."""
        return FIX_ACTIONS[self.kind]

    @property
    def change(self) -> str:
        """The proposed change in a few words: ``+ RBC``, ``RBC -> WBC``, ``RBC IoU 0.45``,
        ``- RBC``."""
        if self.kind == "missing":
            return f"+ {self.model_label}"
        if self.kind == "wrong_class":
            return f"{self.label} -> {self.model_label}"
        if self.kind == "loose":
            return f"{self.label} IoU {self.iou or 0.0:.2f}"
        return f"- {self.label}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fix": self.fix}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Suspect:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})


@dataclass
class AuditResult:
    """The ranked suspects (by kind in :data:`KINDS` order, then rank) and what was read."""

    suspects: list[Suspect]
    class_names: list[str]
    options: AuditOptions
    num_images: int
    num_annotations: int
    num_detections: int
    num_ignored_detections: int = 0  # detections of images or classes the split lacks
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[Suspect]:
        """The suspects of one kind, most probable first."""
        return [s for s in self.suspects if s.kind == kind]

    def counts(self) -> dict[str, int]:
        return {k: sum(s.kind == k for s in self.suspects) for k in KINDS}


@dataclass
class ImageFindings:
    """What :func:`find_suspects` found in one image (indices into its inputs).

    Per GT box ``[G]``: ``wrong`` / ``loose`` / ``spurious`` flags with their scores; the
    detection behind a ``wrong`` or ``loose`` flag (``-1`` if none); ``iou`` of that
    detection; ``near_score`` (best score of any detection with IoU ≥ ``near_iou``).
    Per ``missing`` suspect ``[M]``: the detection index, its score, its largest GT IoU.
    """

    wrong: Tensor
    wrong_score: Tensor
    wrong_det: Tensor
    loose: Tensor
    loose_score: Tensor
    loose_det: Tensor
    iou: Tensor
    spurious: Tensor
    spurious_score: Tensor
    near_score: Tensor
    missing_det: Tensor
    missing_score: Tensor
    missing_iou: Tensor


def _column_max(values: Tensor, fill: float) -> tuple[Tensor, Tensor]:
    """Max and argmax over dim 0 of ``[D, G]``; ``fill`` and ``-1`` where ``D == 0``."""
    if values.shape[0] == 0:
        g = values.shape[1]
        return torch.full((g,), fill, dtype=values.dtype), torch.full((g,), -1, dtype=torch.long)
    return values.max(dim=0)


def find_suspects(
    det_boxes: Tensor,
    det_scores: Tensor,
    det_labels: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    gt_difficult: Tensor,
    options: AuditOptions,
) -> ImageFindings:
    """The suspects of one image, all pairs at once.

    Args:
        det_boxes: ``[D, 4]`` detections ``(x1, y1, x2, y2)`` in pixels.
        det_scores: ``[D]`` in [0, 1].
        det_labels: ``[D]`` class ids (any integer coding shared with ``gt_labels``).
        gt_boxes: ``[G, 4]`` GT boxes ``(x1, y1, x2, y2)`` in pixels.
        gt_labels: ``[G]`` class ids.
        gt_difficult: ``[G]`` bool.
        options: the thresholds.

    Returns:
        :class:`ImageFindings`; the rules are in the module doc.
    """
    o = options
    d, g = det_boxes.shape[0], gt_boxes.shape[0]
    scores = det_scores.float()
    if d and g:
        iou = torch.nan_to_num(box_iou(det_boxes.float(), gt_boxes.float()), nan=0.0)
    else:
        iou = torch.zeros((d, g))
    confident = scores >= o.min_score
    same = det_labels[:, None] == gt_labels[None, :]  # [D, G]

    # Each detection speaks for the GT box it overlaps most (its "owner").
    if g:
        best_iou, best_gt = iou.max(dim=1)  # [D]
    else:
        best_iou, best_gt = torch.zeros(d), torch.full((d,), -1, dtype=torch.long)
    owner = torch.zeros((d, g), dtype=torch.bool)
    if d and g:
        owner[torch.arange(d), best_gt] = best_iou > 0
    near = iou >= o.near_iou
    covers = iou >= o.match_iou

    # spurious: nothing of any class near the box scores background_score or more.
    near_score, _ = _column_max(torch.where(near, scores[:, None], 0.0), 0.0)
    spurious = (near_score < o.background_score) & ~gt_difficult.bool()

    # wrong_class: a confident other-class detection owned by the box covers it, and beats
    # every detection of the box's own class that covers it (confident or not).
    other = confident[:, None] & ~same & owner & covers
    s_other, wrong_det = _column_max(torch.where(other, scores[:, None], -1.0), -1.0)
    s_same, _ = _column_max(torch.where(same & covers, scores[:, None], 0.0), 0.0)
    wrong = (s_other >= 0) & (s_other > s_same)
    wrong_score = torch.where(wrong, s_other - s_same, 0.0)

    # loose: the best-overlapping confident same-class detection owned by the box.
    mine = confident[:, None] & same & owner & near
    same_iou, same_det = _column_max(torch.where(mine, iou, -1.0), -1.0)
    has_same = same_iou >= 0
    loose = has_same & (same_iou < o.loose_iou) & ~wrong
    same_score = scores[same_det.clamp(min=0)] if d else torch.zeros(g)
    loose_score = torch.where(loose, same_score * (1 - same_iou), 0.0)

    wrong_or_loose_det = torch.where(wrong, wrong_det, torch.where(loose, same_det, -1))
    pair_iou = torch.zeros(g)
    if d and g:
        chosen = wrong_or_loose_det.clamp(min=0)
        pair_iou = torch.where(wrong_or_loose_det >= 0, iou[chosen, torch.arange(g)], 0.0)

    # missing: confident, not the evidence for any box, covering no box of any class.
    used = torch.zeros(d, dtype=torch.bool)
    used[same_det[has_same]] = True
    used[wrong_det[wrong]] = True
    candidates = torch.nonzero(confident & ~used & (best_iou < o.match_iou)).flatten()
    cand_score = scores[candidates] * (1 - best_iou[candidates])
    keep = nms(det_boxes[candidates].float(), cand_score, o.dedupe_iou)  # sorted by score
    missing_det = candidates[keep]

    return ImageFindings(
        wrong=wrong,
        wrong_score=wrong_score,
        wrong_det=torch.where(wrong, wrong_det, -1),
        loose=loose,
        loose_score=loose_score,
        loose_det=torch.where(loose, same_det, -1),
        iou=pair_iou,
        spurious=spurious,
        spurious_score=torch.where(spurious, 1 - near_score, 0.0),
        near_score=near_score,
        missing_det=missing_det,
        missing_score=cand_score[keep],
        missing_iou=best_iou[missing_det],
    )


def _xywh(box: Tensor) -> list[float]:
    return [round(float(v), 2) for v in box_convert(box[None], "xyxy", "xywh")[0]]


def _to_xyxy(boxes: list[list[float]]) -> Tensor:
    t = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return box_convert(t, "xywh", "xyxy")


def _image_suspects(
    image: dict[str, Any],
    anns: list[dict[str, Any]],
    dets: list[dict[str, Any]],
    names: dict[int, str],
    options: AuditOptions,
) -> list[Suspect]:
    """The suspects of one image, unranked."""
    det_boxes = _to_xyxy([d["bbox"] for d in dets])
    det_scores = torch.tensor([float(d["score"]) for d in dets], dtype=torch.float32)
    det_labels = torch.tensor([int(d["category_id"]) for d in dets], dtype=torch.long)
    f = find_suspects(
        det_boxes,
        det_scores,
        det_labels,
        _to_xyxy([a["bbox"] for a in anns]),
        torch.tensor([int(a["category_id"]) for a in anns], dtype=torch.long),
        torch.tensor([bool(a.get("difficult", 0)) for a in anns], dtype=torch.bool),
        options,
    )
    image_id, file_name = image["id"], str(image["file_name"])
    out: list[Suspect] = []
    for kind, flags, scores, chosen in (
        ("wrong_class", f.wrong, f.wrong_score, f.wrong_det),
        ("loose", f.loose, f.loose_score, f.loose_det),
        ("spurious", f.spurious, f.spurious_score, None),
    ):
        for j in torch.nonzero(flags).flatten().tolist():
            a = anns[j]
            det = -1 if chosen is None else int(chosen[j])
            out.append(
                Suspect(
                    id=f"{kind}:{image_id}:{a['id']}",
                    kind=kind,
                    score=round(float(scores[j]), 6),
                    rank=0,
                    image_id=image_id,
                    file_name=file_name,
                    box=[round(float(v), 2) for v in a["bbox"]],
                    label=names[int(a["category_id"])],
                    annotation_id=int(a["id"]),
                    difficult=bool(a.get("difficult", 0)),
                    model_label=names[int(det_labels[det])] if det >= 0 else None,
                    model_box=_xywh(det_boxes[det]) if det >= 0 else None,
                    model_score=round(float(det_scores[det] if det >= 0 else f.near_score[j]), 6),
                    iou=round(float(f.iou[j]), 6) if det >= 0 else None,
                )
            )
    for k, i in enumerate(f.missing_det.tolist()):
        box = _xywh(det_boxes[i])
        out.append(
            Suspect(
                id="missing:{}:{:.0f}:{:.0f}:{:.0f}:{:.0f}".format(image_id, *box),
                kind="missing",
                score=round(float(f.missing_score[k]), 6),
                rank=0,
                image_id=image_id,
                file_name=file_name,
                box=box,
                label=None,
                annotation_id=None,
                model_label=names[int(det_labels[i])],
                model_box=box,
                model_score=round(float(det_scores[i]), 6),
                iou=round(float(f.missing_iou[k]), 6),
            )
        )
    return out


def audit_labels(
    ground_truth: dict[str, Any],
    detections: list[dict[str, Any]],
    options: AuditOptions | None = None,
    split: str | None = None,
) -> AuditResult:
    """Rank the probable label mistakes of a COCO ground truth, using a detector's results.

    Args:
        ground_truth: COCO dict as ``ssd prepare`` writes it: ``images`` (``id``,
            ``file_name``, ``width``, ``height``), ``annotations`` (``id``, ``image_id``,
            ``category_id`` 1..C, ``bbox`` ``[x, y, w, h]`` pixels, optional
            ``difficult``), ``categories`` (``id``, ``name``).
        detections: COCO results ``{image_id, category_id, bbox: [x, y, w, h], score}`` of
            the whole split, low scores included (they are evidence against ``spurious``).
            Pass checked detections (:func:`ssd.evaluation.inputs.check_detections`);
            ones of unknown images or classes are ignored and counted.
        options: thresholds (:class:`AuditOptions` defaults).
        split: recorded in the result.

    Returns:
        :class:`AuditResult` with the suspects of every kind, ranked.
    """
    o = options or AuditOptions()
    categories = sorted(ground_truth["categories"], key=lambda c: c["id"])
    names = {int(c["id"]): str(c["name"]) for c in categories}
    images = list(ground_truth["images"])
    known_images = {img["id"] for img in images}
    anns_by_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for a in ground_truth["annotations"]:
        anns_by_image[a["image_id"]].append(a)
    dets_by_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    ignored = 0
    for det in detections:
        if det["image_id"] in known_images and int(det["category_id"]) in names:
            dets_by_image[det["image_id"]].append(det)
        else:
            ignored += 1

    # Per-image tensors are tiny: one thread. With two on a busy 2-core machine, OpenMP's
    # waiting made the audit of 60 images take 0.4-1.6 s instead of 0.04 s.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    found: list[Suspect] = []
    try:
        for img in images:
            anns, dets = anns_by_image.get(img["id"], []), dets_by_image.get(img["id"], [])
            if anns or dets:
                found += _image_suspects(img, anns, dets, names, o)
    finally:
        torch.set_num_threads(threads)

    suspects: list[Suspect] = []
    for kind in KINDS:
        ranked = sorted(
            (s for s in found if s.kind == kind), key=lambda s: (-s.score, str(s.image_id), s.id)
        )
        for r, s in enumerate(ranked, start=1):
            s.rank = r
        suspects += ranked
    return AuditResult(
        suspects=suspects,
        class_names=[names[int(c["id"])] for c in categories],
        options=o,
        num_images=len(images),
        num_annotations=len(ground_truth["annotations"]),
        num_detections=len(detections) - ignored,
        num_ignored_detections=ignored,
        split=split,
    )
