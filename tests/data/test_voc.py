"""Pascal VOC input, end to end on the real BCCD dataset and on small built datasets."""

from __future__ import annotations

import hashlib
from pathlib import Path

from data_builders import good_voc, make_voc, read_json, reasons, voc_xml

from ssd.data.prepare import prepare_dataset


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_bccd_end_to_end(bccd, prepare_cfg):
    cfg = prepare_cfg("voc", bccd, name="bccd")
    out = prepare_dataset(cfg).out_dir
    assert out == cfg.prepared_dir
    assert read_json(out / "classes.json") == ["Platelets", "RBC", "WBC"]
    report = read_json(out / "report.json")
    # Splits come from ImageSets/Main (205 / 87 / 72 ids).
    assert report["counts"]["images"] == {"train": 205, "val": 87, "test": 72}
    assert report["splits"] == {"train": "source", "val": "source", "test": "source"}
    # The two published zero-size RBC boxes are reported, not silently dropped.
    zero = [r for r in report["skipped"] if r["reason"] == "zero_area_box"]
    assert {r["file"] for r in zero} == {
        "Annotations/BloodImage_00338.xml",
        "Annotations/BloodImage_00343.xml",
    }
    assert sum(report["counts"]["boxes"].values()) == 4888 - 2
    train = read_json(out / "train.json")
    assert [c["id"] for c in train["categories"]] == [1, 2, 3]
    image = train["images"][0]
    assert image["file_name"].startswith("images/BloodImage_")
    assert (out / image["file_name"]).is_file()
    assert (image["width"], image["height"]) == (640, 480)
    ann = train["annotations"][0]
    assert set(ann) == {"id", "image_id", "category_id", "bbox", "area", "iscrowd", "difficult"}
    x, y, w, h = ann["bbox"]
    assert w > 0 and h > 0 and x + w <= 640 and y + h <= 480
    # ids unique across splits
    ids = [
        im["id"] for s in ("train", "val", "test") for im in read_json(out / f"{s}.json")["images"]
    ]
    assert len(ids) == len(set(ids)) == 364
    assert (out / "stats.png").stat().st_size > 0
    stats = report["stats"]
    assert set(stats["per_split"]["train"]["sizes"]) == {"small", "medium", "large"}
    assert stats["per_class"]["WBC"]["train"]["boxes"] > 0


def test_rerun_is_byte_identical(tmp_path, prepare_cfg):
    src = good_voc(tmp_path / "voc", n=8)
    cfg = prepare_cfg("voc", src)
    result = prepare_dataset(cfg)
    first = _digest(result.out_dir)
    second = _digest(prepare_dataset(cfg).out_dir)
    assert first == second
    assert {
        "train.json",
        "val.json",
        "test.json",
        "classes.json",
        "report.json",
        "stats.png",
    } <= set(first)
    assert result.summary().startswith(f"prepared {result.out_dir}: 8 of 8 images")


def test_difficult_flag_kept_and_ratio_split(tmp_path, prepare_cfg):
    out = prepare_dataset(prepare_cfg("voc", good_voc(tmp_path / "voc", n=10))).out_dir
    report = read_json(out / "report.json")
    assert report["counts"]["images"] == {"train": 6, "val": 2, "test": 2}
    anns = [
        a for s in ("train", "val", "test") for a in read_json(out / f"{s}.json")["annotations"]
    ]
    assert sorted({a["difficult"] for a in anns}) == [0, 1]
    dog = [a for a in anns if a["category_id"] == 2]  # classes sorted: cat, dog
    assert all(a["difficult"] == 1 for a in dog)
    assert dog[0]["bbox"] == [20.0, 10.0, 40.0, 30.0] and dog[0]["area"] == 1200.0


def test_split_files_and_trainval(tmp_path, prepare_cfg):
    ids = [f"im{i}" for i in range(10)]
    items = {i: voc_xml(f"{i}.jpg", [("cat", (1, 1, 20, 20))]) for i in ids}
    src = make_voc(tmp_path / "voc", items, splits={"trainval": ids[:8], "test": ids[8:]})
    out = prepare_dataset(prepare_cfg("voc", src)).out_dir
    report = read_json(out / "report.json")
    assert report["counts"]["images"] == {"train": 6, "val": 2, "test": 2}
    assert report["splits"]["test"] == "source"
    test_files = {im["file_name"] for im in read_json(out / "test.json")["images"]}
    assert test_files == {"images/im8.jpg", "images/im9.jpg"}
    assert reasons(report) == []
