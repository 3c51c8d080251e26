"""Saved detectors reload bit-exact without pickle; detection returns boxes in image pixels."""

from __future__ import annotations

import json

import pytest
import torch

from ssd.config import ModelConfig, PostprocessConfig
from ssd.errors import WeightsError
from ssd.infer.detector import Detector, load_detector
from ssd.model.builder import build_model
from ssd.model.weights import load_model, save_detector


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="efficientnet_lite0", input_size=160, backbone_weights=None)
    return build_model(cfg, num_classes=3).eval(), cfg


def test_round_trip_is_exact_and_uses_safetensors(tmp_path, small_model) -> None:
    model, cfg = small_model
    out = save_detector(tmp_path / "det", model, cfg, ["a", "b", "c"])
    assert (out / "model.safetensors").is_file()
    meta = json.loads((out / "model.json").read_text())
    assert meta["class_names"] == ["a", "b", "c"] and meta["input_size"] == 160
    loaded, _, names = load_model(out)
    x = torch.rand(1, 3, 160, 160)
    with torch.inference_mode():
        for a, b in zip(model(x), loaded(x), strict=True):
            assert torch.equal(a, b)
    assert names == ["a", "b", "c"]


def test_missing_checkpoint_says_what_to_do(tmp_path) -> None:
    with pytest.raises(WeightsError, match="no detector weights"):
        load_detector(tmp_path / "nothing")


def test_detections_are_in_each_images_pixels(small_model) -> None:
    model, _ = small_model
    post = PostprocessConfig(score_threshold=0.0)
    det = Detector(model, ["a", "b", "c"], post, "cpu")
    images = [
        torch.randint(0, 255, (3, 90, 240), dtype=torch.uint8),
        torch.randint(0, 255, (3, 300, 120), dtype=torch.uint8),
    ]
    out = det.predict(images)
    assert len(out) == 2
    for d, img in zip(out, images, strict=True):
        h, w = img.shape[1:]
        assert 0 < len(d["boxes"]) <= post.detections_per_image
        assert (d["boxes"][:, [0, 2]] <= w).all() and (d["boxes"][:, [1, 3]] <= h).all()
        assert (d["boxes"] >= 0).all()
        assert ((d["labels"] >= 1) & (d["labels"] <= 3)).all()
        assert torch.all(d["scores"][:-1] >= d["scores"][1:])
