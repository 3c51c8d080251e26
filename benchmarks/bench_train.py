"""The light model's training step and eager inference against torchvision's SSDLite.

Our model is the ``params.yaml`` light model: EfficientNet-Lite0 SSDLite at 320 with the
stride-8 map (``model.fine_map: true``), 21 classes, random weights (speed does not depend
on them). The reference is torchvision's ``ssdlite320_mobilenet_v3_large`` (random weights,
21 classes). Each pair runs interleaved in one process (one call of each in turn, medians
reported), so that the noise of a shared machine hits both alike:

- ``train_all``: a training step (forward, MultiBox loss, backward, SGD step) with every
  layer trainable, on both sides; batch ``--batch`` of random images with a few boxes.
- ``train_frozen``: ours with ``train.freeze_stem_blocks: 5`` (the ``params.yaml``
  default: stem and first 5 blocks fixed, in eval mode, as ``ssd train`` sets them up)
  against torchvision with its default trainable layers (all 6 of MobileNetV3's stages).
- ``infer_b1`` / ``infer_b8``: eager inference with post-processing at batch 1 and 8: ours
  as ``Detector.predict`` runs it (BatchNorm folded, channels_last, decode, per-class
  top-k and NMS; the resize is not timed), torchvision's ``model.eval()(images)``.
- ``vgg16`` (with ``--pairs vgg16``): our SSD300-VGG16 train step against ``ssd300_vgg16``.

Training runs as ``ssd train`` runs it: NCHW fp32 on CPU; channels_last with autocast
(bf16) on CUDA. Prints images/s and ratios (ours / reference, > 1 means ours is faster)
and writes ``reports/bench/train.json``. Each call's process CPU time is recorded too: on
a busy machine, ``--threads 1`` and the CPU-time ratio give steadier comparisons.

    python benchmarks/bench_train.py [--batch 8] [--iters 5] [--iters-infer 15]
                                     [--pairs train_all train_frozen infer_b1 infer_b8]
                                     [--threads N] [--heap-malloc] [--device cpu]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import statistics
import time
from collections.abc import Callable

import torch
from bench_core import NUM_CLASSES, make_batch
from machine import write_report
from torchvision.models.detection import ssd300_vgg16, ssdlite320_mobilenet_v3_large

from ssd.config import ModelConfig, TrainConfig
from ssd.model.builder import build_loss, build_model, build_postprocessor
from ssd.model.fusion import fold_batchnorm
from ssd.train.optim import freeze_backbone_parts, set_train_mode

LITE0 = ModelConfig(
    backbone="efficientnet_lite0",
    backbone_weights=None,
    fine_map=True,
    priors={"first_scale": 0.05, "min_scale": 0.1},
)
MOBILENET_V2 = ModelConfig(  # the COCO start's network (TF's ssd_mobilenet_v2 layout)
    backbone="mobilenet_v2",
    backbone_weights=None,
    priors={"layout": "tf", "first_scale": None, "min_scale": 0.2, "max_scale": 0.95},
)
MODELS = {"lite0": LITE0, "mobilenet_v2": MOBILENET_V2}
VGG16 = ModelConfig(backbone="vgg16", backbone_weights=None)
PAIRS = ("train_all", "train_frozen", "infer_b1", "infer_b8", "vgg16")
DEFAULT_PAIRS = PAIRS[:4]
FROZEN_BLOCKS = 5  # params.yaml train.freeze_stem_blocks


def heap_malloc() -> None:
    """Make glibc serve every allocation from the heap and never give it back.

    By default glibc maps each block over 32 MB (and smaller ones, depending on history)
    with mmap and unmaps it when freed, so every large activation of every step starts
    on fresh pages that the kernel must fault in and zero: measured 0.4-1.2 s of system
    time per all-trainable Lite0 step at batch 8 (0.1-0.2 s for torchvision's SSDLite).
    """
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    libc.mallopt(m_mmap_max, 0)
    libc.mallopt(m_trim_threshold, 2**31 - 1)


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[object]:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _sgd(params: object) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=1e-4, momentum=0.9, weight_decay=5e-4)  # type: ignore[arg-type]


def torchvision_train_step(name: str, batch: int, device: torch.device) -> Callable[[], None]:
    builder, size = (
        (ssdlite320_mobilenet_v3_large, 320) if name == "ssdlite" else (ssd300_vgg16, 300)
    )
    model = builder(weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1)
    model.to(device).train()
    images, targets = make_batch(batch, device, size)
    image_list = list(images)
    opt = _sgd([p for p in model.parameters() if p.requires_grad])

    def step() -> None:
        with _autocast(device):
            losses = model(image_list, targets)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        opt.step()

    return step


def our_train_step(
    cfg: ModelConfig, batch: int, device: torch.device, frozen_blocks: int = 0
) -> Callable[[], None]:
    """A step of ``ssd train``: frozen parts as ``freeze_backbone_parts`` / ``set_train_mode``
    leave them, the optimizer over the trainable parameters only."""
    t = TrainConfig(freeze_stem_blocks=frozen_blocks)
    model = build_model(cfg, NUM_CLASSES, pretrained=False).to(device)
    freeze_backbone_parts(model, t)
    set_train_mode(model, t)
    size = cfg.resolved_input_size
    images, targets = make_batch(batch, device, size)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    criterion = build_loss(model, t).to(device)
    opt = _sgd([p for p in model.parameters() if p.requires_grad])

    def step() -> None:
        with _autocast(device):
            cls_logits, offsets = model(images)
        out = criterion(cls_logits.float(), offsets.float(), targets)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()

    return step


def our_inference(cfg: ModelConfig, batch: int, device: torch.device) -> Callable[[], object]:
    """What ``Detector.predict`` runs once the images are resized: folded BatchNorm,
    channels_last, network, decode, per-class top-k, threshold, NMS."""
    model = build_model(cfg, NUM_CLASSES, pretrained=False)
    model = fold_batchnorm(model).to(device).to(memory_format=torch.channels_last)
    post = build_postprocessor(model)
    size = cfg.resolved_input_size
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    x = x.to(device).contiguous(memory_format=torch.channels_last)
    sizes = [(size, size)] * batch

    @torch.inference_mode()
    def run() -> object:
        return post(*model(x), sizes)

    return run


def torchvision_inference(batch: int, device: torch.device) -> Callable[[], object]:
    model = ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1
    )
    model.to(device).eval()
    x = torch.rand(batch, 3, 320, 320, generator=torch.Generator().manual_seed(0)).to(device)
    images = list(x)

    @torch.inference_mode()
    def run() -> object:
        return model(images)

    return run


def interleaved(
    fns: dict[str, Callable[[], object]], iters: int, device: torch.device
) -> dict[str, tuple[float, float]]:
    """Median wall seconds and median process CPU seconds (user + system, all threads) per
    call; the candidates alternate so machine noise hits all alike. On a busy machine the
    CPU time is the steadier of the two (with ``--threads 1`` it is not inflated by other
    processes taking the cores; page faults count in it)."""
    for _ in range(2):  # warm-up (allocator, oneDNN primitive caches)
        for fn in fns.values():
            fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            c0, t0 = os.times(), time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            t1, c1 = time.perf_counter(), os.times()
            wall[name].append(t1 - t0)
            cpu[name].append(c1.user - c0.user + c1.system - c0.system)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in fns}


def forward_flops(model: torch.nn.Module, size: int) -> float:
    """FLOPs of one forward pass at batch 1 (torch's counter: 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, size, size)) if size else model([torch.rand(3, 320, 320)])
    return float(counter.get_total_flops())


def candidates(
    pair: str, batch: int, device: torch.device, ours_cfg: ModelConfig = LITE0, name: str = "lite0"
) -> tuple[int, Callable[[], object], Callable[[], object], str, str]:
    """``(images per call, ours, reference, our description, reference description)``."""
    if pair == "train_all":
        return (
            batch,
            our_train_step(ours_cfg, batch, device),
            torchvision_train_step("ssdlite", batch, device),
            f"{name} train step, all layers trainable",
            "ssdlite320_mobilenet_v3_large train step, all layers trainable",
        )
    if pair == "train_frozen":
        return (
            batch,
            our_train_step(ours_cfg, batch, device, FROZEN_BLOCKS),
            torchvision_train_step("ssdlite", batch, device),
            f"{name} train step, stem + {FROZEN_BLOCKS} blocks frozen (params.yaml)",
            "ssdlite320_mobilenet_v3_large train step, default trainable layers (all 6)",
        )
    if pair == "vgg16":
        return (
            batch,
            our_train_step(VGG16, batch, device),
            torchvision_train_step("ssd300_vgg16", batch, device),
            "SSD300-VGG16 train step",
            "ssd300_vgg16 train step",
        )
    n = int(pair.removeprefix("infer_b"))
    return (
        n,
        our_inference(ours_cfg, n, device),
        torchvision_inference(n, device),
        f"{name} eager inference + post-processing, batch {n} (as Detector.predict)",
        f"ssdlite320_mobilenet_v3_large eval, batch {n}",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=8, help="training batch")
    ap.add_argument("--iters", type=int, default=5, help="timed train steps per candidate")
    ap.add_argument("--iters-infer", type=int, default=15, help="timed inference calls")
    ap.add_argument("--pairs", nargs="+", default=list(DEFAULT_PAIRS), choices=PAIRS)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", choices=list(MODELS), default="lite0", help="our model")
    ap.add_argument(
        "--heap-malloc",
        action="store_true",
        help="glibc: serve large tensors from the heap and keep it (no mmap/munmap, so no "
        "fresh zeroed pages for every big activation; see heap_malloc)",
    )
    args = ap.parse_args()
    if args.heap_malloc:
        heap_malloc()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)

    figures: dict[str, object] = {
        "heap_malloc": args.heap_malloc,
        "batch": args.batch,
        "iters": args.iters,
        "iters_infer": args.iters_infer,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "num_classes": NUM_CLASSES,
        "model": MODELS[args.model].model_dump(exclude_defaults=True),
    }
    ours_net = build_model(MODELS[args.model], NUM_CLASSES, pretrained=False)
    ref_net = ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1
    )
    flops = {
        "ours_gflops": forward_flops(ours_net, MODELS[args.model].resolved_input_size) / 1e9,
        "reference_gflops": forward_flops(ref_net, 0) / 1e9,
        "classes": NUM_CLASSES,
    }
    figures["forward_flops_batch1"] = flops
    print(
        f"forward GFLOPs (batch 1, {NUM_CLASSES} classes): ours {flops['ours_gflops']:.2f}, "
        f"torchvision {flops['reference_gflops']:.2f}",
        flush=True,
    )
    ratio: dict[str, object] = {"what": "ours images/s / reference images/s (> 1: ours faster)"}
    ratio_cpu: dict[str, object] = {"what": "reference CPU s per call / ours (> 1: ours cheaper)"}
    for pair in args.pairs:
        n, ours, ref, ours_what, ref_what = candidates(
            pair, args.batch, device, MODELS[args.model], args.model
        )
        iters = args.iters_infer if pair.startswith("infer") else args.iters
        sec = interleaved({"ours": ours, "reference": ref}, iters, device)
        (ours_s, ours_cpu), (ref_s, ref_cpu) = sec["ours"], sec["reference"]
        figures[pair] = {
            "ours": ours_what,
            "reference": ref_what,
            "ours_images_per_second": round(n / ours_s, 3),
            "reference_images_per_second": round(n / ref_s, 3),
            "ours_cpu_seconds_per_call": round(ours_cpu, 4),
            "reference_cpu_seconds_per_call": round(ref_cpu, 4),
            "iters": iters,
        }
        ratio[pair] = round(ref_s / ours_s, 3)
        ratio_cpu[pair] = round(ref_cpu / ours_cpu, 3)
        print(
            f"{pair:>13}: ours {n / ours_s:7.2f} img/s   torchvision {n / ref_s:7.2f} img/s   "
            f"ratio {ref_s / ours_s:.3f}   (CPU-time ratio {ref_cpu / ours_cpu:.3f})",
            flush=True,
        )
    ratio["cpu_time"] = ratio_cpu
    name = "train" if args.model == "lite0" else f"train-{args.model}"
    print("wrote", write_report(name, figures, ratio))


if __name__ == "__main__":
    main()
