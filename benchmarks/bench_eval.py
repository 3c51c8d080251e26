"""Benchmark: our COCO metrics vs plain pycocotools on the same detections, and the wall time
of a whole evaluation per 100 images.

    .venv/bin/python benchmarks/bench_eval.py [--images 500] [--boxes 20] [--repeats 3]
                                              [--model-images 100]

Writes ``reports/bench/eval.json``. ``ratio.pycocotools_over_ours`` = pycocotools seconds /
our seconds for the COCO metrics (same detections, same numbers; > 1 means ours is faster).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from machine import write_report

from ssd.data.prepared import PreparedSplit
from ssd.evaluation.coco import STAT_NAMES, coco_evaluate
from ssd.evaluation.report import evaluate_detections
from ssd.evaluation.tide import tide_evaluate
from ssd.evaluation.voc import voc_evaluate


def synthetic(images: int, boxes: int, classes: int = 20, seed: int = 0, size: int = 320):
    """``images`` images with 3–8 GT each and ``boxes`` detections each (hits, noise, junk)."""
    rng = np.random.default_rng(seed)
    imgs, anns, dets = [], [], []
    for i in range(1, images + 1):
        imgs.append({"id": i, "file_name": f"images/{i}.png", "width": size, "height": size})
        gts = []
        for _ in range(int(rng.integers(3, 9))):
            w, h = rng.uniform(8, size / 2, 2)
            x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
            c = int(rng.integers(1, classes + 1))
            a = {"id": len(anns) + 1, "image_id": i, "category_id": c, "bbox": [x, y, w, h]}
            a.update(area=w * h, iscrowd=0, difficult=int(rng.random() < 0.05))
            anns.append(a)
            gts.append(a)
        for k in range(boxes):
            if k < len(gts):
                x, y, w, h = gts[k]["bbox"]
                j = rng.normal(0, 0.15, 4) * [w, h, w, h]
                x, y = float(np.clip(x + j[0], 0, size - 2)), float(np.clip(y + j[1], 0, size - 2))
                w, h = float(np.clip(w + j[2], 1, size - x)), float(np.clip(h + j[3], 1, size - y))
                c = (
                    gts[k]["category_id"]
                    if rng.random() < 0.8
                    else int(rng.integers(1, classes + 1))
                )
            else:
                w, h = rng.uniform(5, size / 3, 2)
                x, y = float(rng.uniform(0, size - w)), float(rng.uniform(0, size - h))
                w, h, c = float(w), float(h), int(rng.integers(1, classes + 1))
            dets.append(
                {
                    "image_id": i,
                    "category_id": c,
                    "bbox": [x, y, w, h],
                    "score": float(rng.random()),
                }
            )
    cats = [{"id": k, "name": f"class{k}"} for k in range(1, classes + 1)]
    return {"images": imgs, "annotations": anns, "categories": cats}, dets


def plain_pycocotools(dataset: dict[str, Any], dets: list[dict[str, Any]]) -> list[float]:
    """What a user would write with pycocotools alone."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(dataset)
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(dets)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(s) for s in ev.stats]


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, result


