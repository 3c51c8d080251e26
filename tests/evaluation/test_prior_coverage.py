"""Default-box coverage on hand cases, IoU k-means, and a fitted layout that covers more."""

from __future__ import annotations

import math

import pytest
import torch

from ssd.evaluation.coverage import (
    best_prior_iou,
    coverage_summary,
    fit_prior_layout,
    gt_boxes_normalised,
    kmeans_iou,
)


def test_best_iou_and_shares_on_a_hand_case() -> None:
    priors = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.25, 0.25, 0.1, 0.1]])
    gt = torch.tensor(
        [
            [0.5, 0.5, 0.5, 0.5],  # exactly the first prior: 1
            [0.5, 0.5, 0.25, 0.25],  # a quarter of its area, same centre: 0.25
            [0.25, 0.25, 0.1, 0.05],  # half the second prior: 0.5
        ]
    )
    best, index = best_prior_iou(gt, priors, chunk=2)
    torch.testing.assert_close(best, torch.tensor([1.0, 0.25, 0.5]))
    assert index.tolist() == [0, 0, 1]
    areas = torch.tensor([200.0 * 200, 100.0 * 100, 20.0 * 10])  # large, large... small
    summary = coverage_summary(best, areas, threshold=0.5, bins=4)
    assert summary["share_covered"] == pytest.approx(2 / 3)
    assert summary["by_size"]["large"] == {"count": 2, "share_covered": 0.5, "mean_best_iou": 0.625}
    assert summary["by_size"]["small"]["share_covered"] == 1.0
    assert summary["by_size"]["medium"]["count"] == 0
    assert summary["histogram"]["counts"] == [0, 1, 1, 1]


def test_pixel_boxes_are_normalised_per_axis() -> None:
    dataset = {
        "images": [{"id": 1, "width": 200, "height": 100}],
        "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [50, 25, 100, 50]}],
    }
    boxes, areas, ids = gt_boxes_normalised(dataset)
    torch.testing.assert_close(boxes, torch.tensor([[0.5, 0.5, 0.5, 0.5]]))
    assert areas.tolist() == [5000.0] and ids == [5]


def test_kmeans_iou_finds_two_shapes() -> None:
    g = torch.Generator().manual_seed(0)
    tall = torch.tensor([0.1, 0.3]) * (1 + 0.05 * torch.randn(50, 2, generator=g))
    wide = torch.tensor([0.4, 0.2]) * (1 + 0.05 * torch.randn(50, 2, generator=g))
    centroids = kmeans_iou(torch.cat([tall, wide]), k=2)
    torch.testing.assert_close(centroids, torch.tensor([[0.1, 0.3], [0.4, 0.2]]), atol=0.02, rtol=0)


def _grid_priors(scales: list[float], ratios: list[list[float]]) -> torch.Tensor:
    """A tiny SSD-style generator (maps 16x16 and 8x8) for the test: squares s_k and
    sqrt(s_k s_k+1), then (r, 1/r) per ratio (the project's: ssd.model.priors.default_boxes)."""
    boxes = []
    for k, f in enumerate((16, 8)):
        sizes = [(scales[k], scales[k]), (math.sqrt(scales[k] * scales[k + 1]),) * 2]
        for r in ratios[k]:
            sizes += [(scales[k] * math.sqrt(r), scales[k] / math.sqrt(r))]
            sizes += [(scales[k] / math.sqrt(r), scales[k] * math.sqrt(r))]
        for i in range(f):
            for j in range(f):
                for w, h in sizes:
                    boxes.append([(j + 0.5) / f, (i + 0.5) / f, w, h])
    return torch.tensor(boxes)


def _wide_boxes(n: int = 300) -> torch.Tensor:
    """Boxes about 3.2 : 1 (w 0.30-0.35, h 0.1), centres anywhere in the middle."""
    g = torch.Generator().manual_seed(0)
    centres = 0.2 + 0.6 * torch.rand(n, 2, generator=g)
    wide = torch.stack([0.3 + 0.05 * torch.rand(n, generator=g), 0.1 * torch.ones(n)], dim=1)
    return torch.cat([centres, wide], dim=1)


def test_fitted_scales_cover_more_than_a_bad_layout() -> None:
    gt = _wide_boxes()
    bad_scales, bad_ratios = [0.7, 0.8, 0.9], [[2.0], [2.0]]
    before, _ = best_prior_iou(gt, _grid_priors(bad_scales, bad_ratios))
    proposal = fit_prior_layout(gt, bad_scales, bad_ratios, _grid_priors)
    assert len(proposal.scales) == 3 and [len(r) for r in proposal.aspect_ratios] == [1, 1]
    after, _ = best_prior_iou(gt, _grid_priors(proposal.scales, proposal.aspect_ratios))
    assert proposal.share_covered == pytest.approx(float((after >= 0.5).float().mean()))
    assert proposal.start_share_covered == pytest.approx(float((before >= 0.5).float().mean()))
    assert proposal.share_covered > proposal.start_share_covered
    assert after.mean() > before.mean() + 0.2
    assert proposal.scales[0] < 0.3  # walked down from 0.7 towards the boxes' scale (~0.18)


def test_kmeans_ratios_replace_ratios_that_do_not_fit() -> None:
    gt = _wide_boxes()
    proposal = fit_prior_layout(gt, [0.18, 0.8, 0.9], [[1.25], [2.0]], _grid_priors)
    assert proposal.aspect_ratios[0] == [3.25]  # k-means on (w, h): the boxes are ~3.2 : 1
    assert proposal.share_covered > proposal.start_share_covered + 0.5


def test_fit_never_covers_less_than_the_start() -> None:
    gt = torch.tensor([[0.5, 0.5, 0.25, 0.25], [0.3, 0.3, 0.2, 0.2]])
    start_scales, start_ratios = [0.25, 0.5, 0.75], [[2.0], [2.0]]
    proposal = fit_prior_layout(gt, start_scales, start_ratios, _grid_priors)
    assert proposal.share_covered >= proposal.start_share_covered
    assert proposal.mean_best_iou >= proposal.start_mean_best_iou
