"""Reports a person can use, and the pixels every stage sees: boxes of skipped images are
counted, fixed lists real fixes, EXIF orientation and bit depth are handled once for all."""

from __future__ import annotations

import numpy as np
import torch
from data_builders import (
    coco_boxes,
    coco_images,
    exif_jpeg,
    good_voc,
    make_coco,
    make_voc,
    make_yolo,
    png16,
    read_json,
    voc_xml,
    write_image,
)
from faults import bmp_and_tiff_dataset, sixteen_bit_pngs
from torchvision.io import decode_image

from ssd.data.dataset import DetectionDataset
from ssd.data.images import read_image
from ssd.data.prepare import prepare_dataset
from ssd.data.prepared import SPLITS, PreparedSplit
from ssd.infer.predict import predict_split


def _all(out, key: str) -> list:
    return [x for s in SPLITS for x in read_json(out / f"{s}.json")[key]]


def test_every_box_is_kept_or_accounted_for(tmp_path, prepare_cfg) -> None:
    # YOLO: an undecodable image with 3 boxes, an image over the pixel limit with 2
    labels = {f"im{i}": "0 0.5 0.5 0.2 0.2\n" for i in range(5)}
    labels |= {"broken": "0 0.5 0.5 0.2 0.2\n" * 3, "dup": "0 0.5 0.5 0.2 0.2\n"}
    root = make_yolo(tmp_path / "yolo", labels, ["a"])
    (root / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "labels" / "lost.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.1 0.1 0.1 0.1\n")
    write_image(root / "images" / "dup.png", (100, 50), fmt="PNG")  # same label file
    report = read_json(prepare_dataset(prepare_cfg("yolo", root)).out_dir / "report.json")
    broken = next(r for r in report["skipped"] if r["file"] == "labels/broken.txt")
    assert broken["boxes"] == 3 and "3 boxes went with it" in broken["detail"]
    dup = next(r for r in report["skipped"] if r["reason"] == "duplicate_id")
    assert dup["boxes"] == 0 and "stay with" in dup["detail"]
    lost = next(r for r in report["skipped"] if r["reason"] == "missing_image")
    assert lost["boxes"] == 2  # a label without its image: its boxes are counted too
    assert all("boxes" in r for r in report["skipped"] if r["kind"] == "image")

    # VOC and COCO: images refused as unsafe keep their box count
    ids = [f"im{i}" for i in range(6)]
    voc = make_voc(
        tmp_path / "voc",
        {i: voc_xml(f"{i}.jpg", [("cat", (1, 1, 9, 9))]) for i in ids}
        | {"climb": voc_xml("../x.jpg", [("cat", (1, 1, 9, 9)), ("dog", (2, 2, 8, 8))])}
        | {"extra": voc_xml("extra.jpg", [("cat", (1, 1, 9, 9))] * 3)},
        splits={"train": [*ids[:4], "climb"], "val": ids[4:5], "test": ids[5:]},
    )
    voc_report = read_json(
        prepare_dataset(prepare_cfg("voc", voc, name="v")).out_dir / "report.json"
    )
    climb = next(r for r in voc_report["skipped"] if r["reason"] == "unsafe_path")
    assert climb["boxes"] == 2
    extra = next(r for r in voc_report["skipped"] if r["reason"] == "not_in_any_split")
    assert extra["boxes"] == 3

    images = coco_images(6)
    images[0]["file_name"] = "../../etc/x.jpg"
    boxes = coco_boxes(6) + [{"id": 99, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}]
    out = prepare_dataset(prepare_cfg("coco", make_coco(tmp_path / "c", images, boxes), name="c"))
    coco_report = read_json(out.out_dir / "report.json")
    unsafe = next(r for r in coco_report["skipped"] if r["reason"] == "unsafe_path")
    assert unsafe["boxes"] == 2
    kept = len(_all(out.out_dir, "annotations"))
    assert kept + coco_report["counts"]["boxes_in_skipped_images"] == len(boxes)


def test_a_duplicate_coco_image_id_moves_no_box(tmp_path, prepare_cfg) -> None:
    images = coco_images(6)
    images.append({"id": 2, "file_name": "again.jpg", "width": 64, "height": 48})
    out = prepare_dataset(prepare_cfg("coco", make_coco(tmp_path / "c", images, coco_boxes(6))))
    report = read_json(out.out_dir / "report.json")
    dups = [r for r in report["skipped"] if r["reason"] == "duplicate_id"]
    assert len(dups) == 2 and sum(r["boxes"] for r in dups) == 1  # image 2's one box
    names = {im["file_name"] for im in _all(out.out_dir, "images")}
    assert "images/001.jpg" not in names and "images/again.jpg" not in names
    assert len(_all(out.out_dir, "annotations")) == 5


