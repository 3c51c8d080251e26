"""Datasets built by each fault of issue 13 ("Every dataset a user brings"), for the tests
that run ``ssd prepare`` on them. Each builder writes a dataset under ``tmp`` and returns
a :class:`Fault`: the ``--set`` overrides to prepare it, and ``outside``, a folder next to
the dataset that holds a secret file no run may read."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from data_builders import (
    coco_boxes,
    coco_images,
    exif_jpeg,
    good_voc,
    make_coco,
    make_voc,
    make_yolo,
    png16,
    png_header_only,
    real_big_png,
    voc_xml,
    write_image,
)


@dataclass
class Fault:
    """A dataset, how to prepare it, and what ``ssd prepare`` must answer: ``expect`` is the
    exit code and a piece of the output (the summary for 0, the one error line for 2)."""

    source: str
    root: Path
    outside: Path
    sets: list[str] = field(default_factory=list)
    expect: tuple[int, str] = (0, "")

    def overrides(self) -> list[str]:
        return [f"data.source={self.source}", f"data.path={self.root}", *self.sets]


def _outside(tmp: Path) -> Path:
    """A folder outside every dataset, with a secret image, JSON, XML and YAML in it."""
    from PIL import Image

    out = tmp / "outside"
    out.mkdir(parents=True)
    secret = Image.effect_noise((64, 48), 80).convert("RGB")  # bytes no dataset image has
    secret.save(out / "secret.jpg")
    (out / "images").mkdir()
    secret.save(out / "images" / "000.jpg")
    (out / "secret.json").write_text(
        json.dumps(
            {
                "images": coco_images(3),
                "annotations": coco_boxes(3),
                "categories": [{"id": 1, "name": "secret"}, {"id": 3, "name": "dog"}],
            }  # fmt: skip
        )
    )
    (out / "secret.xml").write_text(voc_xml("secret.jpg", [("secret", (1, 1, 9, 9))]))
    (out / "data.yaml").write_text("names: [secret]\n")
    for name in ("JPEGImages", "Annotations"):
        (out / name).mkdir(exist_ok=True)
    write_image(out / "JPEGImages" / "im0.jpg")
    (out / "Annotations" / "im0.xml").write_text(voc_xml("im0.jpg", [("secret", (1, 1, 9, 9))]))
    return out


def coco_images_folder_is_a_link_out(tmp: Path) -> Fault:
    out = _outside(tmp)
    root = make_coco(tmp / "coco", coco_images(6), coco_boxes(6), create_images=False)
    os.symlink(out / "images", root / "images")
    return Fault("coco", root, out, expect=(2, "images leads to"))


def coco_json_is_a_link_out(tmp: Path) -> Fault:
    out = _outside(tmp)
    root = make_coco(tmp / "coco", coco_images(6), coco_boxes(6))
    (root / "annotations" / "instances.json").unlink()
    os.symlink(out / "secret.json", root / "annotations" / "instances.json")
    return Fault("coco", root, out, expect=(2, "instances.json leads to"))


def coco_json_option_outside(tmp: Path) -> Fault:
    out = _outside(tmp)
    root = make_coco(tmp / "coco", coco_images(6), coco_boxes(6))
    return Fault(
        "coco", root, out, [f"data.coco_json={out / 'secret.json'}"], expect=(2, "data.coco_json")
    )


def _voc_folder_is_a_link_out(tmp: Path, folder: str) -> Fault:
    """A VOC folder replaced by a symlink to a folder outside the dataset root."""
    out = _outside(tmp)
    root = good_voc(tmp / "voc")
    shutil.rmtree(root / folder)
    os.symlink(out / folder, root / folder)
    return Fault("voc", root, out, expect=(2, f"{folder} leads to"))


def voc_jpegimages_is_a_link_out(tmp: Path) -> Fault:
    return _voc_folder_is_a_link_out(tmp, "JPEGImages")


def voc_annotations_is_a_link_out(tmp: Path) -> Fault:
    return _voc_folder_is_a_link_out(tmp, "Annotations")


def voc_one_xml_is_a_link_out(tmp: Path) -> Fault:
    out = _outside(tmp)
    root = good_voc(tmp / "voc")
    os.symlink(out / "secret.xml", root / "Annotations" / "secret.xml")
    write_image(root / "JPEGImages" / "secret.jpg")
    return Fault("voc", root, out, expect=(0, "unsafe_path 1"))


def yolo_data_yaml_is_a_link_out(tmp: Path) -> Fault:
    out = _outside(tmp)
    root = make_yolo(tmp / "yolo", {f"im{i}": "0 0.5 0.5 0.2 0.2\n" for i in range(6)})
    os.symlink(out / "data.yaml", root / "data.yaml")
    return Fault("yolo", root, out, expect=(2, "data.yaml leads to"))


def yolo_image_is_a_link_out(tmp: Path) -> Fault:
    out = _outside(tmp)
    root = make_yolo(tmp / "yolo", {f"im{i}": "0 0.5 0.5 0.2 0.2\n" for i in range(6)}, ["a"])
    os.symlink(out / "secret.jpg", root / "images" / "link.jpg")
    (root / "labels" / "link.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.2 0.2 0.1 0.1\n")
    return Fault("yolo", root, out, expect=(0, "2 boxes went with the skipped images"))


def yolo_images_link_inside(tmp: Path) -> Fault:
    """object_detection/images -> ../images: a link that stays inside the dataset."""
    out = _outside(tmp)
    root = tmp / "yolo"
    for split, n in (("train", 4), ("val", 2)):
        for i in range(n):
            write_image(root / "images" / split / f"{split}{i}.jpg", (100, 50))
            label = root / "object_detection" / "labels" / split / f"{split}{i}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("0 0.5 0.5 0.2 0.2\n")
    os.symlink("../images", root / "object_detection" / "images")
    (root / "object_detection" / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: cell\n"
    )
    return Fault(
        "yolo",
        root,
        out,
        ["data.names_file=object_detection/data.yaml"],
        expect=(0, "6 of 6 images"),
    )


def png_bomb_in_the_dataset(tmp: Path) -> Fault:
    root = good_voc(tmp / "voc")
    make_voc(root, {"bomb": voc_xml("bomb.png", [("cat", (1, 1, 9, 9))], size=None)}, images=[])
    (root / "JPEGImages" / "bomb.png").write_bytes(png_header_only(60000, 60000))
    return Fault("voc", root, _outside(tmp), expect=(0, "image_too_large 1"))


def real_20000_image_in_the_dataset(tmp: Path) -> Fault:
    root = good_voc(tmp / "voc")
    make_voc(root, {"big": voc_xml("big.png", [("cat", (1, 1, 9, 9))], size=None)}, images=[])
    real_big_png(root / "JPEGImages" / "big.png", 20000, 20000)
    return Fault("voc", root, _outside(tmp), expect=(0, "image_too_large 1"))


def bmp_and_tiff_dataset(tmp: Path) -> Fault:
    labels = {f"im{i}": "0 0.5 0.5 0.2 0.2\n" for i in range(6)}
    root = make_yolo(tmp / "yolo", labels, ["a"])
    for i, jpg in enumerate(sorted((root / "images").glob("*.jpg"))):
        fmt = "BMP" if i % 2 else "TIFF"
        write_image(jpg.with_suffix(".bmp" if i % 2 else ".tif"), (100, 50), fmt=fmt)
        jpg.unlink()
    return Fault("yolo", root, _outside(tmp), expect=(0, "6 images converted to PNG"))


def sixteen_bit_pngs(tmp: Path) -> Fault:
    import numpy as np

    root = make_yolo(tmp / "yolo", {f"im{i}": "0 0.5 0.5 0.2 0.2\n" for i in range(6)}, ["a"])
    for jpg in sorted((root / "images").glob("*.jpg")):
        png16(jpg.with_suffix(".png"), np.full((50, 100, 3), 40000, np.uint16))
        jpg.unlink()
    return Fault("yolo", root, _outside(tmp), expect=(0, "6 images converted to PNG"))


def exif_rotated_yolo(tmp: Path) -> Fault:
    root = make_yolo(tmp / "yolo", {f"im{i}": "0 0.5 0.25 0.2 0.1\n" for i in range(6)}, ["a"])
    for jpg in sorted((root / "images").glob("*.jpg")):
        exif_jpeg(jpg, (100, 50), 6)
    return Fault(
        "yolo", root, _outside(tmp), expect=(0, "6 images shown in their EXIF orientation")
    )


def duplicate_coco_image_id(tmp: Path) -> Fault:
    images = coco_images(6)
    images.append({"id": 2, "file_name": "again.jpg", "width": 64, "height": 48})
    root = make_coco(tmp / "coco", images, coco_boxes(6))
    return Fault("coco", root, _outside(tmp), expect=(0, "duplicate_id 2"))


def yolo_images_without_labels(tmp: Path) -> Fault:
    root = make_yolo(tmp / "yolo", {f"im{i}": None for i in range(6)}, ["a"])
    return Fault("yolo", root, _outside(tmp), expect=(2, "labels/ does not exist"))


def coco_without_boxes(tmp: Path) -> Fault:
    return Fault(
        "coco", make_coco(tmp / "coco", coco_images(6), []), _outside(tmp), expect=(2, "no boxes")
    )


def train_and_val_without_test(tmp: Path) -> Fault:
    root = tmp / "yolo"
    for split, n in (("train", 5), ("val", 3)):
        make_yolo(root, {f"{split}{i}": "0 0.5 0.5 0.5 0.5\n" for i in range(n)}, sub=split)
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [thing]\n")
    return Fault("yolo", root, _outside(tmp), expect=(0, "test is the source's val"))


def voc_with_other_folder_names(tmp: Path) -> Fault:
    root = good_voc(tmp / "voc")
    (root / "Annotations").rename(root / "annots")
    (root / "JPEGImages").rename(root / "images")
    return Fault(
        "voc", root, _outside(tmp), expect=(2, "set data.annotations_dir and data.images_dir")
    )


def nul_and_long_file_names(tmp: Path) -> Fault:
    images = coco_images(6)
    images[0]["file_name"] = "bad\x00name.jpg"
    images[1]["file_name"] = "x" * 300 + ".jpg"
    images[2]["file_name"] = "/".join(["d" * 200] * 30) + ".jpg"
    root = make_coco(tmp / "coco", images, coco_boxes(6), create_images=False)
    for im in coco_images(6)[3:]:
        write_image(root / "images" / im["file_name"])
    return Fault("coco", root, _outside(tmp), expect=(0, "unsafe_path 3"))


def json_nested_100000_deep(tmp: Path) -> Fault:
    root = tmp / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances.json").write_text("[" * 100_000 + "]" * 100_000)
    return Fault("coco", root, _outside(tmp), expect=(2, "nested too deeply"))


def yaml_nested_100000_deep(tmp: Path) -> Fault:
    root = make_yolo(tmp / "yolo", {f"im{i}": "0 0.5 0.5 0.2 0.2\n" for i in range(3)})
    (root / "data.yaml").write_text("names: " + "[" * 100_000 + "]" * 100_000 + "\n")
    return Fault("yolo", root, _outside(tmp), expect=(2, "nested too deeply"))


def binary_names_file(tmp: Path) -> Fault:
    root = make_yolo(tmp / "yolo", {f"im{i}": "0 0.5 0.5 0.2 0.2\n" for i in range(3)})
    (root / "classes.txt").write_bytes(b"\xff\xfe\x00\x01binary")
    return Fault(
        "yolo", root, _outside(tmp), expect=(2, "cannot read class names from classes.txt")
    )


FAULTS: dict[str, Callable[[Path], Fault]] = {
    f.__name__: f
    for f in (
        coco_images_folder_is_a_link_out,
        coco_json_is_a_link_out,
        coco_json_option_outside,
        voc_jpegimages_is_a_link_out,
        voc_annotations_is_a_link_out,
        voc_one_xml_is_a_link_out,
        yolo_data_yaml_is_a_link_out,
        yolo_image_is_a_link_out,
        yolo_images_link_inside,
        png_bomb_in_the_dataset,
        real_20000_image_in_the_dataset,
        bmp_and_tiff_dataset,
        sixteen_bit_pngs,
        exif_rotated_yolo,
        duplicate_coco_image_id,
        yolo_images_without_labels,
        coco_without_boxes,
        train_and_val_without_test,
        voc_with_other_folder_names,
        nul_and_long_file_names,
        json_nested_100000_deep,
        yaml_nested_100000_deep,
        binary_names_file,
    )
}
