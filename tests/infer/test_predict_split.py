"""``predict_split`` reads the split's images, runs a detector, and returns COCO results;
``detect_split`` refuses a detector trained on other classes."""

from __future__ import annotations

import pytest
import torch
from eval_cases import write_prepared

from ssd.data.prepared import PreparedSplit
from ssd.errors import EvaluationError
from ssd.evaluation.report import evaluate_detections
from ssd.infer.predict import detect_split, predict_split


class FakeDetector:
    def __init__(self) -> None:
        self.class_names = ["cat", "dog"]
        self.seen: list[tuple[int, ...]] = []

    def predict(self, images):
        self.seen += [tuple(im.shape) for im in images]
        return [
            {
                "boxes": torch.tensor([[1.0, 2.0, 11.0, 22.0]]),
                "scores": torch.tensor([0.5]),
                "labels": torch.tensor([2]),
            }
            for _ in images
        ]


@pytest.fixture
def prepared(tmp_path):
    images = [{"id": i, "width": 40 + i, "height": 30} for i in range(1, 6)]
    anns = [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 20]}]
    root = write_prepared(tmp_path / "p", "test", images, anns, ["cat", "dog"], write_images=True)
    return PreparedSplit.load(root, "test")


def test_fake_detector_results_are_coco(prepared) -> None:
    det = FakeDetector()
    results, ips = predict_split(det, prepared, batch_size=2, progress=False)
    assert det.seen[0] == (3, 30, 41) and len(det.seen) == 5
    assert len(results) == 5 and ips > 0
    assert results[0] == {
        "image_id": 1,
        "category_id": 2,
        "bbox": [1.0, 2.0, 10.0, 20.0],
        "score": 0.5,
    }


def test_real_detector_end_to_end(prepared, tmp_path) -> None:
    inference = pytest.importorskip("ssd.infer.detector")
    from ssd.config import ModelConfig
    from ssd.model.builder import build_model
    from ssd.model.weights import save_detector

    torch.manual_seed(0)
    cfg = ModelConfig(backbone="efficientnet_lite0", input_size=128, backbone_weights=None)
    model = build_model(cfg, num_classes=2).eval()
    path = save_detector(tmp_path / "det", model, cfg, ["cat", "dog"])
    detector = inference.load_detector(path, device="cpu")
    results, _ = predict_split(detector, prepared, batch_size=4, progress=False)
    assert all(r["category_id"] in (1, 2) and len(r["bbox"]) == 4 for r in results)
    found = detect_split(path, prepared, device="cpu", progress=False)
    metrics = evaluate_detections(
        prepared,
        found.detections,
        tmp_path / "r",
        found.priors,
        found.images_per_second,
        sample_images=1,
    )
    assert metrics["images_per_second"] > 0 and metrics["coverage"] is not None

    other = save_detector(tmp_path / "other", model, cfg, ["cat", "bird"])
    with pytest.raises(EvaluationError, match="class mismatch"):
        detect_split(other, prepared, device="cpu")
