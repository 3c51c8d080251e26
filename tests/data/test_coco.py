"""COCO JSON input: categories remapped to 1..C, splits from file names, crowd = difficult."""

from __future__ import annotations

from data_builders import coco_boxes, coco_images, make_coco, read_json, reasons

from ssd.data.prepare import prepare_dataset


def test_single_json_remaps_categories(tmp_path, prepare_cfg):
    boxes = coco_boxes(6)
    boxes[0]["iscrowd"] = 1
    src = make_coco(tmp_path / "coco", coco_images(6), boxes)
    out = prepare_dataset(prepare_cfg("coco", src)).out_dir
    assert read_json(out / "classes.json") == ["cat", "dog"]
    anns = {
        a["id"]: a
        for s in ("train", "val", "test")
        for a in read_json(out / f"{s}.json")["annotations"]
    }
    assert sorted(a["category_id"] for a in anns.values()) == [1, 1, 1, 2, 2, 2]
    assert sum(a["difficult"] for a in anns.values()) == 1
    assert all(a["bbox"] == [2.0, 3.0, 20.0, 10.0] for a in anns.values())
    assert reasons(read_json(out / "report.json")) == []


def test_split_per_json(tmp_path, prepare_cfg):
    root = tmp_path / "coco"
    for split, n, first in (("train", 4, 0), ("val", 2, 10), ("test", 2, 20)):
        images = [
            {"id": first + i, "file_name": f"{split}2017/{i}.jpg", "width": 64, "height": 48}
            for i in range(n)
        ]
        boxes = [
            {"id": first + i, "image_id": first + i, "category_id": 1, "bbox": [1, 1, 9, 9]}
            for i in range(n)
        ]
        make_coco(root, images, boxes, json_name=f"annotations/instances_{split}2017.json")
    out = prepare_dataset(prepare_cfg("coco", root)).out_dir
    report = read_json(out / "report.json")
    assert report["counts"]["images"] == {"train": 4, "val": 2, "test": 2}
    assert report["splits"] == {"train": "source", "val": "source", "test": "source"}
    assert read_json(out / "val.json")["images"][0]["file_name"] == "images/val2017/0.jpg"
