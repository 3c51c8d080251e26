"""Exported ONNX and TorchScript detectors give the eager detector's detections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ssd.cli import app
from ssd.config import ModelConfig
from ssd.infer.detector import load_detector, preprocess
from ssd.infer.export import (
    export_detector,
    load_torchscript,
    postprocess_exported,
    read_onnx_metadata,
)
from ssd.model.builder import build_model
from ssd.model.weights import save_detector

NAMES = ["cat", "dog", "bird"]
BACKBONES = ["efficientnet_lite0", "vgg16"]


def _spread_scores(model: torch.nn.Module) -> None:
    """Make random-weight scores far from ties: BatchNorm statistics from a few random
    batches (no dead, constant feature maps), and sharper class predictors."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4, 3, model.input_size, model.input_size, generator=g))
    model.eval()
    with torch.no_grad():
        logits, _ = model(torch.rand(2, 3, model.input_size, model.input_size, generator=g))
        factor = 1.5 / logits.std().item()  # logits of std 1.5: scores spread over (0, 1)
        for pred in model.head.cls:
            last = pred[-1] if isinstance(pred, torch.nn.Sequential) else pred
            last.weight.mul_(factor)


@pytest.fixture(scope="module", params=BACKBONES)
def exported(request, tmp_path_factory):
    torch.manual_seed(0)
    lite = request.param == "efficientnet_lite0"  # as params.yaml ships it: stride-8 map on
    cfg = ModelConfig(
        backbone=request.param,
        input_size=160,
        backbone_weights=None,
        fine_map=lite,
        priors={"first_scale": 0.05, "min_scale": 0.1} if lite else {},
    )
    model = build_model(cfg, num_classes=len(NAMES)).eval()
    _spread_scores(model)
    root = tmp_path_factory.mktemp(request.param)
    det_dir = save_detector(root / "detector", model, cfg, NAMES)
    onnx_path = export_detector(det_dir, "onnx", root / "model.onnx")
    ts_path = export_detector(det_dir, "torchscript", root / "model.torchscript.pt")
    return det_dir, onnx_path, ts_path


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return [
        torch.randint(0, 256, (3, 120, 200), dtype=torch.uint8, generator=g),
        torch.randint(0, 256, (3, 210, 150), dtype=torch.uint8, generator=g),
    ]


def _tie_runs(scores: torch.Tensor, tol: float) -> list[slice]:
    """Runs of consecutive detections whose scores differ by less than ``tol``."""
    runs, start = [], 0
    for i in range(1, len(scores) + 1):
        if i == len(scores) or scores[i - 1] - scores[i] >= tol:
            runs.append(slice(start, i))
            start = i
    return runs


def _sorted_within(d: dict[str, torch.Tensor], run: slice) -> tuple[torch.Tensor, torch.Tensor]:
    labels, boxes = d["labels"][run], d["boxes"][run]
    key = labels.double() * 1e8 + boxes[:, 0].double() * 1e4 + boxes[:, 1].double()
    order = torch.argsort(key)
    return labels[order], boxes[order]


