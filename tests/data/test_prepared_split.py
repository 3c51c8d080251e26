"""One reader of a prepared split, one size-bucket definition, one parse per command."""

from __future__ import annotations

import json
import os

import pytest
from data_builders import make_voc, voc_xml
from typer.testing import CliRunner

from ssd.cli import app
from ssd.data import prepared as prepared_module
from ssd.data.prepare import prepare_dataset
from ssd.data.prepared import PreparedSplit, size_of


def test_size_buckets_follow_pycocotools_ranges() -> None:
    # pycocotools: small [0, 32²], medium [32², 96²], large [96², 1e10] (closed ranges)
    assert size_of(32**2) == "small" and size_of(32**2 + 0.01) == "medium"
    assert size_of(96**2) == "medium" and size_of(96**2 + 0.01) == "large"


def test_statistics_and_evaluation_put_a_box_in_the_same_size(tmp_path, prepare_cfg) -> None:
    """A 32x32 box is 'small' in report.json's statistics and in the evaluation's labels."""
    items = {
        f"im{i}": voc_xml(f"im{i}.jpg", [("cat", (0, 0, 32, 32)), ("dog", (10, 5, 60, 45))])
        for i in range(6)
    }
    src = make_voc(tmp_path / "voc", items)
    out = prepare_dataset(prepare_cfg("voc", src, val_ratio=0.2, test_ratio=0.2)).out_dir
    report = json.loads((out / "report.json").read_text())
    test = PreparedSplit.load(out, "test")
    small_in_report = report["stats"]["per_split"]["test"]["sizes"]["small"]
    assert small_in_report == len(test.images)  # one 32x32 cat per image

    dets = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1}
        for a in test.annotations
    ]
    results = tmp_path / "dets.json"
    results.write_text(json.dumps(dets))
    cwd = os.getcwd()
    loads = []
    original = PreparedSplit.load.__func__  # type: ignore[attr-defined]

    def counting(cls, *args, **kw):
        loads.append(args)
        return original(cls, *args, **kw)

    try:
        prepared_module.PreparedSplit.load = classmethod(counting)  # type: ignore[method-assign]
        res = CliRunner().invoke(
            app,
            [
                "evaluate",
                "--detections",
                str(results),
                "--out",
                str(tmp_path / "r"),
                "--set",
                f"data.prepared_root={out.parent}",
                "--set",
                f"data.name={out.name}",
            ],
        )
    finally:
        prepared_module.PreparedSplit.load = classmethod(original)  # type: ignore[method-assign]
        os.chdir(cwd)
    assert res.exit_code == 0, res.output
    assert len(loads) == 1  # the split is parsed once per command
    gt = json.loads((tmp_path / "r" / "errors" / "ground_truth.json").read_text())
    sizes = [row["size"] for row in gt.values() if row["category_id"] == 1]
    assert sizes == ["small"] * small_in_report


def test_a_missing_split_names_what_to_run(tmp_path) -> None:
    with pytest.raises(ValueError, match="run `ssd prepare` first"):
        PreparedSplit.load(tmp_path / "nothing", "train")
