"""`ssd detect`: folders and globs in, COCO-style detections and drawn images out; bad files
are listed and skipped."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ssd.builder import build_model
from ssd.cli import app
from ssd.config import ModelConfig
from ssd.detect import detect_paths, expand_inputs
from ssd.inference import load_detector
from ssd.weights import save_detector

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
