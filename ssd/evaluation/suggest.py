"""The ``ssd suggest-priors`` stage: default boxes fitted to the training boxes.

Fits scales and aspect ratios (:func:`ssd.evaluation.coverage.fit_prior_layout`) on the
training split, starting from the configured layout and keeping the model's feature maps,
steps and ratio counts per map (so the number of default boxes is unchanged), and reports
the default-box coverage before and after on every prepared split. The proposal is written in
the shape of ``model.priors`` in ``params.yaml`` (``scales``: one per map plus one;
``aspect_ratios``: per map, each ``r`` adding ``r`` and ``1/r``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from ssd.data.prepared import SPLITS, PreparedSplit
from ssd.evaluation.coverage import (
    best_prior_iou,
    coverage_summary,
    fit_prior_layout,
    gt_boxes_normalised,
)
from ssd.evaluation.plots import plot_coverage_comparison
from ssd.model.builder import prior_layout

if TYPE_CHECKING:
    from ssd.config import ModelConfig


def suggest_priors(
    model_cfg: ModelConfig,
    prepared_dir: str | Path,
    out_dir: str | Path | None = None,
    fit_split: str = "train",
    iou_threshold: float = 0.5,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit a prior layout to ``fit_split`` and compare coverage with the configured one.

    Returns (and writes to ``out_dir/suggested_priors.json``, with the plot
    ``out_dir/suggested_priors.png``, when given) ``{"current",
    "suggested"}`` layouts with their prior counts and ``coverage[split] = {"current",
    "suggested"}`` summaries (:func:`ssd.evaluation.coverage.coverage_summary`).
    """

    layout = prior_layout(model_cfg)
    scales, ratios, maps = layout.scales, layout.aspect_ratios, layout.feature_maps

    def make_priors(s: list[float], r: list[list[float]]) -> Tensor:
        return layout.boxes(s, r)

    train = PreparedSplit.load(prepared_dir, fit_split)
    gt, _, _ = gt_boxes_normalised(train.dataset)
    proposal = fit_prior_layout(gt, scales, ratios, make_priors, iou_threshold, seed=seed)
    current = make_priors(list(scales), [list(r) for r in ratios])
    suggested = make_priors(proposal.scales, proposal.aspect_ratios)

    coverage: dict[str, Any] = {}
    for split in SPLITS:
        if not (Path(prepared_dir) / f"{split}.json").is_file():
            continue
        data = train if split == fit_split else PreparedSplit.load(prepared_dir, split)
        boxes, areas, _ = gt_boxes_normalised(data.dataset)
        if len(boxes) == 0:
            continue
        coverage[split] = {
            name: coverage_summary(best_prior_iou(boxes, priors)[0], areas, iou_threshold)
            for name, priors in (("current", current), ("suggested", suggested))
        }
    report = {
        "fit_split": fit_split,
        "feature_maps": [list(m) for m in maps],
        "current": {
            "scales": [float(s) for s in scales],
            "aspect_ratios": [[float(x) for x in r] for r in ratios],
            "num_priors": len(current),
        },
        "suggested": {**proposal.as_params(), "num_priors": len(suggested)},
        "changes": proposal.steps,
        "coverage": coverage,
    }
    if out_dir is not None:
        path = Path(out_dir) / "suggested_priors.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        if coverage:
            plot_coverage_comparison(coverage, Path(out_dir) / "suggested_priors.png")
    return report


def _percent(value: float | None) -> str:
    return "  n/a" if value is None else f"{100 * value:5.1f}"


def suggestion_lines(report: dict[str, Any]) -> list[str]:
    """What ``ssd suggest-priors`` prints: the coverage now and suggested, and the keys."""
    cur, new = report["current"], report["suggested"]
    lines = [
        f"default boxes: {cur['num_priors']} now, {new['num_priors']} suggested",
        "share of GT with a default box at IoU ≥ 0.5 (all / small / medium / large):",
    ]
    for name, cov in report["coverage"].items():
        for which in ("current", "suggested"):
            c = cov[which]
            sizes = " ".join(_percent(c["by_size"][s]["share_covered"]) for s in c["by_size"])
            lines.append(f"  {name:<5} {which:<9} {_percent(c['share_covered'])} | {sizes}")
    return [
        *lines,
        "to use them, set in params.yaml:\nmodel:\n  priors:",
        f"    scales: {json.dumps(new['scales'])}",
        f"    aspect_ratios: {json.dumps(new['aspect_ratios'])}",
    ]
