"""Our SSD300-VGG16 against torchvision's ``ssd300_vgg16``, same batch, same process.

Times a full training step (forward, loss, backward, SGD step) and eval inference with
post-processing, for a batch of 8 random 300x300 images with a few boxes each, 21 classes
(VOC), random weights on both sides. Prints images/s and ratios (ours / torchvision, so
> 1 means we are faster) and writes ``reports/bench/core.json``.

    python benchmarks/bench_core.py [--batch 8] [--iters 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from machine import write_report
from torchvision.models.detection import ssd300_vgg16

from ssd.config import ModelConfig
from ssd.model.builder import build_model, build_postprocessor
from ssd.model.loss import MultiBoxLoss

NUM_CLASSES = 20


def make_batch(
    n: int, device: torch.device, size: int = 300
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, size, size, generator=g)
    targets = []
    for i in range(n):
        k = 2 + i % 4
        xy = torch.rand(k, 2, generator=g) * (size - 100)
        wh = 20 + torch.rand(k, 2, generator=g) * 80
        targets.append(
            {
                "boxes": torch.cat([xy, xy + wh], 1).to(device),
                "labels": torch.randint(1, NUM_CLASSES + 1, (k,), generator=g).to(device),
            }
        )
    return images.to(device), targets


def interleaved(
    fns: dict[str, Callable[[], object]], iters: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per call; the candidates alternate so machine noise hits all alike."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def parse_args(doc: str | None) -> tuple[argparse.Namespace, torch.device]:
    """``--batch``, ``--iters`` and ``--device``, shared by the model benchmarks; seeds torch."""
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    return args, torch.device(args.device)


def main() -> None:
    args, device = parse_args(__doc__)
    images, targets = make_batch(args.batch, device)
    image_list = list(images)

    # --- torchvision
    tv = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1).to(device)
    tv_opt = torch.optim.SGD(tv.parameters(), lr=1e-4, momentum=0.9)

    def tv_train() -> None:
        tv.train()
        losses = tv(image_list, targets)
        loss = sum(losses.values())
        tv_opt.zero_grad(set_to_none=True)
        loss.backward()
        tv_opt.step()

    def tv_eval() -> None:
        tv.eval()
        with torch.inference_mode():
            tv(image_list)

    # --- ours (channels_last, inference_mode, batched matching and post-processing)
    cfg = ModelConfig(backbone="vgg16", backbone_weights=None)
    model = build_model(cfg, NUM_CLASSES).to(device).to(memory_format=torch.channels_last)
    criterion = MultiBoxLoss(model.priors, (300, 300)).to(device)
    post = build_postprocessor(model)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    x = images.contiguous(memory_format=torch.channels_last)

    def our_train() -> None:
        model.train()
        out = criterion(*model(x), targets)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()

    def our_eval() -> None:
        model.eval()
        with torch.inference_mode():
            post(*model(x), [(300, 300)] * len(x))

    n = args.batch
    res = {}
    timings = interleaved(
        {"torchvision_train": tv_train, "ours_train": our_train}, args.iters, device
    )
    timings |= interleaved({"torchvision_eval": tv_eval, "ours_eval": our_eval}, args.iters, device)
    for name, sec in timings.items():
        res[name] = {"seconds_per_batch": round(sec, 4), "images_per_second": round(n / sec, 3)}
        print(
            f"{name:>18}: {n / sec:8.2f} img/s  (median {sec:.3f} s per batch of {n})", flush=True
        )
    ratio = {
        "what": "ours images/s divided by torchvision images/s (> 1: ours faster)",
        "train_step": round(
            res["ours_train"]["images_per_second"] / res["torchvision_train"]["images_per_second"],
            3,
        ),
        "eval_inference": round(
            res["ours_eval"]["images_per_second"] / res["torchvision_eval"]["images_per_second"], 3
        ),
    }
    print(f"ratio train step (ours/torchvision): {ratio['train_step']:.3f}")
    print(f"ratio eval inference (ours/torchvision): {ratio['eval_inference']:.3f}")
    figures = {
        "batch": n,
        "iters": args.iters,
        "device": str(device),
        "num_classes": NUM_CLASSES,
        **res,
    }
    print("wrote", write_report("core", figures, ratio))


if __name__ == "__main__":
    main()
