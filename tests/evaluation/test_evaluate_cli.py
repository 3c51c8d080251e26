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
    assert "rejected 1 detections: box outside the image" in res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["map50"] == 0.5 and metrics["num_rejected_detections"] == 1


def test_evaluate_takes_one_source_defaulting_to_the_trained_model(tmp_path) -> None:
    res = runner.invoke(app, ["evaluate", "--set", f"train.out_dir={tmp_path / 'nothing'}"])
    assert res.exit_code == 2
    assert "nothing/ssd' does not exist; train first" in res.output
    res = runner.invoke(app, ["evaluate", "--model", "m", "--detections", "d.json"])
    assert res.exit_code == 2 and "not both" in res.output
