"""Layouts people have: Ultralytics and Roboflow data.yaml, image lists, names in any YAML,
VOC folders with other names, a source with train and val but no test, and no labels."""

from __future__ import annotations

import pytest
from data_builders import good_voc, make_yolo, read_json, write_image
from faults import train_and_val_without_test
from typer.testing import CliRunner

from ssd.cli import app
from ssd.errors import DataError
from ssd.data.prepare import prepare_dataset


def _ultralytics(root, names_yaml: str, splits=(("train", 4), ("val", 2), ("test", 2))):
    """images/{split} + labels/{split}, like Ultralytics' coco8."""
    for split, n in splits:
        for i in range(n):
            write_image(root / "images" / split / f"{split}{i}.jpg", (100, 50))
            label = root / "labels" / split / f"{split}{i}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("1 0.5 0.5 0.2 0.4\n")
    (root / "data.yaml").write_text(names_yaml)
    return root


def test_ultralytics_data_yaml_with_names_as_a_dict(tmp_path, prepare_cfg) -> None:
    root = _ultralytics(
        tmp_path / "coco8",
        "path: ../datasets/coco8  # the author's machine\ntrain: images/train\n"
        "val: images/val\ntest: images/test\nnames:\n  0: person\n  1: bicycle\n",
    )
    result = prepare_dataset(prepare_cfg("yolo", root))
    report = read_json(result.out_dir / "report.json")
    assert report["classes"] == ["person", "bicycle"]
    assert report["counts"]["images"] == {"train": 4, "val": 2, "test": 2}
    assert report["splits"] == {"train": "source", "val": "source", "test": "source"}
    assert "does not exist here" in report["source"]["layout"]  # path: was ignored, and said
    dog = read_json(result.out_dir / "test.json")["annotations"][0]
    assert dog["category_id"] == 2 and dog["bbox"] == [40.0, 15.0, 20.0, 20.0]


def test_roboflow_export_with_parent_paths(tmp_path, prepare_cfg) -> None:
    root = tmp_path / "rf"
    for split, n in (("train", 3), ("valid", 2), ("test", 1)):
        make_yolo(root / split, {f"{split}{i}": "0 0.5 0.5 0.5 0.5\n" for i in range(n)})
    (root / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\nnc: 1\n"
        "names: ['cell']\n"
    )
    report = read_json(prepare_dataset(prepare_cfg("yolo", root)).out_dir / "report.json")
    assert report["counts"]["images"] == {"train": 3, "val": 2, "test": 1}


def test_image_lists_and_names_in_any_yaml(tmp_path, prepare_cfg) -> None:
    root = tmp_path / "lists"
    make_yolo(root, {f"im{i}": "0 0.5 0.5 0.5 0.5\n" for i in range(6)})
    (root / "train.txt").write_text("".join(f"./images/im{i}.jpg\n" for i in range(4)))
    (root / "val.txt").write_text("images/im4.jpg\nimages/im5.jpg\n../outside.jpg\n")
    (root / "meta").mkdir()
    (root / "meta" / "my classes.yml").write_text(
        "train: train.txt\nval: val.txt\npath: ..\nnames: {0: cell}\n"
    )
    cfg = prepare_cfg("yolo", root, names_file="meta/my classes.yml")
    report = read_json(prepare_dataset(cfg).out_dir / "report.json")
    assert report["classes"] == ["cell"]
    assert report["counts"]["images"] == {"train": 4, "val": 2, "test": 2}
    assert [r["reason"] for r in report["skipped"]] == ["unsafe_path"]  # ../outside.jpg


def test_train_and_val_without_test_keep_the_source_splits(tmp_path) -> None:
    fault = train_and_val_without_test(tmp_path)
    (tmp_path / "p.yaml").write_text("{}\n")
    args = ["prepare", "--params", str(tmp_path / "p.yaml")]
    for item in [*fault.overrides(), f"data.prepared_root={tmp_path / 'out'}", "data.name=tv"]:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = read_json(tmp_path / "out" / "tv" / "report.json")
    assert report["counts"]["images"] == {"train": 5, "val": 3, "test": 3}  # train not carved
    test_line = next(line for line in result.output.splitlines() if line.strip().startswith("test"))
    assert "test is the source's val" in test_line  # said on the command line
    assert read_json(tmp_path / "out" / "tv" / "test.json") == read_json(
        tmp_path / "out" / "tv" / "val.json"
    )


def test_images_without_labels_stop_with_where_labels_were_looked_for(
    tmp_path, prepare_cfg
) -> None:
    root = make_yolo(tmp_path / "yolo", {f"im{i}": None for i in range(4)}, ["a"])
    with pytest.raises(DataError, match=r"not one box .* in labels/; labels/ does not exist"):
        prepare_dataset(prepare_cfg("yolo", root))


def test_voc_folders_with_other_names(tmp_path, prepare_cfg) -> None:
    root = good_voc(tmp_path / "voc")
    (root / "Annotations").rename(root / "annots")
    (root / "JPEGImages").rename(root / "images")
    with pytest.raises(DataError, match=r"it has: annots/, images/.*data\.annotations_dir"):
        prepare_dataset(prepare_cfg("voc", root))
    cfg = prepare_cfg("voc", root, annotations_dir="annots", images_dir="images")
    report = read_json(prepare_dataset(cfg).out_dir / "report.json")
    assert report["counts"]["images_kept"] == 6 and report["skipped"] == []
    assert report["source"]["annotations"] == "annots"


def test_a_val_that_is_the_train_folder_is_drawn_from_it(tmp_path, prepare_cfg) -> None:
    """coco128.yaml: 'train: images/train2017' and 'val: images/train2017'."""
    root = tmp_path / "coco128"
    make_yolo(root, {f"im{i}": "0 0.5 0.5 0.5 0.5\n" for i in range(10)}, sub="train2017")
    (root / "coco128.yaml").write_text(
        "path: ../datasets/coco128\ntrain: images/train2017\nval: images/train2017\n"
        "names:\n  0: person\n"
    )
    report = read_json(prepare_dataset(prepare_cfg("yolo", root)).out_dir / "report.json")
    assert report["counts"]["images"] == {"train": 6, "val": 2, "test": 2}
    assert "val lists the same images as train" in report["source"]["layout"]
    assert report["skipped"] == []
