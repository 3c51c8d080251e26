"""TIDE error types and dAP agree with the reference implementation (PyPI ``tidecv``)."""

from __future__ import annotations

import pytest
from eval_cases import coco_dict, random_case

from ssd.evaluation.tide import tide_evaluate

tidecv = pytest.importorskip("tidecv")

SHORT = {"Cls": "cls", "Loc": "loc", "Both": "both", "Dupe": "dupe", "Bkg": "bkg", "Miss": "miss"}


def _reference(images, anns, dets):
    from tidecv import TIDE, Data

    gt = Data("gt")
    for im in images:
        gt.add_image(im["id"], str(im["id"]))
    for a in anns:
        gt.add_ground_truth(a["image_id"], a["category_id"], a["bbox"])
    preds = Data("preds")
    for d in dets:
        preds.add_detection(d["image_id"], d["category_id"], d["score"], d["bbox"])
    return TIDE().evaluate(gt, preds, mode=TIDE.BOX)


@pytest.mark.parametrize("seed", [1, 7])
def test_dap_matches_tidecv(seed) -> None:
    from tidecv.errors.qualifiers import AREA

    images, anns, dets = random_case(seed, num_images=50)
    run = _reference(images, anns, dets)
    ours = tide_evaluate(coco_dict(images, anns, 4), dets)

    assert ours.ap50 == pytest.approx(run.ap / 100, abs=1e-9)
    for err, dap in run.fix_main_errors().items():
        assert ours.dap[SHORT[err.short_name]] == pytest.approx(dap / 100, abs=1e-9), err.short_name
    for qual in AREA:  # per-size dAP: tidecv's own qualifier path (Small/Medium/Large)
        for err, dap in run.fix_main_errors(qual=qual).items():
            got = ours.dap_by_size[qual.name.lower()][SHORT[err.short_name]]
            assert got == pytest.approx(dap / 100, abs=1e-9), (qual.name, err.short_name)
    for err, n in run.count_errors().items():
        assert ours.counts[SHORT[err.short_name]] == n
    fp, fn = run.fix_special_errors().values()
    assert ours.special["fp"] == pytest.approx(fp / 100, abs=1e-9)
    assert ours.special["fn"] == pytest.approx(fn / 100, abs=1e-9)


def test_labels_on_a_hand_case() -> None:
    images = [{"id": 1, "width": 200, "height": 200}, {"id": 2, "width": 200, "height": 200}]
    anns = [
        {"id": 10, "image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50]},
        {"id": 11, "image_id": 1, "category_id": 2, "bbox": [100, 100, 50, 50]},
        {"id": 12, "image_id": 1, "category_id": 1, "bbox": [0, 120, 40, 40]},
        {"id": 13, "image_id": 2, "category_id": 1, "bbox": [50, 50, 60, 60]},
    ]
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50], "score": 0.9},  # tp
        {"image_id": 1, "category_id": 1, "bbox": [2, 2, 50, 50], "score": 0.8},  # dupe
        {"image_id": 1, "category_id": 1, "bbox": [100, 100, 50, 50], "score": 0.7},  # cls
        {"image_id": 1, "category_id": 2, "bbox": [170, 0, 20, 20], "score": 0.6},  # bkg
        {"image_id": 2, "category_id": 1, "bbox": [50, 50, 30, 30], "score": 0.5},  # loc (IoU .25)
        {"image_id": 2, "category_id": 2, "bbox": [50, 50, 30, 30], "score": 0.4},  # both
    ]
    res = tide_evaluate(coco_dict(images, anns, 2), dets)
    assert res.detection_labels == ["tp", "dupe", "cls", "bkg", "loc", "both"]
    # GT 11 would be fixed by the cls error, GT 13 by the loc error, GT 12 nobody found
    assert res.gt_labels == {10: "tp", 11: "cls", 12: "miss", 13: "loc"}
    assert res.gt_match[10] == 0 and res.gt_match[12] is None
    assert res.counts == {"cls": 1, "loc": 1, "both": 1, "dupe": 1, "bkg": 1, "miss": 1}
    run = _reference(images, anns, dets)
    for err, dap in run.fix_main_errors().items():
        assert res.dap[SHORT[err.short_name]] == pytest.approx(dap / 100, abs=1e-9)
