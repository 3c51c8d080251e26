"""`ssd detect`: folders and globs in, COCO-style detections and drawn images out; bad files
are listed and skipped."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ssd.cli import app
from ssd.config import ModelConfig
from ssd.infer.detect import detect_paths, expand_inputs
from ssd.infer.detector import load_detector
from ssd.model.builder import build_model
from ssd.model.weights import save_detector

NAMES = ["cell", "platelet", "other"]


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="efficientnet_lite0", input_size=128, backbone_weights=None)
    return save_detector(tmp_path_factory.mktemp("det"), build_model(cfg, 3), cfg, NAMES)


@pytest.fixture()
def folder(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    g = torch.Generator().manual_seed(0)
    for name, (h, w) in {"a.png": (90, 120), "b.jpg": (150, 100), "c.png": (64, 64)}.items():
        pixels = torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=g)
        Image.fromarray(pixels.numpy()).save(d / name)
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (d / "notes.txt").write_text("not an image\n")
    return d


def test_folder_gives_detections_and_lists_bad_files(detector_dir, folder, tmp_path) -> None:
    out = tmp_path / "out"
    summary = detect_paths(
        load_detector(detector_dir, "cpu"), [folder], out, batch_size=2, score_threshold=0.1
    )
    dets = json.loads((out / "detections.json").read_text())
    assert isinstance(dets, list) and dets, "COCO results: a non-empty list"
    good = {str(folder / n) for n in ("a.png", "b.jpg", "c.png")}
    assert {d["file_name"] for d in dets} == good
    ids = {img["file_name"]: img["id"] for img in summary["images"]}
    sizes = {img["file_name"]: (img["width"], img["height"]) for img in summary["images"]}
    for d in dets:
        assert d["image_id"] == ids[d["file_name"]]
        assert d["category_name"] == NAMES[d["category_id"] - 1] and d["score"] > 0.1
        x, y, w, h = d["bbox"]
        width, height = sizes[d["file_name"]]
        assert x >= 0 and y >= 0 and w >= 0 and h >= 0
        assert x + w <= width + 1e-3 and y + h <= height + 1e-3

    written = json.loads((out / "summary.json").read_text())
    skipped = {s["file_name"]: s["reason"] for s in written["skipped"]}
    assert set(skipped) == {str(folder / "broken.jpg"), str(folder / "notes.txt")}
    assert "decode" in skipped[str(folder / "broken.jpg")]
    assert "not an image" in skipped[str(folder / "notes.txt")]
    assert written["num_images"] == 3 and written["num_detections"] == len(dets)

    drawn = sorted(p.name for p in (out / "annotated").iterdir())
    assert drawn == ["a.png", "b.jpg", "c.png"]
    img = Image.open(out / "annotated" / "a.png")
    assert img.size == (120, 90)
    assert img.tobytes() != Image.open(folder / "a.png").tobytes(), "boxes are drawn"


def test_glob_and_missing_inputs(folder) -> None:
    files, skipped = expand_inputs([str(folder / "*.png"), str(folder / "a.png"), "nope.png"])
    assert files == [folder / "a.png", folder / "c.png"]
    assert skipped == [{"file_name": "nope.png", "reason": "no such file or folder"}]


def test_cli_detect_writes_csv_and_reports_skipped(detector_dir, folder, tmp_path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "detect",
            str(folder / "*.*"),
            "--model",
            str(detector_dir),
            "--out",
            str(out),
            "--format",
            "csv",
            "--score-threshold",
            "0.1",
            "--device",
            "cpu",
            "--no-draw",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "3 images" in result.output and "2 skipped" in result.output
    with (out / "detections.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows and set(rows[0]) >= {"image_id", "file_name", "category_name", "x", "score"}
    assert not (out / "annotated").exists()


def test_cli_detect_fails_clearly_without_images(detector_dir, tmp_path) -> None:
    result = CliRunner().invoke(
        app,
        ["detect", str(tmp_path / "*.jpg"), "--model", str(detector_dir), "--out", str(tmp_path)],
    )
    assert result.exit_code == 1
    assert "matches no file" in result.output and "no readable image" in result.output


def test_oversized_exotic_and_rotated_images(detector_dir, tmp_path) -> None:
    """A 70-byte PNG claiming 60000x60000 and a real 20000x20000 image are skipped with the
    reason; BMP, TIFF, 16-bit PNG and EXIF-rotated JPEG are read as training reads them."""
    import sys

    import numpy as np

    sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
    from data_builders import exif_jpeg, png16, png_header_only, real_big_png

    d = tmp_path / "in"
    d.mkdir()
    (d / "bomb.png").write_bytes(png_header_only(60000, 60000))
    real_big_png(d / "big.png", 20000, 20000)
    g = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint16)
    png16(d / "deep.png", g * 257)
    Image.fromarray(g.astype(np.uint8)).save(d / "twin.png")
    Image.fromarray(g.astype(np.uint8)).save(d / "same.bmp")
    Image.fromarray(g.astype(np.uint8)).save(d / "same.tif")
    exif_jpeg(d / "phone.jpg", (80, 40), 6)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            *("detect", str(d), "--model", str(detector_dir), "--out", str(out)),
            *("--device", "cpu", "--score-threshold", "0.05", "--no-progress"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    skipped = {Path(s["file_name"]).name: s["reason"] for s in summary["skipped"]}
    assert set(skipped) == {"bomb.png", "big.png"}
    assert all("megapixels is over the limit" in r for r in skipped.values())
    sizes = {Path(i["file_name"]).name: (i["width"], i["height"]) for i in summary["images"]}
    assert sizes["phone.jpg"] == (40, 80) and sizes["same.bmp"] == (80, 60)
    dets = json.loads((out / "detections.json").read_text())

    def of(name: str) -> list:
        return [
            (d["category_id"], d["bbox"], d["score"]) for d in dets if d["file_name"].endswith(name)
        ]

    assert of("deep.png") == of("twin.png") == of("same.bmp") == of("same.tif")


def _colour_count(region: torch.Tensor, colour: str) -> int:
    rgb = torch.tensor([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((region.reshape(-1, 3) == rgb).all(dim=1).sum())


def test_labels_are_readable_where_boxes_overlap() -> None:
    """Two boxes nearly on top of each other (a 320-px image, as the synthetic set's):
    the better label goes above its box; the other, whose places above and inside the top
    would cover it, goes below its own box; both are whole."""
    from ssd.infer.detect import draw_detections
    from ssd.infer.drawing import class_color

    image = torch.full((3, 320, 320), 255, dtype=torch.uint8)
    detection = {
        "boxes": torch.tensor([[50.0, 60.0, 200.0, 180.0], [60.0, 66.0, 210.0, 190.0]]),
        "scores": torch.tensor([0.4, 0.9]),
        "labels": torch.tensor([1, 2]),
    }
    drawn = draw_detections(image, detection, NAMES).permute(1, 2, 0)
    above_best = drawn[52:64, 62:90]  # the 0.9 label, above its box's top-left
    assert _colour_count(above_best, class_color(2)) > 100
    assert _colour_count(above_best, class_color(1)) == 0  # nothing of the other on it
    below_weak = drawn[182:194, 50:80]  # the 0.4 label, under its box's bottom-left
    assert _colour_count(below_weak, class_color(1)) > 100


def test_a_label_at_the_right_edge_ends_inside_the_image() -> None:
    from ssd.infer.drawing import class_color, draw_boxes, place_labels

    image = torch.full((3, 320, 320), 255, dtype=torch.uint8)
    box = torch.tensor([[300.0, 100.0, 319.0, 140.0]])  # a narrow box at the right edge
    drawn = draw_boxes(image, box, ["triangle 0.87"], [class_color(3)], [0.87])
    label = drawn.permute(1, 2, 0)[80:100, 200:300]  # the label, shifted left of the box
    assert _colour_count(label, class_color(3)) > 300
    (rect,) = place_labels([[300, 100, 319, 140]], [(90.0, 15.0)], (320, 320), 1, [0])
    assert rect == (230.0, 84.0, 320.0, 99.0)


def test_unusable_input_names_are_skipped(folder) -> None:
    files, skipped = expand_inputs([str(folder / "a.png"), "x" * 5000 + ".jpg", "bad\x00.jpg"])
    assert files == [folder / "a.png"]
    assert [s["reason"].split(":")[0] for s in skipped] == ["cannot be used", "cannot be used"]
