"""How well the default boxes fit the data, and better scales and aspect ratios fitted to it.

SSD can only learn a ground-truth (GT) box from the default boxes matched to it (IoU ≥ 0.5,
paper §2.2 "Matching strategy"; the best prior is matched regardless). A GT whose best IoU
with every default box is low is hard to learn. This module reports, for a split:

* for each GT the best IoU with any default box (:func:`best_prior_iou`);
* the share with best IoU ≥ 0.5, overall and per COCO size, and a histogram
  (:func:`coverage_summary`);

and proposes a prior layout fitted to the training boxes (:func:`fit_prior_layout`): aspect
ratios per map from k-means on ``(w, h)`` with the distance ``1 − IoU`` of boxes sharing a
centre (YOLOv2's anchor clustering, :func:`kmeans_iou`), then scales by a coordinate search;
every change is kept only if the actual coverage rises.

Boxes here are normalised: images are resized (not letterboxed) to the square network input,
so a GT ``[x, y, w, h]`` in pixels becomes ``(cx/W, cy/H, w/W, h/H)``. Default boxes are
``[A, 4]`` (cx, cy, w, h) in [0, 1] (see :func:`ssd.model.priors.build_priors`). Sizes (small /
medium / large) use the GT's area in original image pixels, as the COCO metrics do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_convert, box_iou

from ssd.data.prepared import SIZES, annotation_area, size_of

MakePriors = Callable[[list[float], list[list[float]]], Tensor]


def gt_boxes_normalised(dataset: dict[str, Any]) -> tuple[Tensor, Tensor, list[int]]:
    """GT boxes of a COCO dict as ``[N, 4]`` normalised (cx, cy, w, h), pixel areas ``[N]``, ids."""
    sizes = {img["id"]: (float(img["width"]), float(img["height"])) for img in dataset["images"]}
    rows, areas, ids = [], [], []
    for ann in dataset["annotations"]:
        width, height = sizes[ann["image_id"]]
        x, y, w, h = (float(v) for v in ann["bbox"])
        rows.append([(x + w / 2) / width, (y + h / 2) / height, w / width, h / height])
        areas.append(annotation_area(ann))
        ids.append(int(ann["id"]))
    boxes = torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)
    return boxes, torch.tensor(areas, dtype=torch.float64), ids


def best_prior_iou(gt: Tensor, priors: Tensor, chunk: int = 2048) -> tuple[Tensor, Tensor]:
    """Best IoU of each GT with any default box, and that box's index.

    Args:
        gt: ``[N, 4]`` (cx, cy, w, h) normalised.
        priors: ``[A, 4]`` (cx, cy, w, h) normalised.
        chunk: GT rows per ``box_iou`` call (bounds memory to ``chunk × A`` floats).

    Returns:
        ``best_iou [N]`` and ``best_index [N]`` (int64).
    """
    p = box_convert(priors.float(), "cxcywh", "xyxy")
    best, index = torch.zeros(len(gt)), torch.zeros(len(gt), dtype=torch.int64)
    for start in range(0, len(gt), chunk):
        g = box_convert(gt[start : start + chunk].float(), "cxcywh", "xyxy")
        iou = box_iou(g, p)
        best[start : start + chunk], index[start : start + chunk] = iou.max(dim=1)
    return best, index


def coverage_summary(
    best_iou: Tensor, areas: Tensor, threshold: float = 0.5, bins: int = 20
) -> dict[str, Any]:
    """Share of GT with best prior IoU ≥ ``threshold``, overall and per size, and a histogram."""
    best = best_iou.double().numpy()
    size = np.array([size_of(float(a)) for a in areas])
    counts, edges = np.histogram(best, bins=bins, range=(0.0, 1.0))
    by_size: dict[str, dict[str, Any]] = {}
    for s in SIZES:
        sel = best[size == s]
        by_size[s] = {
            "count": int(sel.size),
            "share_covered": float((sel >= threshold).mean()) if sel.size else None,
            "mean_best_iou": float(sel.mean()) if sel.size else None,
        }
    return {
        "iou_threshold": threshold,
        "count": int(best.size),
        "share_covered": float((best >= threshold).mean()) if best.size else None,
        "mean_best_iou": float(best.mean()) if best.size else None,
        "by_size": by_size,
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
    }


def wh_iou(wh: Tensor, centroids: Tensor) -> Tensor:
    """IoU ``[N, K]`` of boxes of sizes ``wh [N, 2]`` and ``centroids [K, 2]`` sharing a centre."""
    inter = torch.minimum(wh[:, None, 0], centroids[None, :, 0]) * torch.minimum(
        wh[:, None, 1], centroids[None, :, 1]
    )
    union = (wh[:, 0] * wh[:, 1])[:, None] + (centroids[:, 0] * centroids[:, 1])[None, :] - inter
    return inter / union.clamp_min(1e-12)


def kmeans_iou(wh: Tensor, k: int, iters: int = 100, seed: int = 0) -> Tensor:
    """k-means on box sizes with the distance ``1 − IoU`` (Redmon & Farhadi, YOLO9000 §2).

    Args:
        wh: ``[N, 2]`` widths and heights (any unit), N ≥ 1.
        k: clusters (reduced to N when there are fewer boxes).
        iters: at most this many Lloyd iterations; stops when assignments settle.
        seed: for the k-means++ style initialisation.

    Returns:
        ``[k, 2]`` centroid sizes (medians of their members, robust to outliers), by area.
    """
    wh = wh.double()
    k = min(k, len(wh))
    gen = torch.Generator().manual_seed(seed)
    centroids = wh[torch.randint(len(wh), (1,), generator=gen)]
    while len(centroids) < k:  # k-means++: next centre far (in 1 − IoU) from the chosen ones
        dist = 1 - wh_iou(wh, centroids).max(dim=1).values
        weights = dist.clamp_min(0) ** 2
        pick = (
            torch.multinomial(weights, 1, generator=gen)
            if weights.sum() > 0
            else torch.randint(len(wh), (1,), generator=gen)
        )
        centroids = torch.cat([centroids, wh[pick]])
    assign = torch.full((len(wh),), -1, dtype=torch.int64)
    for _ in range(iters):
        new = wh_iou(wh, centroids).argmax(dim=1)
        if torch.equal(new, assign):
            break
        assign = new
        for c in range(k):
            members = wh[assign == c]
            if len(members):
                centroids[c] = members.median(dim=0).values
    order = torch.argsort(centroids[:, 0] * centroids[:, 1])
    return centroids[order].float()


@dataclass
class PriorProposal:
    """A fitted prior layout, in the shape of ``model.priors`` in params.yaml."""

    scales: list[float]  # num_maps + 1
    aspect_ratios: list[list[float]]  # per map, ratios > 1 (each adds r and 1/r)
    share_covered: float  # on the (sub)set of boxes it was fitted to
    mean_best_iou: float
    start_share_covered: float  # the starting layout, same boxes
    start_mean_best_iou: float
    steps: list[str] = field(default_factory=list)  # what was changed, in order

    def as_params(self) -> dict[str, Any]:
        return {"scales": [round(v, 4) for v in self.scales], "aspect_ratios": self.aspect_ratios}


def _ratios_for(wh: Tensor, count: int, seed: int) -> list[float] | None:
    """``count`` folded aspect ratios (r ≥ 1 stands for r and 1/r) from IoU k-means clusters.

    Clusters ``count + 1`` box shapes (the two squares of every location cover the ~square
    one) and keeps the ``count`` most elongated. ``None`` when there are too few boxes.
    """
    if count == 0 or len(wh) < 4 * (count + 1):
        return None
    centroids = kmeans_iou(wh, count + 1, seed=seed)
    folded = sorted((max(w / h, h / w) for w, h in centroids.tolist()), reverse=True)[:count]
    ratios: list[float] = []
    for r in sorted(folded):
        r = max(round(r * 4) / 4, 1.25)  # quarter steps keep params.yaml readable
        while ratios and r <= ratios[-1]:
            r += 0.25
        ratios.append(r)
    return ratios


def fit_prior_layout(
    gt: Tensor,
    scales: Sequence[float],
    aspect_ratios: Sequence[Sequence[float]],
    make_priors: MakePriors,
    iou_threshold: float = 0.5,
    max_boxes: int = 2000,
    seed: int = 0,
    factors: Sequence[float] = (0.85, 1.15),
    rounds: int = 3,
    max_walk: int = 12,
) -> PriorProposal:
    """Fit scales and aspect ratios to training boxes, starting from the current layout.

    Keeps the feature maps and the number of ratios per map (so the head and the number of
    default boxes stay the same) and only accepts changes that raise the coverage (share of
    boxes with best IoU ≥ ``iou_threshold``, ties broken by the mean best IoU), so the
    proposal never covers less than the start:

    1. per map, the aspect ratios from :func:`kmeans_iou` on the ``(w, h)`` of the boxes whose
       scale ``sqrt(w·h)`` is closest to that map's default boxes;
    2. coordinate search on the ``num_maps + 1`` scales (each multiplied by ``factors``,
       kept increasing from map to map);

    repeated for ``rounds`` passes or until nothing improves.

    Args:
        gt: ``[N, 4]`` normalised (cx, cy, w, h) training boxes.
        scales: the current ``num_maps + 1`` scales.
        aspect_ratios: the current ratios per map (each ``r`` adds ``r`` and ``1/r``).
        make_priors: ``(scales, aspect_ratios) -> [A, 4]`` priors (e.g. built with
            ``ssd.model.priors.default_boxes`` on the model's feature maps).
        iou_threshold: a box counts as covered at this best IoU.
        max_boxes: boxes used for fitting (a fixed random subset beyond that).
        seed: for the subset and k-means.
        factors: multipliers tried on each scale (repeatedly, up to ``max_walk`` steps).
        rounds: passes of the coordinate search (stops early when nothing improves).
    """
    if len(gt) == 0:
        raise ValueError("cannot fit default boxes: the split has no ground-truth boxes")
    gen = torch.Generator().manual_seed(seed)
    if len(gt) > max_boxes:
        gt = gt[torch.randperm(len(gt), generator=gen)[:max_boxes]]

    def score(s: list[float], r: list[list[float]]) -> tuple[float, float]:
        iou, _ = best_prior_iou(gt, make_priors(s, r))
        return float((iou >= iou_threshold).float().mean()), float(iou.mean())

    cur_s = [float(v) for v in scales]
    cur_r = [[float(x) for x in r] for r in aspect_ratios]
    best = start = score(cur_s, cur_r)
    steps: list[str] = []

    wh = gt[:, 2:].double().clamp_min(1e-6)
    log_s = 0.5 * torch.log(wh[:, 0] * wh[:, 1])
    m = len(cur_r)
    for _ in range(rounds):
        improved = False
        # 1. ratios per map from the boxes nearest (in log scale) to that map's default boxes
        centres = torch.tensor(
            [0.75 * math.log(cur_s[k]) + 0.25 * math.log(cur_s[k + 1]) for k in range(m)],
            dtype=torch.float64,
        )
        assign = (log_s[:, None] - centres[None, :]).abs().argmin(dim=1)
        for k in range(m):
            ratios = _ratios_for(wh[assign == k], len(cur_r[k]), seed + k)
            if ratios is None or ratios == cur_r[k]:
                continue
            cand = [*cur_r[:k], ratios, *cur_r[k + 1 :]]
            got = score(cur_s, cand)
            if got > best:
                best, cur_r, improved = got, cand, True
                steps.append(f"map {k}: aspect ratios {ratios} (k-means)")
        # 2. scales one at a time, kept increasing from map to map
        for k in range(m + 1):
            for f in factors:
                for _ in range(max_walk):  # keep walking while it helps
                    value = round(min(cur_s[k] * f, 1.5), 4)
                    if (k > 0 and value <= cur_s[k - 1]) or (k < m and value >= cur_s[k + 1]):
                        break
                    cand_s = [*cur_s[:k], value, *cur_s[k + 1 :]]
                    got = score(cand_s, cur_r)
                    if got <= best:
                        break
                    best, cur_s, improved = got, cand_s, True
                    steps.append(f"scale {k}: {value}")
        if not improved:
            break
    return PriorProposal(cur_s, cur_r, best[0], best[1], start[0], start[1], steps)
