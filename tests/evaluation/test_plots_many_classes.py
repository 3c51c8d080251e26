"""Plots stay readable with 80 classes: statistics and PR curves show the classes that have
ground truth, with legible labels; a split without boxes draws without an error."""

from __future__ import annotations

from PIL import Image

from ssd.data.stats import compute_stats, plot_stats
from ssd.evaluation.coco import coco_evaluate
from ssd.evaluation.plots import plot_pr_curves

CLASSES = [f"class number {i:02d}" for i in range(80)]
WITH_BOXES = [3, 17, 42, 64, 79]


def _split(n_images: int = 4) -> dict:
    images = [
        {"id": i + 1, "file_name": f"{i}.png", "width": 200, "height": 100} for i in range(n_images)
    ]
    annotations = []
    for n, cat in enumerate(WITH_BOXES * 2):
        x = 10 + 30 * (n % 5)
        annotations.append(
            {"id": n + 1, "image_id": n % n_images + 1, "category_id": cat + 1,
             "bbox": [x, 20, 25, 30], "area": 750.0, "iscrowd": 0, "difficult": 0}
        )  # fmt: skip
    categories = [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def test_statistics_show_the_classes_with_boxes(tmp_path) -> None:
    splits = {"train": _split(), "val": _split(), "test": _split()}
    stats = compute_stats(splits, CLASSES)
    shown = plot_stats(splits, CLASSES, stats, tmp_path / "stats.png")
    assert shown == [CLASSES[i] for i in WITH_BOXES]
    with Image.open(tmp_path / "stats.png") as im:
        assert im.size[0] >= 1200  # wide enough for the names
    # eighty classes with boxes: one bar each, the figure grows with them
    every = {"train": {**_split(), "annotations": [
        {"id": i + 1, "image_id": 1, "category_id": i + 1, "bbox": [1, 1, 5, 5], "area": 25.0,
         "iscrowd": 0, "difficult": 0} for i in range(80)]}}  # fmt: skip
    assert (
        len(plot_stats(every, CLASSES, compute_stats(every, CLASSES), tmp_path / "all.png")) == 80
    )
    with Image.open(tmp_path / "all.png") as im:
        assert im.size[1] >= 80 * 12  # at least 12 px of height per class name


def test_statistics_of_a_split_without_boxes_draw(tmp_path) -> None:
    empty = {"train": {**_split(), "annotations": []}}
    assert plot_stats(empty, CLASSES, compute_stats(empty, CLASSES), tmp_path / "s.png") == []
    assert (tmp_path / "s.png").stat().st_size > 0


def test_pr_curves_show_the_classes_with_ground_truth(tmp_path) -> None:
    gt = _split()
    dets = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 0.9,
        }
        for a in gt["annotations"]
    ]
    coco = coco_evaluate(gt, dets)
    shown = plot_pr_curves(coco, CLASSES, tmp_path / "pr.png")
    assert shown == [CLASSES[i] for i in WITH_BOXES]
    with Image.open(tmp_path / "pr.png") as im:
        assert im.size[0] >= 4 * 300  # panels keep their size: titles stay legible