def model_run(num_images: int, out: Path) -> dict[str, Any]:
    """Untrained SSDLite (EfficientNet-Lite0, 320) over synthetic images: inference + evaluation."""
    from torchvision.io import write_png

    from ssd.config import ModelConfig
    from ssd.infer.predict import detect_split
    from ssd.model.builder import build_model
    from ssd.model.weights import save_detector

    dataset, _ = synthetic(num_images, 0, classes=3, size=320)
    root = out / "prepared"
    (root / "images").mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for img in dataset["images"]:
        pixels = torch.randint(0, 256, (3, 320, 320), dtype=torch.uint8, generator=g)
        write_png(pixels, str(root / img["file_name"]), compression_level=1)
    (root / "test.json").write_text(json.dumps(dataset))
    (root / "classes.json").write_text(json.dumps([c["name"] for c in dataset["categories"]]))
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="efficientnet_lite0", backbone_weights=None)
    model = build_model(cfg, num_classes=3).eval()
    ckpt = save_detector(out / "det", model, cfg, [c["name"] for c in dataset["categories"]])
    t0 = time.perf_counter()
    split = PreparedSplit.load(root, "test")
    found = detect_split(ckpt, split, batch_size=8, device="cpu")
    metrics = evaluate_detections(
        split, found.detections, out / "reports", found.priors, found.images_per_second
    )
    wall = time.perf_counter() - t0
    return {
        "images": num_images,
        "model": "efficientnet_lite0 SSDLite 320, untrained (random weights), CPU",
        "detections": metrics["num_detections"],
        "images_per_second_inference": metrics["images_per_second"],
        "metrics_and_reports_seconds": metrics["eval_seconds"],
        "wall_seconds_per_100_images": 100 * wall / num_images,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--boxes", type=int, default=20, help="detections per image")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model-images", type=int, default=100, help="0 skips the model run")
    args = ap.parse_args()

    dataset, dets = synthetic(args.images, args.boxes)
    t_ref, ref_times, ref_stats = timed(lambda: plain_pycocotools(dataset, dets), args.repeats)
    t_ours, our_times, ours = timed(lambda: coco_evaluate(dataset, dets), args.repeats)
    t_py, _, _ = timed(lambda: coco_evaluate(dataset, dets, "pycocotools"), 1)
    diff = max(
        abs((ours.stats[n] if ours.stats[n] is not None else -1.0) - r)
        for n, r in zip(STAT_NAMES, ref_stats, strict=False)
    )
    t_voc, _, _ = timed(lambda: voc_evaluate(dataset, dets), 1)
    t_tide, _, _ = timed(lambda: tide_evaluate(dataset, dets), 1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "prepared"
        root.mkdir()
        (root / "test.json").write_text(json.dumps(dataset))
        t_all, _, _ = timed(
            lambda: evaluate_detections(
                PreparedSplit.load(root, "test"), dets, Path(tmp) / "reports", sample_images=0
            ),
            1,
        )
        model = model_run(args.model_images, Path(tmp) / "model") if args.model_images else None

    figures = {
        "case": {
            "images": args.images,
            "detections_per_image": args.boxes,
            "detections": len(dets),
            "ground_truth": len(dataset["annotations"]),
            "classes": len(dataset["categories"]),
        },
        "coco_metrics": {
            "pycocotools_seconds": t_ref,
            "pycocotools_runs": ref_times,
            "ours_seconds": t_ours,
            "ours_runs": our_times,
            "ours_backend": "faster-coco-eval",
            "ours_with_pycocotools_backend_seconds": t_py,
            "max_abs_stat_difference": diff,
        },
        "other_seconds": {
            "voc_both_forms": t_voc,
            "tide_all_dap": t_tide,
            "evaluate_detections_all_reports_no_samples": t_all,
            "evaluate_detections_per_100_images": 100 * t_all / args.images,
        },
        "with_model": model,
        "numpy": np.__version__,
    }
    ratio = {
        "pycocotools_over_ours": t_ref / t_ours,
        "what": "pycocotools seconds / ours for the COCO metrics on the same detections "
        "(median of repeats); > 1 means ours is faster",
        "max_abs_stat_difference": diff,
    }
    out = write_report("eval", figures, ratio)
    print(
        f"COCO metrics on {len(dets)} detections / {args.images} images: pycocotools "
        f"{t_ref:.3f} s, ours {t_ours:.3f} s"
        f" -> ratio {ratio['pycocotools_over_ours']:.2f}x (max |Δstat| {diff:.1e})"
    )
    print(
        f"VOC {t_voc:.3f} s, TIDE {t_tide:.3f} s, all reports {t_all:.2f} s "
        f"({100 * t_all / args.images:.2f} s per 100 images)"
    )
    if model:
        print(
            f"with the model: {model['wall_seconds_per_100_images']:.1f} s per 100 images "
            f"({model['images_per_second_inference']:.1f} images/s inference)"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
