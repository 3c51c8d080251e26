"""The ``postprocess`` section decides at evaluate / detect / export time, whatever the
detector was trained with, and the outputs say which values were used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from eval_cases import write_prepared
from typer.testing import CliRunner

from ssd.cli import app
from ssd.config import ModelConfig
from ssd.model.builder import build_model
from ssd.model.weights import save_detector

runner = CliRunner()
NAMES = ["cat", "dog"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("post")
    images = [{"id": i, "width": 96, "height": 80} for i in (1, 2, 3)]
    anns = [{"image_id": 1, "category_id": 1, "bbox": [4, 4, 30, 20]}]
    prepared = write_prepared(root / "prepared" / "toy", "test", images, anns, NAMES, True)
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="efficientnet_lite0", input_size=128, backbone_weights=None)
    detector = save_detector(root / "models" / "toy" / "ssd", build_model(cfg, 2), cfg, NAMES)
    return {"root": root, "prepared": prepared, "detector": detector}


def _sets(project: dict[str, Path], *extra: str) -> list[str]:
    out = []
    for s in (
        "data.name=toy",
        f"data.prepared_root={project['root'] / 'prepared'}",
        f"train.out_dir={project['root'] / 'models'}",
        *extra,
    ):
        out += ["--set", s]
    return out


def test_evaluate_uses_the_postprocess_section(project, tmp_path) -> None:
    counts = {}
    for nms, per_image in ((0.45, 200), (0.2, 5)):
        out = tmp_path / f"r{nms}"
        sets = _sets(
            project,
            f"postprocess.nms_threshold={nms}",
            f"postprocess.detections_per_image={per_image}",
        )
        res = runner.invoke(app, ["evaluate", "--out", str(out), *sets])
        assert res.exit_code == 0, res.output
        metrics = json.loads((out / "evaluation.json").read_text())
        assert metrics["postprocess"]["nms_threshold"] == nms
        assert metrics["postprocess"]["detections_per_image"] == per_image
        counts[nms] = metrics["num_detections"]
    assert counts[0.2] <= 3 * 5 < counts[0.45]  # an untrained net fires everywhere


def test_detect_and_export_use_the_postprocess_section(project, tmp_path) -> None:
    image = project["prepared"] / "images" / "1.png"
    out = tmp_path / "d"
    sets = _sets(
        project, "postprocess.detect_score_threshold=0.0", "postprocess.detections_per_image=3"
    )
    res = runner.invoke(
        app, ["detect", str(image), "--model", str(project["detector"]), "--out", str(out), *sets]
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["postprocess"]["detections_per_image"] == 3
    assert summary["images"][0]["num_detections"] == 3

    onnx = tmp_path / "m.onnx"
    sets = _sets(project, "postprocess.nms_threshold=0.3")
    res = runner.invoke(
        app, ["export", "--model", str(project["detector"]), "--out", str(onnx), *sets]
    )
    assert res.exit_code == 0, res.output
    from ssd.infer.export import read_onnx_metadata

    assert read_onnx_metadata(onnx)["nms_threshold"] == 0.3
