"""Time to accuracy: test-split mAP@0.5 and COCO AP against training seconds, ours against
torchvision's ``ssdlite320_mobilenet_v3_large`` trained in the same run.

Ours is ``ssd train`` itself (:func:`ssd.train.loop.train`) with the params file's settings.
At the end of every epoch, timed apart from training, the weights are evaluated on the
test split with the project's COCO evaluation (the paper's post-processing, as
validation uses). The reference is torchvision's SSDLite, from scratch like ours when
no ImageNet weights are on the machine (no download ever), fed the same augmented
batches (``ssd.train.sampling.make_loader``, same input size, batch size and number of epochs),
with torchvision's own recipe for it (``references/detection``: SGD momentum 0.9, lr 0.15
for a batch of 192 scaled linearly to ours, weight decay 4e-5, linear warm-up over the
first epoch, cosine decay), and evaluated the same way at the end of every epoch.

Writes ``reports/bench/time_to_accuracy-<data.name>.json`` and a PNG with both curves
(mAP@0.5 against training minutes); prints both curves and the ratio of the times each
model needed to reach the accuracy the slower one reached.

    python benchmarks/bench_time_to_accuracy.py                     # synthetic, params.yaml
    python benchmarks/bench_time_to_accuracy.py --params configs/bccd.yaml
    python benchmarks/bench_time_to_accuracy.py --set train.epochs=4 --threads 2
    # weight EMAs of several spans kept beside one training (train.ema off), all scored:
    python benchmarks/bench_time_to_accuracy.py --only ours --set train.ema=false \
        --ema-spans 0.02,0.05,0.1 [--score-every 4]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from machine import machine, write_report
from torchvision.models.detection import ssdlite320_mobilenet_v3_large

import ssd.train.loop as ssd_train
import ssd.train.optim as ssd_optim
from ssd.config import load_config
from ssd.data.prepare import prepare_dataset
from ssd.data.prepared import PreparedSplit
from ssd.evaluation.coco import coco_evaluate
from ssd.evaluation.voc import voc_evaluate
from ssd.infer.predict import predict_split
from ssd.train.distributed import DistEnv
from ssd.train.sampling import make_loader

REPO = Path(__file__).resolve().parents[1]
# Starting points of our detector, compared side by side with --start (each trains in turn,
# the same data, budget and recipe otherwise): the params file's as it is, and the
# detector that has seen COCO (TF's ssd_mobilenet_v2 and its default boxes, heads included).
STARTS: dict[str, list[str]] = {
    "params": [],
    "imagenet-lite0": [
        "model.backbone=efficientnet_lite0",
        "model.fine_map=true",
        "model.priors.layout=paper",
        "model.priors.first_scale=0.05",
        "model.priors.min_scale=0.1",
        "model.priors.max_scale=0.9",
    ],
    "coco-mobilenet_v2": [
        "model.backbone=mobilenet_v2",
        "model.fine_map=false",
        "model.priors.layout=tf",
        "model.priors.first_scale=null",
        "model.priors.min_scale=0.2",
        "model.priors.max_scale=0.95",
    ],
}


def score(detector: Any, split: PreparedSplit, batch_size: int) -> dict[str, float]:
    results, _ = predict_split(detector, split, batch_size, progress=False)
    stats = coco_evaluate(split.dataset, results).stats
    return {
        "map50": float(stats.get("map50") or 0.0),
        "map": float(stats.get("map") or 0.0),
        "voc07_map50": float(voc_evaluate(split.dataset, results).map07),
    }


def train_ours(
    cfg: Any, test: PreparedSplit, ema_spans: list[float], score_every: int = 1
) -> tuple[list[dict[str, float]], dict[str, list[dict[str, float]]]]:
    """``ssd train`` with the test split scored at each epoch end (timed apart).

    ``ema_spans``: also keep a weight EMA (:mod:`ssd.train.ema`) of each span beside the run
    (their updates timed apart too) and score each at every epoch end: several EMA
    settings compared on the very same training in one run. Returns the curve of the
    weights ``ssd train`` validates and one curve per span.
    """
    from ssd.infer.detector import Detector
    from ssd.train.ema import weight_ema

    curve: list[dict[str, float]] = []
    side: dict[str, list[dict[str, float]]] = {f"ema {s:g}": [] for s in ema_spans}
    emas: dict[str, Any] = {}
    clock = {"start": 0.0, "eval": 0.0}
    original, original_step = ssd_train.validate, ssd_train.train_step
    t = cfg.train
    per_epoch = ssd_train.load_data(
        cfg.layout.prepared, cfg.data.name, t, cfg.model, DistEnv()
    ).steps_per_epoch
    steps = ssd_train.total_steps(t, per_epoch)

    def point_of(model: Any) -> dict[str, float]:
        was = model.training
        detector = Detector(model, test.class_names, None, str(next(model.parameters()).device))
        point = score(detector, test, cfg.evaluate.batch_size)
        model.train(was)
        return point

    def validate(model: Any, split: PreparedSplit, batch_size: int, progress: bool = False):
        t0 = time.perf_counter()
        out = original(model, split, batch_size, progress)
        seconds = t0 - clock["start"] - clock["eval"]
        last = len(curve) + 1 == cfg.train.epochs
        if (len(curve) + 1) % score_every and not last:
            curve.append({"seconds": seconds})
            clock["eval"] += time.perf_counter() - t0
            return out
        curve.append({"seconds": seconds, **point_of(model)})
        line = f"  ours  {seconds / 60:6.2f} min  test mAP@0.5 {curve[-1]['map50']:.3f}"
        for name, ema in emas.items():
            side[name].append({"seconds": seconds, **point_of(ema.module)})
            line += f"  {name} {side[name][-1]['map50']:.3f}"
        print(line, flush=True)
        clock["eval"] += time.perf_counter() - t0
        return out

    def train_step(state: Any, *args: Any, **kwargs: Any) -> Any:
        out = original_step(state, *args, **kwargs)
        t0 = time.perf_counter()
        for span in ema_spans:
            name = f"ema {span:g}"
            if name not in emas:
                emas[name] = weight_ema(state.model, span, steps)
            if out is not None:
                emas[name].update_parameters(state.model)
        clock["eval"] += time.perf_counter() - t0
        return out

    # finish_epoch and train_one_epoch look these up in the module
    ssd_train.validate, ssd_train.train_step = validate, train_step
    try:
        clock["start"] = time.perf_counter()
        ssd_train.train(cfg, progress=False)
    finally:
        ssd_train.validate, ssd_train.train_step = original, original_step
    return [p for p in curve if "map50" in p], side


class TorchvisionDetector:
    """``predict`` as :class:`ssd.infer.detector.Detector` has it, for ``predict_split``."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def predict(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        was = self.model.training
        self.model.eval()
        out = self.model([i.float() / 255 for i in images])
        self.model.train(was)
        return [{k: v.cpu() for k, v in o.items()} for o in out]


