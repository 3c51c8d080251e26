"""VOC mAP@0.5 in both forms on hand-computed cases; difficult boxes are ignored."""

from __future__ import annotations

import numpy as np
import pytest

from ssd.evaluation.voc import voc07_ap, voc_area_ap, voc_evaluate


def _case(difficult_flag: int):
    # Image 1: GT a, b; image 2: GT c and a 'difficult' GT d. One class.
    images = [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20]},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 20]},
        {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 30, 30]},
        {
            "id": 4,
            "image_id": 2,
            "category_id": 1,
            "bbox": [60, 60, 30, 30],
            "difficult": difficult_flag,
        },
    ]
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "score": 0.9},  # TP (a)
        {
            "image_id": 1,
            "category_id": 1,
            "bbox": [1, 1, 20, 20],
            "score": 0.8,
        },  # duplicate of a: FP
        {"image_id": 2, "category_id": 1, "bbox": [0, 0, 30, 30], "score": 0.7},  # TP (c)
        {"image_id": 2, "category_id": 1, "bbox": [60, 60, 30, 30], "score": 0.6},  # on d
        {"image_id": 2, "category_id": 1, "bbox": [40, 0, 10, 10], "score": 0.5},  # FP (background)
        {"image_id": 1, "category_id": 2, "bbox": [50, 50, 20, 20], "score": 0.4},  # other class
    ]
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def test_hand_computed_steps_with_difficult_ignored() -> None:
    dataset, dets = _case(difficult_flag=1)
    res = voc_evaluate(dataset, dets)
    c = res.per_class[1]
    # counted sequence TP, FP, TP, FP (the hit on the difficult box is dropped); 3 positives
    np.testing.assert_allclose(c.precision, [1, 1 / 2, 2 / 3, 2 / 4])
    np.testing.assert_allclose(c.recall, [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert c.num_gt == 3 and c.num_difficult == 1
    # 11-point: recall thresholds 0..0.3 -> 1, 0.4..0.6 -> 2/3, 0.7..1 -> 0
    assert c.ap07 == pytest.approx((4 * 1 + 3 * 2 / 3) / 11)
    # area: 1/3 of recall at precision 1, then 1/3 at precision 2/3
    assert c.ap == pytest.approx(1 / 3 + 1 / 3 * 2 / 3)
    # class 2 has no GT: undefined and left out of the mean
    assert res.per_class[2].ap is None
    assert res.map07 == pytest.approx(c.ap07) and res.map == pytest.approx(c.ap)


def test_same_box_counts_when_not_difficult() -> None:
    dataset, dets = _case(difficult_flag=0)
    c = voc_evaluate(dataset, dets).per_class[1]
    # TP, FP, TP, TP, FP over 4 positives
    np.testing.assert_allclose(c.precision, [1, 1 / 2, 2 / 3, 3 / 4, 3 / 5])
    assert c.ap == pytest.approx(0.25 * 1 + 0.25 * 3 / 4 + 0.25 * 3 / 4)
    # 11-point: t ≤ .25 -> 1; .3..0.7 -> 3/4; .8..1 -> 0  => (3*1 + 5*0.75)/11
    assert c.ap07 == pytest.approx((3 + 5 * 0.75) / 11)


def test_ap_forms_on_known_steps() -> None:
    recall = np.array([0.2, 0.4, 0.4, 0.6])
    precision = np.array([1.0, 1.0, 0.5, 0.6])
    # envelope: 1 up to 0.4, 0.6 up to 0.6, then nothing
    assert voc_area_ap(recall, precision) == pytest.approx(0.4 * 1 + 0.2 * 0.6)
    # thresholds 0..0.4 -> 1 (5), 0.5, 0.6 -> 0.6 (2), rest 0
    assert voc07_ap(recall, precision) == pytest.approx((5 + 2 * 0.6) / 11)
    assert voc07_ap(np.array([]), np.array([])) == 0.0
