"""YOLO txt input: normalised cx cy w h scaled by the decoded image size, names from YAML."""

from __future__ import annotations

import pytest
from data_builders import make_yolo, read_json, reasons

from ssd.errors import DataError
from ssd.data.prepare import prepare_dataset


def test_flat_layout_scales_boxes(tmp_path, prepare_cfg):
    labels = {f"im{i}": "1 0.5 0.5 0.2 0.4\n0 0.25 0.5 0.1 0.2\n" for i in range(5)}
    labels["empty"] = None  # a background image: kept, no boxes
    src = make_yolo(tmp_path / "yolo", labels, names=["cat", "dog"])
    out = prepare_dataset(prepare_cfg("yolo", src)).out_dir
    assert read_json(out / "classes.json") == ["cat", "dog"]
    anns = [
        a for s in ("train", "val", "test") for a in read_json(out / f"{s}.json")["annotations"]
    ]
    assert len(anns) == 10
    dog = next(a for a in anns if a["category_id"] == 2)
    assert dog["bbox"] == [40.0, 15.0, 20.0, 20.0]  # image is 100x50
    report = read_json(out / "report.json")
    assert report["counts"]["images_kept"] == 6
    assert reasons(report) == []


def test_split_folders_and_names_file(tmp_path, prepare_cfg):
    root = tmp_path / "yolo"
    for split, n in (("train", 3), ("val", 1), ("test", 1)):
        make_yolo(root, {f"{split}{i}": "0 0.5 0.5 0.5 0.5" for i in range(n)}, sub=split)
    (root / "obj.names").write_text("thing\n")
    out = prepare_dataset(prepare_cfg("yolo", root, names_file="obj.names")).out_dir
    report = read_json(out / "report.json")
    assert report["counts"]["images"] == {"train": 3, "val": 1, "test": 1}
    assert read_json(out / "test.json")["images"][0]["file_name"] == "images/test/test0.jpg"


def test_missing_names_is_a_clear_error(tmp_path, prepare_cfg):
    src = make_yolo(tmp_path / "yolo", {"a": "0 0.5 0.5 0.1 0.1"})
    with pytest.raises(DataError, match=r"data\.yaml"):
        prepare_dataset(prepare_cfg("yolo", src)).out_dir


def test_coco128_as_ultralytics_ships_it_names_the_command_that_reads_it(tmp_path, prepare_cfg):
    """coco128: shared images/ at the top, object_detection/ with config.yaml, its labels/
    and a link images -> ../images. Both natural commands name the one that works."""
    root = make_yolo(tmp_path / "coco128", {f"im{i}": "0 0.5 0.5 0.2 0.2\n" for i in range(8)})
    task = root / "object_detection"
    task.mkdir()
    (root / "labels").rename(task / "labels")
    (task / "config.yaml").write_text(
        "path: ../datasets/coco128\ntrain: images\nval: images\nnames:\n  0: person\n"
    )
    (task / "images").symlink_to("../images")
    with pytest.raises(DataError) as top:
        prepare_dataset(prepare_cfg("yolo", root))
    assert "set data.names_file=object_detection/config.yaml" in str(top.value)
    with pytest.raises(DataError) as inner:
        prepare_dataset(prepare_cfg("yolo", task))
    assert (
        f"set data.path to {root.resolve()} (the folder that holds both) and "
        "data.names_file=object_detection/config.yaml" in str(inner.value)
    )
    done = prepare_dataset(prepare_cfg("yolo", root, names_file="object_detection/config.yaml"))
    assert read_json(done.out_dir / "report.json")["counts"]["images_kept"] == 8
