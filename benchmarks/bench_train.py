"""Training-step throughput of both backbones against torchvision's nearest models.

One step = forward, MultiBox loss, backward, SGD step, on a batch of random images with
a few boxes each (21 classes), random detection heads, the way ``ssd train`` runs it:
NCHW fp32 on CPU; channels_last with autocast (bf16) on CUDA. References in the same
process, interleaved: torchvision ``ssdlite320_mobilenet_v3_large`` for the light models
and ``ssd300_vgg16`` for the paper's. Prints images/s and ratios (ours / reference, > 1
means ours is faster) and writes ``reports/bench/train.json``.

    python benchmarks/bench_train.py [--batch 8] [--iters 5] [--device cpu]
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from bench_core import NUM_CLASSES, interleaved, make_batch, parse_args
from machine import write_report
from torchvision.models.detection import ssd300_vgg16, ssdlite320_mobilenet_v3_large

from ssd.builder import build_model
from ssd.config import ModelConfig
from ssd.loss import MultiBoxLoss

OURS = {
    "lite0": (ModelConfig(backbone="efficientnet_lite0", backbone_weights=None), "tv_ssdlite"),
    "lite0_fine_map": (
        ModelConfig(
            backbone="efficientnet_lite0",
            backbone_weights=None,
            fine_map=True,
            priors={"first_scale": 0.05, "min_scale": 0.1},
        ),
        "tv_ssdlite",
    ),
    "vgg16": (ModelConfig(backbone="vgg16", backbone_weights=None), "tv_ssd300_vgg16"),
}


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[object]:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def torchvision_step(name: str, batch: int, device: torch.device) -> Callable[[], None]:
    if name == "tv_ssdlite":
        model = ssdlite320_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1
        )
        size = 320
    else:
        model = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1)
        size = 300
    model.to(device).train()
    images, targets = make_batch(batch, device, size)
    image_list = list(images)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step() -> None:
        with _autocast(device):
            losses = model(image_list, targets)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        opt.step()

    return step


def our_step(cfg: ModelConfig, batch: int, device: torch.device) -> Callable[[], None]:
    model = build_model(cfg, NUM_CLASSES, pretrained=False).to(device).train()
    size = cfg.resolved_input_size
    images, targets = make_batch(batch, device, size)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    criterion = MultiBoxLoss(model.priors, (size, size)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step() -> None:
        with _autocast(device):
            cls_logits, offsets = model(images)
        out = criterion(cls_logits.float(), offsets.float(), targets)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()

    return step


def main() -> None:
    args, device = parse_args(__doc__)
    n = args.batch
    figures: dict[str, object] = {"batch": n, "iters": args.iters, "device": str(device)}
    ratio: dict[str, object] = {"what": "ours images/s / reference images/s (> 1: ours faster)"}
    for name, (cfg, ref) in OURS.items():
        sec = interleaved(
            {name: our_step(cfg, n, device), ref: torchvision_step(ref, n, device)},
            args.iters,
            device,
        )
        ours, theirs = n / sec[name], n / sec[ref]
        figures[name] = {"images_per_second": round(ours, 3), "reference": ref}
        figures[f"{ref}_vs_{name}"] = {"images_per_second": round(theirs, 3)}
        ratio[name] = round(ours / theirs, 3)
        print(
            f"{name:>15}: {ours:7.2f} img/s   {ref}: {theirs:7.2f} img/s   "
            f"ratio {ours / theirs:.3f}",
            flush=True,
        )
    print("wrote", write_report("train", figures, ratio))


if __name__ == "__main__":
    main()
