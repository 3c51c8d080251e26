"""COCO metrics equal plain pycocotools' on the same detections."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ssd.evaluation.coco import STAT_NAMES, coco_evaluate


def _reference(dataset, dets):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(dataset)
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(dets))
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_matches_pycocotools_to_1e6(toy_case, backend) -> None:
    dataset, dets = toy_case
    ref = _reference(dataset, dets)
    ours = coco_evaluate(dataset, dets, backend=backend)
    for name, value in zip(STAT_NAMES, ref.stats, strict=False):
        if value < 0:
            assert ours.stats[name] is None
        else:
            assert ours.stats[name] == pytest.approx(value, abs=1e-6), name
    np.testing.assert_allclose(ours.precision, ref.eval["precision"], atol=1e-6)
    for k, cat in enumerate(ref.params.catIds):
        p = ref.eval["precision"][:, :, k, 0, -1]
        assert ours.per_class[cat]["ap"] == pytest.approx(p[p > -1].mean(), abs=1e-6)
        p50 = p[0]
        assert ours.per_class[cat]["ap50"] == pytest.approx(p50[p50 > -1].mean(), abs=1e-6)


def test_no_detections_gives_zero_not_a_crash(toy_case) -> None:
    dataset, _ = toy_case
    result = coco_evaluate(dataset, [])
    assert result.stats["map"] == 0.0 and result.stats["map50"] == 0.0


def test_perfect_detections_give_ap_one(toy_case) -> None:
    dataset, _ = toy_case
    dets = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 1.0,
        }
        for a in dataset["annotations"]
    ]
    result = coco_evaluate(dataset, dets)
    assert result.stats["map"] == pytest.approx(1.0)
