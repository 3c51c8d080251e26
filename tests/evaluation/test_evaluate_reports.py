"""``evaluate_detections`` writes every report, and rejects bad detections visibly."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from eval_cases import write_prepared

from ssd.data.prepared import PreparedSplit
from ssd.errors import DataError, EvaluationError
from ssd.evaluation.report import evaluate_detections
from ssd.evaluation.score import REQUIRED_KEYS
from ssd.infer.predict import detect_split

CLASSES = ["cat", "dog"]


@pytest.fixture
def prepared(tmp_path):
    images = [{"id": i, "width": 64, "height": 48} for i in (1, 2, 3)]
    anns = [
        {"image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 20]},
        {"image_id": 1, "category_id": 2, "bbox": [30, 10, 30, 30]},
        {"image_id": 2, "category_id": 1, "bbox": [10, 10, 40, 30], "difficult": 1},
        {"image_id": 3, "category_id": 2, "bbox": [0, 0, 8, 8]},
    ]
    return write_prepared(tmp_path / "prepared", "test", images, anns, CLASSES, write_images=True)


def load(root, split="test"):
    return PreparedSplit.load(root, split)


GOOD = [
    {"image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 20], "score": 0.9},
    {"image_id": 1, "category_id": 1, "bbox": [30, 10, 30, 30], "score": 0.8},  # cls error
    {"image_id": 2, "category_id": 1, "bbox": [10, 10, 40, 30], "score": 0.7},
    {"image_id": 3, "category_id": 1, "bbox": [40, 30, 10, 10], "score": 0.6},  # background
]
BAD = [
    {"image_id": 99, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5},
    {"image_id": 1, "category_id": 7, "bbox": [0, 0, 5, 5], "score": 0.5},
    {"image_id": 1, "category_id": 1, "bbox": [0, 0, math.nan, 5], "score": 0.5},
    {"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": math.inf},
]
PAST_BORDER = {"image_id": 1, "category_id": 1, "bbox": [50, 40, 30, 30], "score": 0.5}


def test_writes_metrics_plots_and_labels(prepared, tmp_path) -> None:
    out = tmp_path / "reports"
    priors = torch.tensor([[0.25, 0.3, 0.3, 0.4], [0.7, 0.6, 0.5, 0.6]])
    metrics = evaluate_detections(
        load(prepared), [*GOOD, *BAD, PAST_BORDER], out, priors=priors, sample_images=2
    )
    saved = json.loads((out / "evaluation.json").read_text())
    for key in REQUIRED_KEYS:
        assert key in saved, key
    assert saved["map"] == metrics["map"] and 0 < saved["map"] < 1
    assert saved["images_per_second"] is None
    assert set(saved["per_class"]) == set(CLASSES)
    assert set(saved["errors"]["dap"]) == {"cls", "loc", "both", "dupe", "bkg", "miss"}
    assert set(saved["errors"]["dap_by_size"]) == {"small", "medium", "large"}
    # VOC ignores the difficult box on image 2: cat has one positive, hit first -> AP 1
    assert saved["per_class"]["cat"]["voc_ap50"] == pytest.approx(1.0)
    assert saved["per_class"]["cat"]["num_difficult"] == 1
    # bad input is reported, with reasons, and not used
    rejected = saved["rejected_detections"]
    assert rejected["count"] == 4 and saved["num_detections"] == 5
    assert rejected["by_reason"] == {
        "non-finite box or score": 2,
        "unknown category_id": 1,
        "unknown image_id": 1,
    }
    dets = json.loads((out / "errors" / "detections.json").read_text())
    assert [dets[str(i)]["label"] for i in range(4)] == ["tp", "cls", "tp", "bkg"]
    assert dets["4"] == {"label": "rejected", "reason": "unknown image_id"}
    # a box past the border is scored as given (pycocotools does), and counted
    assert dets["8"]["label"] == "bkg" and dets["8"]["bbox"] == PAST_BORDER["bbox"]
    assert saved["num_detections_past_border"] == rejected["kept_past_border"] == 1
    gts = json.loads((out / "errors" / "ground_truth.json").read_text())
    assert gts["1"]["label"] == "tp" and gts["2"]["label"] == "cls" and gts["4"]["label"] == "miss"
    assert gts["1"]["detection"] == 0 and gts["1"]["best_prior_iou"] is not None
    assert saved["coverage"]["count"] == 4 and saved["prior_coverage"] is not None
    # F1 against confidence: cat is perfect above its first false positive (0.8); dog has no
    # detection, so the best mean F1 is 0.5, reached just above 0.8
    assert saved["f1"] == pytest.approx(0.5) and saved["f1_threshold"] == pytest.approx(0.81)
    headline = json.loads((out / "metrics.json").read_text())
    assert headline["f1_threshold"] == saved["f1_threshold"] and "per_class" not in headline
    # confusion at that threshold: rows true, columns predicted, 0 = background
    cm = saved["confusion_matrix"]
    assert cm["labels"] == ["background", "cat", "dog"] and cm["score_threshold"] == 0.81
    assert cm["rows_true_columns_predicted"] == [[0, 0, 0], [1, 1, 0], [2, 0, 0]]
    with (out / "confusion.csv").open() as f:
        pairs = sorted(tuple(r.values()) for r in csv.DictReader(f))
    assert pairs == [
        ("cat", "background"),
        ("cat", "cat"),
        ("dog", "background"),
        ("dog", "background"),
    ]
    for name in (
        "pr_curves",
        "ap_by_size",
        "errors_dap",
        "prior_coverage",
        "confusion_matrix",
        "f1_curve",
    ):
        assert (out / "plots" / f"{name}.png").stat().st_size > 1000
    samples = sorted(p.name for p in (out / "samples").iterdir())
    assert len(samples) == 2 and samples[0].startswith("000_")
    with (out / "pr_curves.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 101 and {"recall", "precision", "precision_cat", "precision_dog"} <= set(
        rows[0]
    )


def test_empty_detections_still_write_reports(prepared, tmp_path) -> None:
    metrics = evaluate_detections(load(prepared), [], tmp_path / "r", plots_enabled=False)
    assert metrics["map"] == 0.0 and metrics["voc_map50"] == 0.0
    assert metrics["errors"]["counts"]["miss"] == 4


def test_missing_and_empty_splits_fail_clearly(prepared) -> None:
    with pytest.raises(DataError, match="split 'val' not found"):
        load(prepared, "val")
    write_prepared(prepared, "train", [], [], CLASSES)
    with pytest.raises(DataError, match="empty"):
        load(prepared, "train")
    with pytest.raises(DataError, match="does not exist"):
        load(prepared.parent / "nowhere")


def test_classes_json_must_agree(prepared) -> None:
    (prepared / "classes.json").write_text(json.dumps(["cat", "bird"]))
    with pytest.raises(DataError, match=r"classes\.json"):
        load(prepared)


def test_missing_detector_fails_clearly(prepared, tmp_path) -> None:
    with pytest.raises(EvaluationError, match=r"detector .* does not exist"):
        detect_split(tmp_path / "no_model", load(prepared))
