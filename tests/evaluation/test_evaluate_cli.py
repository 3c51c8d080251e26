"""``ssd evaluate --detections`` and ``ssd suggest-priors`` from the command line."""

from __future__ import annotations

import json

from eval_cases import write_prepared
from typer.testing import CliRunner

from ssd.cli import app

runner = CliRunner()


def _setup(tmp_path):
    images = [{"id": i, "width": 64, "height": 64} for i in (1, 2)]
    anns = [
        {"image_id": 1, "category_id": 1, "bbox": [4, 4, 30, 20]},
        {"image_id": 2, "category_id": 2, "bbox": [10, 10, 40, 40]},
    ]
    root = tmp_path / "prepared"
    write_prepared(root / "toy", "test", images, anns, ["a", "b"])
    write_prepared(root / "toy", "train", images, anns, ["a", "b"])
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [4, 4, 30, 20], "score": 0.9},
        {"image_id": 2, "category_id": 2, "bbox": [0, 0, 1e9, 5], "score": 0.8},
    ]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(dets))
    return root, path


def test_evaluate_detection_file(tmp_path) -> None:
    root, results = _setup(tmp_path)
    out = tmp_path / "out"
    args = ["evaluate", "--detections", str(results), "--split", "test", "--out", str(out)]
    args += ["--set", "data.name=toy", "--set", f"data.prepared_root={root}"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "1 detections reach past the image border" in res.output
    metrics = json.loads((out / "evaluation.json").read_text())
    assert metrics["map50"] == 0.5 and metrics["num_rejected_detections"] == 0


def test_evaluate_takes_one_source_defaulting_to_the_trained_model(tmp_path) -> None:
    root, _ = _setup(tmp_path)
    sets = ["--set", "data.name=toy", "--set", f"data.prepared_root={root}"]
    res = runner.invoke(app, ["evaluate", *sets, "--set", f"train.out_dir={tmp_path / 'nothing'}"])
    assert res.exit_code == 2
    assert "nothing/toy/ssd' does not exist; train first" in res.output
    res = runner.invoke(app, ["evaluate", "--model", "m", "--detections", "d.json"])
    assert res.exit_code == 2 and "not both" in res.output


def test_results_file_with_boxes_past_the_border_scores_as_pycocotools(tmp_path) -> None:
    """Real detectors emit boxes that reach past the image; pycocotools scores them as given,
    and so must `ssd evaluate --detections` (to 1e-6), counting them on the way."""
    import contextlib
    import copy
    import io

    from eval_cases import coco_dict, random_case
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from ssd.evaluation.coco import STAT_NAMES

    images, anns, dets = random_case(seed=3, num_images=30, size=300)
    for n, d in enumerate(dets):  # push every third box past the left / bottom border
        x, y, w, h = d["bbox"]
        if n % 3 == 0:
            d["bbox"] = [-10.0, y, w + 10.0, h]
        elif n % 3 == 1:
            d["bbox"] = [x, y, w, h + 400.0]
    past = sum(
        1
        for d in dets
        if d["bbox"][0] < 0
        or d["bbox"][1] + d["bbox"][3] > 300
        or d["bbox"][0] + d["bbox"][2] > 300
    )
    assert past > len(dets) / 2
    root = tmp_path / "prepared"
    write_prepared(root / "toy", "test", images, anns, ["c1", "c2", "c3", "c4"])
    results = tmp_path / "results.json"
    results.write_text(json.dumps(dets))
    out = tmp_path / "out"
    args = ["evaluate", "--detections", str(results), "--out", str(out)]
    args += ["--set", "data.name=toy", "--set", f"data.prepared_root={root}"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert f"{past} detections reach past the image border" in res.output
    metrics = json.loads((out / "evaluation.json").read_text())
    assert metrics["num_detections"] == len(dets) and metrics["num_rejected_detections"] == 0

    dataset = coco_dict(images, anns, 4)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(dataset)
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(dets)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    for name, value in zip(STAT_NAMES, ev.stats, strict=False):
        expected = None if value < 0 else float(value)
        if expected is None:
            assert metrics[name] is None, name
        else:
            assert abs(metrics[name] - expected) < 1e-6, name
