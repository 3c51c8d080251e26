"""A one-minute check that the installed package works end to end on random data.

Builds the configured model, runs one training step (loss + backward) and one detection
pass, and prints what it did. ``python -m ssd.smoke [--params params.yaml]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from ssd.config import load_config
from ssd.inference import Detector
from ssd.loss import MultiBoxLoss
from ssd.model import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    cfg = load_config(args.params).model
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=cfg.num_classes or 6)
    size = model.input_size
    loss_fn = MultiBoxLoss(
        model.priors, (size, size), cfg.iou_threshold, cfg.neg_pos_ratio, cfg.alpha, cfg.variances
    )
    images = torch.rand(2, 3, size, size)
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 120.0, 160.0]]), "labels": torch.tensor([1])}
    ] * 2
    t0 = time.perf_counter()
    out = loss_fn(*model(images), targets)
    out["loss"].backward()
    t1 = time.perf_counter()
    dets = Detector(model, cfg, [f"class{i}" for i in range(model.num_classes)], "auto").predict(
        [torch.randint(0, 255, (3, 240, 320), dtype=torch.uint8)]
    )
    t2 = time.perf_counter()
    print(f"smoke: {cfg.backbone} at {size}px, {len(model.priors)} default boxes")
    print(
        f"smoke: train step loss={out['loss'].item():.3f} ({t1 - t0:.2f} s), "
        f"detect gave {len(dets[0]['boxes'])} boxes ({t2 - t1:.2f} s) - OK"
    )


if __name__ == "__main__":
    main()