def test_fixed_lists_real_fixes_and_counts_sub_pixel_clips(tmp_path, prepare_cfg) -> None:
    root = good_voc(tmp_path / "voc")
    make_voc(
        root,
        {
            "edge": voc_xml(
                "edge.jpg",
                [("cat", (10, 10, 64.4, 30)), ("cat", (-0.3, 2, 20, 48.2)), ("dog", (1, 1, 80, 9))],
            )
        },
    )
    out = prepare_dataset(prepare_cfg("voc", root)).out_dir
    report = read_json(out / "report.json")
    assert [r["reason"] for r in report["fixed"]] == ["box_clipped"]  # only the 16 px one
    before, after = report["fixed"][0]["detail"].split(" clipped to ")
    assert "80" in before and "[1, 1, 64, 9]" in after
    assert report["counts"]["notes"] == {"boxes clipped by less than a pixel": 2}
    assert all(a["bbox"][0] + a["bbox"][2] <= 64 for a in _all(out, "annotations"))


def test_exif_orientation_sizes_and_boxes(tmp_path, prepare_cfg) -> None:
    # YOLO labels are drawn on the displayed image: stored 100x50, shown 50x100
    labels = {f"im{i}": "0 0.5 0.25 0.2 0.1\n" for i in range(5)}
    root = make_yolo(tmp_path / "yolo", labels, ["a"])
    for jpg in (root / "images").glob("*.jpg"):
        exif_jpeg(jpg, (100, 50), 6)
    out = prepare_dataset(prepare_cfg("yolo", root)).out_dir
    image = _all(out, "images")[0]
    assert (image["width"], image["height"]) == (50, 100)
    assert image["file_name"].endswith(".jpg.png")  # re-encoded, shown as displayed
    assert tuple(decode_image(str(out / image["file_name"])).shape) == (3, 100, 50)
    assert all(a["bbox"] == [20.0, 20.0, 10.0, 10.0] for a in _all(out, "annotations"))

    # VOC boxes drawn on the stored pixels (annotated size = stored size) turn with it
    voc = good_voc(tmp_path / "voc")
    make_voc(voc, {"phone": voc_xml("phone.jpg", [("cat", (0, 0, 20, 10))], size=(80, 40))})
    exif_jpeg(voc / "JPEGImages" / "phone.jpg", (80, 40), 6)
    out = prepare_dataset(prepare_cfg("voc", voc, name="v")).out_dir
    report = read_json(out / "report.json")
    assert [r["reason"] for r in report["fixed"]] == ["boxes_oriented"]
    phone = next(im for im in _all(out, "images") if im["file_name"].startswith("images/phone"))
    box = next(a for a in _all(out, "annotations") if a["image_id"] == phone["id"])
    assert (phone["width"], phone["height"]) == (40, 80)
    assert box["bbox"] == [30.0, 0.0, 10.0, 20.0]  # top-left of stored = top-right shown


def test_16_bit_pngs_are_the_same_pixels_for_training_evaluation_and_detect(
    tmp_path, prepare_cfg
) -> None:
    fault = sixteen_bit_pngs(tmp_path)
    out = prepare_dataset(prepare_cfg("yolo", fault.root)).out_dir
    train = DetectionDataset(out, "train")
    image, _ = train[0]
    split = PreparedSplit.load(out, "train")
    source = fault.root / "images" / train.images[0]["file_name"].removeprefix("images/")
    source = source.with_suffix("")  # im0.png.png -> im0.png: the 16-bit original
    assert image.dtype == torch.uint8
    assert torch.equal(image.as_subclass(torch.Tensor), split.read_image(split.images[0]))
    assert torch.equal(image.as_subclass(torch.Tensor), read_image(source))  # detect, MLflow
    assert int(image[0, 0, 0]) == round(40000 / 257)


class _Nothing:
    def predict(self, images):
        return [
            {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0)}
            for _ in images
        ]


def test_bmp_and_tiff_datasets_train_and_evaluate(tmp_path, prepare_cfg) -> None:
    fault = bmp_and_tiff_dataset(tmp_path)
    out = prepare_dataset(prepare_cfg("yolo", fault.root)).out_dir
    files = {im["file_name"] for im in _all(out, "images")}
    assert files and all(f.endswith((".bmp.png", ".tif.png")) for f in files)
    image, target = DetectionDataset(out, "train")[0]  # what training reads
    assert image.shape == (3, 50, 100) and len(target["boxes"]) == 1
    results, _ = predict_split(_Nothing(), PreparedSplit.load(out, "val"), progress=False)
    assert results == []  # validation read every image


def test_16_bit_gray_source_and_plain_copy(tmp_path, prepare_cfg) -> None:
    root = make_yolo(tmp_path / "yolo", {f"im{i}": "0 0.5 0.5 0.2 0.2\n" for i in range(5)}, ["a"])
    png16(root / "images" / "gray.png", np.full((50, 100), 65535, np.uint16))
    (root / "labels" / "gray.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    out = prepare_dataset(prepare_cfg("yolo", root)).out_dir
    names = sorted(im["file_name"] for im in _all(out, "images"))
    assert "images/gray.png.png" in names and "images/im0.jpg" in names  # JPEG copied as is
    assert int(read_image(out / "images" / "gray.png.png").min()) == 255
