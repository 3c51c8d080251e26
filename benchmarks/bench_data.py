"""Is loading the bottleneck? Images/s of the SSD training loader next to the light
model's train-step images/s, on BCCD prepared into a temporary folder.

    .venv/bin/python benchmarks/bench_data.py [--workers 2] [--batch-size 16] [--device auto]

Writes ``reports/bench/data.json`` (``SSD_BENCH_DIR`` moves it) through ``machine.py``.
``ratio`` = loader images/s (with workers) divided by train-step images/s: above 1, the
loader keeps up with training.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from machine import write_report
from torch.utils.data import DataLoader

from ssd.config import AugmentConfig, DataConfig, ModelConfig
from ssd.data.dataset import DetectionDataset, collate_detections
from ssd.data.prepare import prepare_dataset
from ssd.data.transforms import build_train_transforms

REPO = Path(__file__).resolve().parents[1]
BCCD = REPO.parent / "shared" / "datasets" / "bccd"


def loader_throughput(
    dataset: DetectionDataset, batch_size: int, workers: int, batches: int
) -> dict[str, float]:
    """Images/s of the loader over ``batches`` batches after one warm-up batch."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        collate_fn=collate_detections,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
        drop_last=True,
    )
    images = 0
    done = 0
    start = 0.0
    while done < batches + 1:
        for batch, _ in loader:
            if done == 0:
                start = time.perf_counter()
            else:
                images += batch.shape[0]
            done += 1
            if done == batches + 1:
                break
    seconds = time.perf_counter() - start
    return {
        "images_per_second": round(images / seconds, 1),
        "images": images,
        "seconds": round(seconds, 2),
    }


def train_step_throughput(
    dataset: DetectionDataset, batch_size: int, steps: int, device: torch.device
) -> dict[str, Any]:
    """Images/s of forward + loss + backward + SGD step of the light (default) model."""
    try:
        from ssd.config import TrainConfig
        from ssd.model.builder import build_loss, build_model
    except ImportError as err:  # the model code is not there yet
        return {"skipped": f"model not available: {err}"}
    cfg = ModelConfig()
    model = build_model(cfg, num_classes=dataset.num_classes, pretrained=False).to(device)
    size = cfg.resolved_input_size
    criterion = build_loss(model, TrainConfig()).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    images, targets = collate_detections([dataset[i] for i in range(batch_size)])
    images = images.to(device)
    targets = [
        {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()}
        for t in targets
    ]
    model.train()

    def step() -> None:
        logits, offsets = model(images)
        loss = criterion(logits, offsets, targets)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        "model": f"{cfg.backbone} {cfg.resolved_head} {size}x{size}",
        "batch_size": batch_size,
        "images_per_second": round(batch_size * steps / seconds, 1),
        "steps": steps,
        "seconds": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=BCCD, help="Pascal VOC dataset root")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=24, help="timed loader batches")
    parser.add_argument("--steps", type=int, default=5, help="timed train steps")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    size = ModelConfig().resolved_input_size
    with tempfile.TemporaryDirectory() as tmp:
        cfg = DataConfig(source="voc", path=str(args.data), name="bccd", prepared_root=tmp)
        prepared = prepare_dataset(cfg).out_dir
        train = DetectionDataset(prepared, "train", build_train_transforms(size, AugmentConfig()))
        loader = loader_throughput(train, args.batch_size, args.workers, args.batches)
        single = loader_throughput(train, args.batch_size, 0, max(4, args.batches // 4))
        step = train_step_throughput(train, args.batch_size, args.steps, device)

    figures: dict[str, Any] = {
        "dataset": f"BCCD train split ({len(train)} images, 640x480 JPEG) -> {size}x{size}",
        "device": str(device),
        "loader": {"num_workers": args.workers, "batch_size": args.batch_size, **loader},
        "loader_single_process": {"num_workers": 0, "batch_size": args.batch_size, **single},
        "train_step": step,
    }
    ratio: dict[str, Any] = {
        "what": "training-loader images/s (augmentations, num_workers workers) divided by the "
        "light model's train-step images/s (> 1: loading is not the bottleneck)",
        "loader_over_train_step": None,
    }
    if "images_per_second" in step:
        ratio["loader_over_train_step"] = round(
            loader["images_per_second"] / step["images_per_second"], 2
        )
    print(json.dumps({"figures": figures, "ratio": ratio}, indent=2))
    print("wrote", write_report("data", figures, ratio))


if __name__ == "__main__":
    main()
