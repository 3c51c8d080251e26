"""Inference speed: our SSD in eager PyTorch, TorchScript and onnxruntime, against
torchvision's ``ssdlite320_mobilenet_v3_large`` and ``ssd300_vgg16`` (random weights), on
the same device in one run, at batch 1 and 8.

Pairs: our EfficientNet-Lite0 SSDLite at 320 as ``params.yaml`` ships it (with the stride-8
map) vs torchvision's SSDlite320-MobileNetV3, and our VGG16 SSD300 vs torchvision's
SSD300-VGG16; 20 classes + background on both sides.
Inputs are random images already at the network size (file decoding and resizing are not
timed). What each candidate includes:

- ``eager``: our model as ``Detector`` prepares it (BatchNorm folded, channels_last) +
  :class:`ssd.model.postprocess.PostProcessor` (network, decode, softmax, per-class top-k,
  threshold, NMS): the work of ``Detector.predict`` minus the resize.
- ``eager_graph``: :class:`ssd.infer.export.ExportWrapper` in eager PyTorch (network, softmax,
  decode; no NMS), i.e. what the exported files compute.
- ``torchscript``: the traced ``ExportWrapper`` (same work as ``eager_graph``).
- ``onnxruntime``: the exported ONNX file in onnxruntime (same work as ``eager_graph``).
- ``onnxruntime_nms``: ``onnxruntime`` + :func:`ssd.infer.export.postprocess_exported` (same work
  as ``eager``).
- ``torchvision``: ``model.eval()(images)``: its transform (normalise, resize to its fixed
  size), network, decode, per-class top-k, threshold, NMS.

Candidates run interleaved (one call each, in a shuffled order each round) and the medians
are reported, so that the noise of a shared machine hits all alike; onnxruntime does not
busy-wait between runs (it would slow whichever candidate comes next).
Writes ``reports/bench/inference.json``.

    python benchmarks/bench_inference.py [--batches 1 8] [--iters-lite 15] [--iters-vgg 3]
                                         [--threads 2] [--pairs lite0 vgg16]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnxruntime as ort
import torch
from machine import write_report
from torchvision.models.detection import ssd300_vgg16, ssdlite320_mobilenet_v3_large

from ssd.config import ModelConfig
from ssd.infer.export import (
    ExportWrapper,
    export_onnx,
    export_torchscript,
    load_torchscript,
    postprocess_exported,
)
from ssd.model.builder import build_model, build_postprocessor
from ssd.model.fusion import fold_batchnorm

NUM_CLASSES = 20
PAIRS = {
    "lite0": (
        ModelConfig(
            backbone="efficientnet_lite0",
            backbone_weights=None,
            fine_map=True,
            priors={"first_scale": 0.05, "min_scale": 0.1},
        ),
        320,
        "ssdlite320_mobilenet_v3_large",
    ),
    "vgg16": (ModelConfig(backbone="vgg16", backbone_weights=None), 300, "ssd300_vgg16"),
}


def interleaved(fns: dict[str, Callable[[], object]], iters: int) -> dict[str, float]:
    """Median seconds per call; the candidates alternate, in a new random order each round,
    so that machine noise and one runtime's leftover threads hit all alike."""
    for _ in range(2):  # warm-up (TorchScript's profiling executor optimises on call 2)
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    rng = random.Random(0)
    for _ in range(iters):
        order = list(fns.items())
        rng.shuffle(order)
        for name, fn in order:
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def build_candidates(
    pair: str, workdir: Path, threads: int
) -> Callable[[int], dict[str, Callable[[], object]]]:
    """Build and export the pair's models once; returns ``batch -> {candidate: call}``."""
    cfg, size, _ = PAIRS[pair]
    torch.manual_seed(0)
    model = build_model(cfg, NUM_CLASSES, pretrained=False).eval()
    names = [f"class{i}" for i in range(1, NUM_CLASSES + 1)]
    onnx_path = export_onnx(model, cfg, names, workdir / f"{pair}.onnx")
    ts_path = export_torchscript(model, cfg, names, workdir / f"{pair}.pt")
    ts_module, meta = load_torchscript(ts_path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # no busy-waiting after a run: it would steal the 2 cores from the next candidate
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])

    graph = ExportWrapper(model.to(memory_format=torch.channels_last)).eval()
    eager = fold_batchnorm(model).to(memory_format=torch.channels_last)  # as in Detector
    post = build_postprocessor(eager)
    tv_builder = ssdlite320_mobilenet_v3_large if pair == "lite0" else ssd300_vgg16
    tv = tv_builder(weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1).eval()
    print(f"[{pair}] exported {onnx_path.stat().st_size / 1e6:.0f} MB ONNX", flush=True)

    def candidates(batch: int) -> dict[str, Callable[[], object]]:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(batch, 3, size, size, generator=g)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        x_np = x.numpy()
        x_list = list(x)
        sizes = [(size, size)] * batch

        def run_eager() -> object:
            with torch.inference_mode():
                logits, offsets = eager(x_cl)
                return post(logits, offsets, sizes)

        def run_eager_graph() -> object:
            with torch.inference_mode():
                return graph(x_cl)

        def run_torchscript() -> object:
            with torch.inference_mode():
                return ts_module(x)

        def run_onnxruntime() -> object:
            return session.run(None, {"images": x_np})

        def run_onnxruntime_nms() -> object:
            boxes, scores = session.run(None, {"images": x_np})
            return postprocess_exported(
                boxes,
                scores,
                size,
                sizes,
                meta["score_threshold"],
                meta["nms_threshold"],
                meta["candidates_per_class"],
                meta["detections_per_image"],
            )

        def run_torchvision() -> object:
            with torch.inference_mode():
                return tv(x_list)

        return {
            "eager": run_eager,
            "eager_graph": run_eager_graph,
            "torchscript": run_torchscript,
            "onnxruntime": run_onnxruntime,
            "onnxruntime_nms": run_onnxruntime_nms,
            "torchvision": run_torchvision,
        }

    return candidates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--iters-lite", type=int, default=15, help="timed calls per lite0 candidate")
    ap.add_argument("--iters-vgg", type=int, default=3, help="timed calls per vgg16 candidate")
    ap.add_argument("--threads", type=int, default=2, help="torch and onnxruntime threads")
    ap.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    figures: dict[str, Any] = {
        "device": "cpu",
        "threads": args.threads,
        "num_classes": NUM_CLASSES,
        "includes": {
            "eager": "network (BatchNorm folded, as Detector) + decode + softmax + per-class "
            "top-k/threshold/NMS (ours)",
            "eager_graph": "network + softmax + decode, no NMS (what the exports compute)",
            "torchscript": "network + softmax + decode, no NMS",
            "onnxruntime": "network + softmax + decode, no NMS",
            "onnxruntime_nms": "onnxruntime + postprocess_exported (top-k/threshold/NMS)",
            "torchvision": "transform (normalise, resize) + network + decode + top-k/NMS",
        },
        "results": {},
    }
    ratio: dict[str, Any] = {
        "what": "speed ratios (images/s of the first over the second; > 1: first is faster)"
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for pair in args.pairs:
            iters = args.iters_lite if pair == "lite0" else args.iters_vgg
            candidates = build_candidates(pair, Path(tmp), args.threads)
            for batch in args.batches:
                secs = interleaved(candidates(batch), iters)
                key = f"{pair}_b{batch}"
                figures["results"][key] = {
                    name: {
                        "seconds_per_batch": round(s, 5),
                        "images_per_second": round(batch / s, 3),
                        "latency_ms_per_image": round(1000 * s / batch, 2),
                    }
                    for name, s in secs.items()
                } | {"iters": iters, "batch": batch, "torchvision_model": PAIRS[pair][2]}
                ratio[key] = {
                    "eager_vs_torchvision": round(secs["torchvision"] / secs["eager"], 3),
                    "onnxruntime_vs_eager_graph": round(
                        secs["eager_graph"] / secs["onnxruntime"], 3
                    ),
                    "torchscript_vs_eager_graph": round(
                        secs["eager_graph"] / secs["torchscript"], 3
                    ),
                    "onnxruntime_nms_vs_eager": round(secs["eager"] / secs["onnxruntime_nms"], 3),
                    "onnxruntime_nms_vs_torchvision": round(
                        secs["torchvision"] / secs["onnxruntime_nms"], 3
                    ),
                }
                for name, s in secs.items():
                    rows.append((key, name, batch / s, 1000 * s / batch))
                    print(
                        f"{key:>9} {name:>16}: {batch / s:8.2f} img/s  "
                        f"{1000 * s / batch:8.1f} ms/img",
                        flush=True,
                    )
                print(f"{key:>9} ratios: {ratio[key]}", flush=True)
    print("wrote", write_report("inference", figures, ratio))


if __name__ == "__main__":
    main()