def _eager(det_dir, images) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
    """The eager detector's detections, and its raw scores ``[N, A, C]`` (no NMS)."""
    detector = load_detector(det_dir, "cpu")
    x = preprocess(images, detector.input_size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        logits, _ = detector.model(x)
    return detector.predict(images), torch.softmax(logits, dim=-1)[..., 1:]


def _tolerance(eager_scores: torch.Tensor, exported_scores, where: str) -> float:
    """Scores closer than this may swap places: 4x the float noise between the runtimes."""
    noise = (eager_scores - torch.as_tensor(exported_scores)).abs().max().item()
    assert noise < 1e-4, f"{where}: raw scores differ by {noise}"
    return max(4 * noise, 1e-6)


def _assert_same_detections(expected, actual, where: str, tol: float) -> None:
    """Same count, labels and order, boxes within 1e-3 px. Detections whose scores differ by
    less than ``tol`` (the runtimes' float noise; rare but possible with random weights)
    may come in either order."""
    assert len(expected) == len(actual) == 2
    for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
        assert len(e["scores"]) > 5, "the test needs detections to compare"
        assert len(e["scores"]) == len(a["scores"]), f"{where} image {i}: number of detections"
        assert torch.allclose(e["scores"], a["scores"], atol=tol), f"{where} image {i}: scores"
        runs = _tie_runs(e["scores"], tol)
        ordered = sum(1 for r in runs if r.stop - r.start == 1)
        assert ordered >= len(e["scores"]) // 2, f"only {ordered} detections with a distinct score"
        for run in runs:
            e_labels, e_boxes = _sorted_within(e, run)
            a_labels, a_boxes = _sorted_within(a, run)
            assert torch.equal(e_labels, a_labels), f"{where} image {i}: labels or order"
            box_err = (e_boxes - a_boxes).abs().max().item()
            assert box_err < 1e-3, f"{where} image {i}: boxes differ by {box_err} px"


def _post(meta, boxes, scores, images):
    return postprocess_exported(
        boxes,
        scores,
        meta["input_size"],
        [tuple(img.shape[-2:]) for img in images],
        score_threshold=meta["score_threshold"],
        nms_threshold=meta["nms_threshold"],
        candidates_per_class=meta["candidates_per_class"],
        detections_per_image=meta["detections_per_image"],
    )


@pytest.mark.slow
def test_onnx_matches_eager_detections(exported, images) -> None:
    import onnxruntime as ort

    det_dir, onnx_path, _ = exported
    eager, eager_scores = _eager(det_dir, images)
    meta = read_onnx_metadata(onnx_path)
    assert meta["class_names"] == NAMES and meta["input_size"] == 160 and meta["nms"] == "caller"
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = preprocess(images, meta["input_size"]).numpy()
    boxes, scores = session.run(["boxes", "scores"], {"images": x})
    assert boxes.shape[:2] == scores.shape[:2] and scores.shape[0] == 2
    assert scores.shape[2] == len(NAMES)
    tol = _tolerance(eager_scores, scores, "onnxruntime")
    _assert_same_detections(eager, _post(meta, boxes, scores, images), "onnxruntime", tol)
    # the batch axis is dynamic: one image alone gives the same outputs
    one_boxes, _ = session.run(["boxes", "scores"], {"images": x[1:]})
    np.testing.assert_allclose(one_boxes[0], boxes[1], atol=1e-3)


@pytest.mark.slow
def test_torchscript_matches_eager_detections(exported, images) -> None:
    det_dir, _, ts_path = exported
    eager, eager_scores = _eager(det_dir, images)
    module, meta = load_torchscript(ts_path)
    assert meta["class_names"] == NAMES and meta["input_size"] == 160
    x = preprocess(images, meta["input_size"])
    with torch.inference_mode():
        boxes, scores = module(x)
        one_boxes, _ = module(x[1:])  # the batch size is free
    torch.testing.assert_close(one_boxes[0], boxes[1], atol=1e-3, rtol=0)
    tol = _tolerance(eager_scores, scores, "TorchScript")
    _assert_same_detections(eager, _post(meta, boxes, scores, images), "TorchScript", tol)


def test_export_cli_writes_a_file_with_metadata(tmp_path) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="efficientnet_lite0", input_size=128, backbone_weights=None)
    det_dir = save_detector(tmp_path / "det", build_model(cfg, 3), cfg, NAMES)
    out = tmp_path / "exported" / "m.pt"
    runner = CliRunner()
    result = runner.invoke(
        app, ["export", "--model", str(det_dir), "--format", "torchscript", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert load_torchscript(out)[1]["class_names"] == NAMES
    bad = runner.invoke(app, ["export", "--model", str(det_dir), "--format", "tflite"])
    assert bad.exit_code == 2 and "onnx, torchscript" in bad.output
    missing = runner.invoke(app, ["export", "--model", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no detector weights" in missing.output
