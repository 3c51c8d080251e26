"""Bad input: every image or box not kept is in report.json with its file and reason;
unusable input fails with one message that says what to fix."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from data_builders import (
    coco_boxes,
    coco_images,
    good_voc,
    make_coco,
    make_voc,
    make_yolo,
    read_json,
    reasons,
    voc_xml,
    write_image,
)
from typer.testing import CliRunner

from ssd.cli import app
from ssd.errors import DataError
from ssd.data.prepare import prepare_dataset


def _prepare(cfg: Any) -> dict[str, Any]:
    report = read_json(prepare_dataset(cfg).out_dir / "report.json")
    kept, read = report["counts"]["images_kept"], report["counts"]["images_read"]
    skipped_images = [r for r in report["skipped"] if r["kind"] == "image"]
    assert read - kept <= len(skipped_images)  # every image not kept is accounted for
    return report


def _entry(report: dict[str, Any], reason: str, key: str = "skipped") -> dict[str, str]:
    found = [r for r in report[key] if r["reason"] == reason]
    assert found, f"no '{reason}' in {report[key]}"
    return found[0]


def _voc_with(tmp_path: Path, **bad_xml: str) -> Path:
    """Six good VOC images plus ``bad_xml`` (id -> XML) whose JPEG is written too."""
    root = good_voc(tmp_path / "voc")
    return make_voc(root, dict(bad_xml))


# ---------------------------------------------------------------- images


def test_corrupt_and_truncated_images(tmp_path, prepare_cfg):
    root = _voc_with(
        tmp_path,
        garbage=voc_xml("garbage.jpg", [("cat", (1, 1, 9, 9))]),
        cut=voc_xml("cut.jpg", [("cat", (1, 1, 9, 9))]),
    )
    (root / "JPEGImages" / "garbage.jpg").write_bytes(b"this is not a jpeg")
    noisy = root / "JPEGImages" / "cut.jpg"
    import numpy as np
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
        noisy
    )
    noisy.write_bytes(noisy.read_bytes()[:-400])  # truncated
    # a JPEG lacking only its end-of-image marker: every viewer shows it whole, and so do we
    make_voc(root, {"noend": voc_xml("noend.jpg", [("cat", (1, 1, 9, 9))])})
    noend = root / "JPEGImages" / "noend.jpg"
    noend.write_bytes(noend.read_bytes().removesuffix(b"\xff\xd9"))
    report = _prepare(prepare_cfg("voc", root))
    files = {r["file"] for r in report["skipped"] if r["reason"] == "corrupt_image"}
    assert files == {"Annotations/garbage.xml", "Annotations/cut.xml"}
    assert report["counts"]["images_kept"] == 7


def test_a_jpeg_lacking_only_its_end_marker_reads_as_the_whole_image() -> None:
    import io

    import numpy as np
    from PIL import Image

    from ssd.data.images import ImageReadError, decode_image

    pixels = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    whole = buffer.getvalue()
    decoded = decode_image(whole[:-2])
    assert decoded.repaired and not decoded.plain  # re-encoded when prepared
    assert decoded.pixels.tobytes() == decode_image(whole).pixels.tobytes()
    with pytest.raises(ImageReadError, match="truncated"):
        decode_image(whole[:-3])  # one byte of the picture missing: refused as before


def test_voc_folders_are_found_in_any_letter_case(tmp_path, prepare_cfg):
    root = good_voc(tmp_path / "voc")
    (root / "Annotations").rename(root / "annotations")
    (root / "JPEGImages").rename(root / "jpegimages")
    report = _prepare(prepare_cfg("voc", root))
    assert report["counts"]["images_kept"] == 6


def test_missing_image_file(tmp_path, prepare_cfg):
    root = good_voc(tmp_path / "voc")
    make_voc(root, {"ghost": voc_xml("ghost.jpg", [("cat", (1, 1, 9, 9))])}, images=[])
    entry = _entry(_prepare(prepare_cfg("voc", root)), "missing_image")
    assert entry["file"] == "Annotations/ghost.xml" and "ghost.jpg" in entry["detail"]


def test_image_without_annotation_is_reported(tmp_path, prepare_cfg):
    root = good_voc(tmp_path / "voc")
    write_image(root / "JPEGImages" / "orphan.jpg")
    entry = _entry(_prepare(prepare_cfg("voc", root)), "missing_annotation")
    assert entry["file"] == "JPEGImages/orphan.jpg"


def test_annotated_size_disagrees_with_file(tmp_path, prepare_cfg):
    root = _voc_with(tmp_path, big=voc_xml("big.jpg", [("cat", (1, 1, 9, 9))], size=(640, 480)))
    entry = _entry(_prepare(prepare_cfg("voc", root)), "size_mismatch")
    assert entry["file"] == "Annotations/big.xml" and "640x480" in entry["detail"]


# ---------------------------------------------------------------- annotation files


def test_malformed_xml(tmp_path, prepare_cfg):
    root = _voc_with(tmp_path, broken="<annotation><filename>broken.jpg</filename><object>")
    entry = _entry(_prepare(prepare_cfg("voc", root)), "malformed_annotation")
    assert entry["file"] == "Annotations/broken.xml"


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE a [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>',
        '<!DOCTYPE a [<!ENTITY ext SYSTEM "file:///etc/passwd">]>',
    ],
    ids=["entity-expansion", "external-entity"],
)
def test_xml_entities_are_refused(tmp_path, prepare_cfg, doctype):
    xml = voc_xml("evil.jpg", [("&b;" if "ENTITY b" in doctype else "&ext;", (1, 1, 9, 9))])
    root = _voc_with(tmp_path, evil=f'<?xml version="1.0"?>\n{doctype}\n{xml}')
    report = _prepare(prepare_cfg("voc", root))
    entry = _entry(report, "malformed_annotation")
    assert entry["file"] == "Annotations/evil.xml" and "refused" in entry["detail"]
    assert "root:" not in json.dumps(report)  # nothing of /etc/passwd leaked


def test_malformed_json_fails_with_the_reason(tmp_path, prepare_cfg):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances.json").write_text('{"images": [')
    with pytest.raises(DataError, match="JSON cannot be read"):
        prepare_dataset(prepare_cfg("coco", root)).out_dir


def test_malformed_yolo_txt(tmp_path, prepare_cfg):
    labels = {f"im{i}": "0 0.5 0.5 0.2 0.2\n" for i in range(5)}
    labels["bad"] = "0 0.5 0.5 0.2 0.2\n0 0.5 oops 0.2\n"
    root = make_yolo(tmp_path / "yolo", labels, names=["cat"])
    (root / "labels" / "binary.txt").write_bytes(b"\xff\xfe\x00garbage")
    write_image(root / "images" / "binary.jpg")
    report = _prepare(prepare_cfg("yolo", root))
    box = _entry(report, "malformed_box")
    assert box["file"] == "labels/bad.txt" and "line 2" in box["detail"]
    assert _entry(report, "malformed_annotation")["file"] == "labels/binary.txt"
    # the good line of bad.txt is kept
    assert sum(report["counts"]["boxes"].values()) == 6


def test_label_without_image(tmp_path, prepare_cfg):
    labels = {f"im{i}": "0 0.5 0.5 0.2 0.2\n" for i in range(5)}
    root = make_yolo(tmp_path / "yolo", labels, names=["cat"])
    (root / "labels" / "lost.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    assert _entry(_prepare(prepare_cfg("yolo", root)), "missing_image")["file"] == "labels/lost.txt"


# ---------------------------------------------------------------- boxes


def test_zero_and_negative_area_boxes(tmp_path, prepare_cfg):
    root = _voc_with(
        tmp_path,
        flat=voc_xml(
            "flat.jpg", [("cat", (5, 5, 5, 20)), ("cat", (30, 9, 10, 20)), ("cat", (1, 1, 9, 9))]
        ),
    )
    report = _prepare(prepare_cfg("voc", root))
    zero = [r for r in report["skipped"] if r["reason"] == "zero_area_box"]
    assert [r["file"] for r in zero] == ["Annotations/flat.xml"] * 2
    assert report["counts"]["skipped"] == {"zero_area_box": 2}


def test_boxes_outside_image_clipped_or_dropped(tmp_path, prepare_cfg):
    root = _voc_with(
        tmp_path,
        edge=voc_xml("edge.jpg", [("cat", (-5, -4, 20, 60)), ("cat", (100, 100, 120, 120))]),
    )
    out = prepare_dataset(prepare_cfg("voc", root)).out_dir
    report = read_json(out / "report.json")
    assert _entry(report, "box_clipped", key="fixed")["file"] == "Annotations/edge.xml"
    assert _entry(report, "box_outside_image")["file"] == "Annotations/edge.xml"
    images = {
        im["file_name"]: im["id"]
        for s in ("train", "val", "test")
        for im in read_json(out / f"{s}.json")["images"]
    }
    anns = [
        a for s in ("train", "val", "test") for a in read_json(out / f"{s}.json")["annotations"]
    ]
    edge = [a for a in anns if a["image_id"] == images["images/edge.jpg"]]
    assert [a["bbox"] for a in edge] == [[0.0, 0.0, 20.0, 48.0]]


def test_unknown_class_name_id_and_category(tmp_path, prepare_cfg):
    root = _voc_with(
        tmp_path, odd=voc_xml("odd.jpg", [("bird", (1, 1, 9, 9)), ("cat", (1, 1, 9, 9))])
    )
    (root / "names.txt").write_text("cat\ndog\n")
    voc = _prepare(prepare_cfg("voc", root, names_file="names.txt"))
    assert "bird" in _entry(voc, "unknown_class")["detail"]

    labels = {f"im{i}": "0 0.5 0.5 0.2 0.2\n" for i in range(5)}
    labels["odd"] = "7 0.5 0.5 0.2 0.2\n"
    yolo = _prepare(
        prepare_cfg("yolo", make_yolo(tmp_path / "yolo", labels, names=["cat"]), name="y")
    )
    assert _entry(yolo, "unknown_class")["file"] == "labels/odd.txt"

    boxes = coco_boxes(6)
    boxes[2]["category_id"] = 9
    coco = _prepare(
        prepare_cfg("coco", make_coco(tmp_path / "coco", coco_images(6), boxes), name="c")
    )
    assert "category_id 9" in _entry(coco, "unknown_class")["detail"]


def test_duplicate_ids(tmp_path, prepare_cfg):
    images = coco_images(6)
    images.append({"id": 1, "file_name": "again.jpg", "width": 64, "height": 48})
    boxes = coco_boxes(6)
    boxes.append({**boxes[0]})  # same annotation id
    report = _prepare(prepare_cfg("coco", make_coco(tmp_path / "coco", images, boxes)))
    dups = [r for r in report["skipped"] if r["reason"] == "duplicate_id"]
    assert {r["kind"] for r in dups} == {"image", "box"}

    ids = [f"im{i}" for i in range(6)]
    items = {i: voc_xml(f"{i}.jpg", [("cat", (1, 1, 9, 9))]) for i in ids}
    root = make_voc(
        tmp_path / "voc",
        items,
        splits={"train": ids[:4], "val": [ids[4], ids[0]], "test": [ids[5]]},
    )
    voc = _prepare(prepare_cfg("voc", root, name="v"))
    entry = _entry(voc, "duplicate_id")
    assert entry["file"] == "ImageSets/Main/val.txt" and "im0" in entry["detail"]


# ---------------------------------------------------------------- paths outside the root


def test_paths_outside_the_root_are_refused(tmp_path, prepare_cfg):
    secret = write_image(tmp_path / "secret.jpg")
    root = _voc_with(
        tmp_path,
        climb=voc_xml("../../secret.jpg", [("cat", (1, 1, 9, 9))]),
        absolute=voc_xml(str(secret), [("cat", (1, 1, 9, 9))]),
        link=voc_xml("link.jpg", [("cat", (1, 1, 9, 9))]),
    )
    (root / "JPEGImages" / "link.jpg").unlink()
    os.symlink(secret, root / "JPEGImages" / "link.jpg")
    report = _prepare(prepare_cfg("voc", root))
    unsafe = {r["file"] for r in report["skipped"] if r["reason"] == "unsafe_path"}
    assert unsafe == {"Annotations/climb.xml", "Annotations/absolute.xml", "Annotations/link.xml"}

    images = coco_images(6)
    images[0]["file_name"] = "/etc/passwd"
    images[1]["file_name"] = "..\\..\\secret.jpg"
    coco = _prepare(
        prepare_cfg("coco", make_coco(tmp_path / "coco", images, coco_boxes(6)), name="c")
    )
    assert reasons(coco).count("unsafe_path") == 2

    labels = {f"im{i}": "0 0.5 0.5 0.2 0.2\n" for i in range(5)}
    yolo_root = make_yolo(tmp_path / "yolo", labels, names=["cat"])
    os.symlink(secret, yolo_root / "images" / "link.jpg")
    yolo = _prepare(prepare_cfg("yolo", yolo_root, name="y"))
    assert _entry(yolo, "unsafe_path")["file"] == "images/link.jpg"


# ---------------------------------------------------------------- unusable input: one clear error


def test_path_missing(tmp_path, prepare_cfg):
    with pytest.raises(DataError, match=r"does not exist; put the voc dataset in data/raw/ds/"):
        prepare_dataset(prepare_cfg("voc", tmp_path / "nowhere")).out_dir
    with pytest.raises(DataError, match=r"data\.path is not set"):
        prepare_dataset(prepare_cfg("coco", None)).out_dir


def test_no_valid_image(tmp_path, prepare_cfg):
    root = make_voc(tmp_path / "voc", {"a": voc_xml("a.jpg", [("cat", (1, 1, 9, 9))])}, images=[])
    with pytest.raises(DataError, match="no valid image"):
        prepare_dataset(prepare_cfg("voc", root)).out_dir


def test_empty_split(tmp_path, prepare_cfg):
    ids = [f"im{i}" for i in range(5)]
    items = {i: voc_xml(f"{i}.jpg", [("cat", (1, 1, 9, 9))]) for i in ids}
    root = make_voc(
        tmp_path / "voc", items, splits={"train": ids[:4], "val": ["nope"], "test": [ids[4]]}
    )
    with pytest.raises(DataError, match="split 'val' is empty"):
        prepare_dataset(prepare_cfg("voc", root)).out_dir
    with pytest.raises(DataError, match=r"data\.val_ratio"):
        prepare_dataset(prepare_cfg("voc", good_voc(tmp_path / "v2"), val_ratio=0.0)).out_dir


def test_no_classes(tmp_path, prepare_cfg):
    root = make_voc(tmp_path / "voc", {f"im{i}": voc_xml(f"im{i}.jpg", []) for i in range(4)})
    with pytest.raises(DataError, match="no class names"):
        prepare_dataset(prepare_cfg("voc", root)).out_dir


def test_failed_run_keeps_previous_output(tmp_path, prepare_cfg):
    root = good_voc(tmp_path / "voc")
    out = prepare_dataset(prepare_cfg("voc", root)).out_dir
    before = (out / "train.json").read_bytes()
    with pytest.raises(DataError):
        prepare_dataset(prepare_cfg("voc", root, val_ratio=0.0)).out_dir
    assert (out / "train.json").read_bytes() == before
    assert not any(p.name.endswith(".partial") for p in out.parent.iterdir())


def test_cli_prints_one_message(tmp_path):
    (tmp_path / "params.yaml").write_text("{}\n")
    result = CliRunner().invoke(
        app,
        [
            "prepare",
            "--params",
            str(tmp_path / "params.yaml"),
            "--set",
            "data.source=voc",
            "--set",
            f"data.path={tmp_path / 'nowhere'}",
        ],
    )
    assert result.exit_code == 2
    assert "does not exist; put the voc dataset in" in result.output
    assert "Traceback" not in result.output