def train_torchvision(cfg: Any, test: PreparedSplit, recipe: str) -> list[dict[str, float]]:
    t = cfg.train
    torch.manual_seed(t.seed)
    data = ssd_train.load_data(cfg.layout.prepared, cfg.data.name, t, cfg.model, DistEnv())
    size = cfg.model.resolved_input_size
    model = ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=len(data.class_names) + 1
    )
    model.transform.min_size, model.transform.max_size = (size,), size
    model.transform.fixed_size = (size, size)
    params = [p for p in model.parameters() if p.requires_grad]
    steps = data.steps_per_epoch * t.epochs
    if recipe == "torchvision":  # references/detection: lr 0.15 for 8 GPUs x 24 images
        lr, momentum, decay = 0.15 * t.batch_size / 192, 0.9, 4e-5
        warmup = min(1000, data.steps_per_epoch - 1)
    else:  # the params file's: what ssd train uses for ours
        lr, momentum, decay = t.lr, t.momentum, t.weight_decay
        warmup = ssd_optim.warmup_steps(t, steps)
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=decay)

    def factor(step: int) -> float:
        if step < warmup:
            return 0.001 + (1 - 0.001) * step / warmup
        return 0.5 * (1 + math.cos(math.pi * step / steps))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    detector = TorchvisionDetector(model)
    curve: list[dict[str, float]] = []
    seconds = 0.0
    for epoch in range(t.epochs):
        t0 = time.perf_counter()
        model.train()
        for images, targets in make_loader(data.train, t, epoch, DistEnv(), 0, False):
            losses = model(
                list(images),
                [
                    {"boxes": tg["boxes"].as_subclass(torch.Tensor), "labels": tg["labels"]}
                    for tg in targets
                ],
            )
            loss = sum(losses.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[union-attr]
            opt.step()
            sched.step()
        seconds += time.perf_counter() - t0
        with torch.inference_mode():
            point = score(detector, test, t.batch_size)
        curve.append({"seconds": seconds, **point})
        print(f"  tv    {seconds / 60:6.2f} min  test mAP@0.5 {point['map50']:.3f}", flush=True)
    return curve


def time_to(curve: list[dict[str, float]], target: float) -> float | None:
    return next((p["seconds"] for p in curve if p["map50"] >= target), None)


def plot(result: dict[str, Any], path: Path, extra: list[dict[str, Any]] = ()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    runs = [result] + [r["figures"] for r in extra]
    curves = []
    for run in runs:
        starts = run.get("starts") or {"": {"curve": run["ours"], "label": run["ours_label"]}}
        for start in starts.values():
            curves.append((start["curve"], f"{start['label']}, {run['epochs']} epochs"))
        curves.append((run["torchvision"], f"{run['tv_label']}, {run['epochs']} epochs"))
        for name, pts in run.get("ema", {}).items():
            curves.append((pts, f"ours, weight {name}, {run['epochs']} epochs"))
    for pts, label in curves:
        if pts:
            ax.plot([p["seconds"] / 60 for p in pts], [p["map50"] for p in pts], "o-", label=label)
    ax.set_xlabel("training minutes (evaluation not counted)")
    ax.set_ylabel("test mAP@0.5 (COCO, IoU 0.5)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(f"time to accuracy on '{result['dataset']}' ({result['machine_cores']} cores)")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--only", choices=["ours", "torchvision"], default=None)
    ap.add_argument(
        "--plot-with",
        action="append",
        default=[],
        metavar="JSON",
        help="also draw the torchvision curve of an earlier report (another --tv-recipe)",
    )
    ap.add_argument(
        "--tv-recipe",
        choices=["torchvision", "ours"],
        default="torchvision",
        help="torchvision's reference recipe scaled to the batch, or the params file's "
        "lr / momentum / weight decay / warm-up",
    )
    ap.add_argument("--replot", metavar="JSON", help="redraw a report's PNG; train nothing")
    ap.add_argument(
        "--ema-spans",
        default="",
        metavar="S1,S2",
        help="also score weight EMAs of these spans (fractions of the steps) kept beside "
        "our run: several EMA settings on the same training",
    )
    ap.add_argument("--score-every", type=int, default=1, help="score ours every N epochs")
    ap.add_argument(
        "--start",
        action="append",
        default=[],
        metavar="NAME",
        help=f"train ours from each of these starts in turn ({', '.join(STARTS)}) and draw "
        "them side by side (default: the params file as it is)",
    )
    args = ap.parse_args()
    extra = [json.loads(Path(f).read_text()) for f in args.plot_with]
    if args.replot:
        report = json.loads(Path(args.replot).read_text())
        figures = report["figures"] | {"machine_cores": report["machine"]["cpu_count"]}
        plot(figures, Path(args.replot).with_suffix(".png"), extra)
        print(f"wrote {Path(args.replot).with_suffix('.png')}")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        sets = [
            *args.set,
            f"train.out_dir={tmp}",
            "train.eval_every=1",
            "tracking.enabled=false",
            "tracking.dvclive=false",
            *([f"train.num_threads={args.threads}"] if args.threads else []),
        ]
        starts = args.start or ["params"]
        unknown = [s for s in starts if s not in STARTS]
        if unknown:
            ap.error(f"unknown --start {unknown}; choose from {list(STARTS)}")
        cfg = load_config(args.params, sets + STARTS[starts[0]])
        if not (cfg.layout.prepared / "test.json").is_file():
            print(f"preparing '{cfg.data.name}' into {cfg.layout.prepared}", flush=True)
            prepare_dataset(cfg.data)
        test = PreparedSplit.load(cfg.layout.prepared, "test")
        t = cfg.train
        spans = [float(x) for x in args.ema_spans.split(",") if x]
        curves: dict[str, list[dict[str, float]]] = {}
        labels: dict[str, str] = {}
        emas: dict[str, list[dict[str, float]]] = {}
        for start in [] if args.only == "torchvision" else starts:
            cfg = load_config(args.params, sets + STARTS[start])
            print(
                f"'{cfg.data.name}', start {start}: {cfg.model.backbone} at "
                f"{cfg.model.resolved_input_size}, {t.epochs} epochs of batch {t.batch_size}, "
                f"{torch.get_num_threads()} threads, {t.num_workers} loader workers; test "
                f"split {len(test.images)} images",
                flush=True,
            )
            curves[start], side = train_ours(cfg, test, spans, args.score_every)
            labels[start] = f"ours from {start} ({cfg.model.backbone} SSD"
            labels[start] += f"{cfg.model.resolved_input_size})"
            emas |= {f"{start} {k}": v for k, v in side.items()}
        ours = curves[starts[0]] if curves else []
        tv = [] if args.only == "ours" else train_torchvision(cfg, test, args.tv_recipe)
    result: dict[str, Any] = {
        "dataset": cfg.data.name,
        "params": str(args.params),
        "overrides": args.set,
        "epochs": t.epochs,
        "batch_size": t.batch_size,
        "threads": torch.get_num_threads(),
        "ours_label": labels.get(starts[0], "ours"),
        "starts": {s: {"label": labels[s], "curve": c} for s, c in curves.items()},
        "tv_label": f"torchvision ssdlite320_mobilenet_v3_large ({args.tv_recipe} recipe)",
        "tv_recipe": args.tv_recipe,
        "ours": ours,
        "torchvision": tv,
        "ema": emas,
    }
    if ours and tv:
        reached = min(
            ours[-1]["map50"],
            tv[-1]["map50"],
            max(p["map50"] for p in ours),
            max(p["map50"] for p in tv),
        )
        a, b = time_to(ours, reached), time_to(tv, reached)
        result["common_map50"] = reached
        result["seconds_to_common"] = {"ours": a, "torchvision": b}
        if a and b:
            result["speedup_to_common"] = b / a
    ratio = {
        k: result[k]
        for k in ("common_map50", "seconds_to_common", "speedup_to_common")
        if k in result
    }
    name = f"time_to_accuracy-{cfg.data.name}" + ("" if args.only is None else f"-{args.only}")
    name += "".join(f"-{s}" for s in args.start)
    if args.only == "torchvision" and args.tv_recipe != "torchvision":
        name += f"-{args.tv_recipe}-recipe"
    out = write_report(name, result, ratio)
    result["machine_cores"] = machine()["cpu_count"]
    png = Path(out).with_suffix(".png")
    plot(result, png, extra)
    print("\nfinal test mAP@0.5 / COCO AP (VOC07 11-point mAP@0.5):")
    runs = [*((f"ours {s}", c) for s, c in curves.items()), ("torchvision", tv), *emas.items()]
    for name, pts in runs:
        if pts:
            last = pts[-1]
            print(
                f"  {name:12s} {last['map50']:.3f} / {last['map']:.3f} "
                f"(VOC07 {last.get('voc07_map50', float('nan')):.3f}) after "
                f"{last['seconds'] / 60:.1f} min"
            )
    if "speedup_to_common" in result:
        print(
            f"time to mAP@0.5 {result['common_map50']:.3f}: ours "
            f"{result['seconds_to_common']['ours'] / 60:.1f} min, torchvision "
            f"{result['seconds_to_common']['torchvision'] / 60:.1f} min "
            f"(ratio {result['speedup_to_common']:.2f}, > 1: ours faster)"
        )
    print(f"wrote {out} and {png}")


if __name__ == "__main__":
    main()
