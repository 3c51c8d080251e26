"""Default boxes follow the paper's formulas, and the counts match SSD300 / SSD512."""

from __future__ import annotations

import math

import pytest
import torch

from ssd.config import ModelConfig, PriorConfig
from ssd.model.builder import build_priors, describe_model, feature_map_sizes
from ssd.model.priors import default_boxes, paper_scales


def test_paper_scales_formula() -> None:
    # conv4_3 gets 0.1; the other 5 maps follow s_min + (s_max - s_min)(k-1)/(m-1).
    s = paper_scales(6, 0.2, 0.9, 0.1)
    assert s[:6] == pytest.approx([0.1, 0.2, 0.375, 0.55, 0.725, 0.9])
    assert s[6] == pytest.approx(1.075)  # one step past s_max, for sqrt(s_6 * s_7)
    assert paper_scales(6, 0.2, 0.9, None)[:6] == pytest.approx([0.2, 0.34, 0.48, 0.62, 0.76, 0.9])


@pytest.mark.parametrize(
    ("size", "maps", "count"),
    [
        (300, [[38, 38], [19, 19], [10, 10], [5, 5], [3, 3], [1, 1]], 8732),
        (512, [[64, 64], [32, 32], [16, 16], [8, 8], [4, 4], [2, 2], [1, 1]], 24564),
    ],
)
def test_vgg_counts_from_dry_run(size: int, maps: list[list[int]], count: int) -> None:
    cfg = ModelConfig(backbone="vgg16", input_size=size)
    assert [list(m) for m in feature_map_sizes(cfg)] == maps
    assert build_priors(cfg).shape == (count, 4)


def test_other_input_size_just_works() -> None:
    cfg = ModelConfig(backbone="vgg16", input_size=400)
    maps = feature_map_sizes(cfg)
    assert maps[0] == (50, 50) and maps[-1] == (1, 1)
    desc = describe_model(cfg, num_classes=3)
    assert desc["num_priors"] == sum(
        h * w * k for (h, w), k in zip(maps, desc["boxes_per_location"], strict=True)
    )


def test_box_shapes_and_centres() -> None:
    priors = default_boxes([(2, 2)], [0.2, 0.8], [[2.0]])
    assert priors.shape == (2 * 2 * 4, 4)
    first = priors[:4]
    # centres ((j + 0.5) / |f_k|, (i + 0.5) / |f_k|)
    assert torch.allclose(first[:, :2], torch.tensor([0.25, 0.25]).expand(4, 2))
    w, h = first[:, 2], first[:, 3]
    assert w[0] == pytest.approx(0.2) and h[0] == pytest.approx(0.2)
    assert w[1] == pytest.approx(math.sqrt(0.2 * 0.8))  # extra square box
    assert (w[2] / h[2]).item() == pytest.approx(2.0)  # a_r = 2
    assert (w[3] / h[3]).item() == pytest.approx(0.5)  # a_r = 1/2
    # row-major: second location is (x=0.75, y=0.25)
    assert torch.allclose(priors[4, :2], torch.tensor([0.75, 0.25]))


def test_corner_clip_keeps_boxes_in_image() -> None:
    priors = default_boxes([(3, 3)], [0.9, 1.0], [[2.0, 3.0]], clip="corners")
    x1y1 = priors[:, :2] - priors[:, 2:] / 2
    x2y2 = priors[:, :2] + priors[:, 2:] / 2
    assert (x1y1 >= -1e-6).all() and (x2y2 <= 1 + 1e-6).all()


def test_explicit_scales_must_fit_the_maps() -> None:
    cfg = ModelConfig(backbone="vgg16", priors=PriorConfig(scales=[0.1, 0.2]))
    with pytest.raises(ValueError, match=r"model.priors.scales needs 7 values"):
        build_priors(cfg)
