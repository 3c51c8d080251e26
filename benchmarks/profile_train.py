"""Where a light-model train step spends its time, per part, forward and backward.

Builds the ``params.yaml`` light model (EfficientNet-Lite0 SSDLite at 320 with the stride-8
map, random weights: speed does not depend on them), takes one batch of random images with
a few boxes each, and profiles full train steps (forward, MultiBox loss, backward, SGD
step) with ``torch.profiler``. Every operator is charged to the part of the model it
belongs to: forward operators by the part whose ``forward`` ran them, backward operators
through their autograd sequence number to the forward operator that created them. Parts:

- ``stem+blocks0-4`` / ``blocks5-15``: the backbone body (``frozen`` when frozen),
  split where ``train.freeze_stem_blocks: 5`` splits it; ``conv_head``; ``extras``;
- ``fine_map``: the expansion layer of block 5 (the stride-8 map; tapped, so it is
  listed on its own);
- ``head.cls`` / ``head.box``: the depthwise-separable predictors, and ``head.flatten``
  (permute, reshape, concatenation);
- ``loss.targets`` (padding, matching, encoding) and ``loss`` (cross-entropy, hard
  negative mining, smooth L1); ``optimizer`` (zero_grad + SGD step);
- ``grad_accumulate``: autograd writing parameter gradients (AccumulateGrad).

Times are the median over the profiled steps; the profiler adds its own overhead, so the
plain wall time of the same step (no profiler) is printed too.

    python benchmarks/profile_train.py [--freeze 5] [--steps 5] [--ops 25]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from bench_core import NUM_CLASSES, make_batch
from torch import nn
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

from ssd.config import load_config
from ssd.model.builder import build_loss, build_model
from ssd.model.network import SSD
from ssd.train.optim import freeze_backbone_parts, set_train_mode

PREFIX = "part:"


def _scoped(module: nn.Module, name: str) -> None:
    """Run ``module.forward`` inside ``record_function(PREFIX + name)``."""
    scopes: list[record_function] = []

    def pre(_m: nn.Module, _a: object) -> None:
        scopes.append(record_function(PREFIX + name))
        scopes[-1].__enter__()

    def post(_m: nn.Module, _a: object, _o: object) -> None:
        scopes.pop().__exit__(None, None, None)

    module.register_forward_pre_hook(pre)
    module.register_forward_hook(post)


def _scoped_method(owner: nn.Module, method: str, name: str) -> None:
    """Run ``owner.<method>`` inside ``record_function(PREFIX + name)``."""
    original = getattr(owner, method)

    def scoped(*args: object) -> object:
        with record_function(PREFIX + name):
            return original(*args)

    setattr(owner, method, scoped)


def label_parts(model: SSD, frozen_blocks: int) -> None:
    body = model.backbone.body
    split = frozen_blocks or 5
    stem = "frozen:" if frozen_blocks else ""
    _scoped(model, "other (normalise, layout)")
    _scoped_method(body, "stem", f"{stem}stem+blocks0-{split - 1}")
    for i, block in enumerate(body._blocks):
        if i < split:
            _scoped(block, f"{stem}stem+blocks0-{split - 1}")
        else:
            _scoped(block, f"blocks{split}-{len(body._blocks) - 1}")
    for index in (model.backbone.FINE_TAP_BLOCK, model.backbone.TAP_BLOCK):
        tap = body._blocks[index]  # taps run expand() and finish(), not forward()
        part = f"{stem}stem+blocks0-{split - 1}" if index < split else f"blocks{split}-15"
        fine = index == model.backbone.FINE_TAP_BLOCK and model.backbone.fine_map
        _scoped_method(tap, "expand", "fine_map" if fine else part)
        _scoped_method(tap, "finish", part)
    _scoped_method(body, "head", "conv_head")
    for block in model.backbone.extras:
        _scoped(block, "extras")
    for m in model.head.cls:
        _scoped(m, "head.cls")
    for m in model.head.box:
        _scoped(m, "head.box")
    _scoped(model.head, "head.flatten")


@contextmanager
def scope(name: str) -> Iterator[None]:
    with record_function(PREFIX + name):
        yield


def _innermost_part(event: object) -> str | None:
    e = event
    while e is not None:
        name = e.name  # type: ignore[attr-defined]
        if name.startswith(PREFIX):
            return name[len(PREFIX) :]
        e = e.cpu_parent  # type: ignore[attr-defined]
    return None


def attribute(events: list[object]) -> dict[str, dict[str, float]]:
    """Milliseconds per part: ``{"forward": {...}, "backward": {...}}``.

    Forward: the self time of every event inside a part's scope (innermost scope wins).
    Backward: each autograd node's time, charged to the part whose forward op has the
    node's sequence number."""
    seq_part: dict[int, str] = {}
    fwd: dict[str, float] = defaultdict(float)
    bwd: dict[str, float] = defaultdict(float)
    for e in events:
        name = e.name  # type: ignore[attr-defined]
        part = _innermost_part(e)
        if part is not None:
            fwd[part] += e.self_cpu_time_total / 1000  # type: ignore[attr-defined]
            seq = e.sequence_nr  # type: ignore[attr-defined]
            if seq >= 0 and seq not in seq_part:
                seq_part[seq] = part
    for e in events:
        name = e.name  # type: ignore[attr-defined]
        if not name.startswith("autograd::engine::evaluate_function"):
            continue
        ms = e.cpu_time_total / 1000  # type: ignore[attr-defined]
        if "AccumulateGrad" in name:
            bwd["grad_accumulate"] += ms
        else:
            bwd[seq_part.get(e.sequence_nr, "(other)")] += ms  # type: ignore[attr-defined]
    return {"forward": dict(fwd), "backward": dict(bwd)}


def make_step(frozen: int) -> tuple[Callable[[], None], SSD]:
    overrides = ["model.backbone_weights=null", f"train.freeze_stem_blocks={frozen}"]
    cfg = load_config("params.yaml", overrides)
    torch.manual_seed(0)
    model = build_model(cfg.model, NUM_CLASSES, pretrained=False)
    freeze_backbone_parts(model, cfg.train)
    set_train_mode(model, cfg.train)
    size = cfg.model.resolved_input_size
    images, targets = make_batch(8, torch.device("cpu"), size)
    criterion = build_loss(model, cfg.train)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9, weight_decay=5e-4)
    original_targets = criterion.targets

    def targets_scoped(t: object) -> object:
        with scope("loss.targets"):
            return original_targets(t)  # type: ignore[arg-type]

    criterion.targets = targets_scoped  # type: ignore[method-assign]

    def step() -> None:
        cls_logits, offsets = model(images)
        with scope("loss"):
            out = criterion(cls_logits, offsets, targets)
        out["loss"].backward()
        with scope("optimizer"):
            opt.step()
            opt.zero_grad(set_to_none=True)

    return step, model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--freeze", type=int, default=0, help="train.freeze_stem_blocks")
    ap.add_argument("--steps", type=int, default=5, help="profiled steps (median)")
    ap.add_argument("--ops", type=int, default=25, help="rows of the operator table")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    step, model = make_step(args.freeze)
    for _ in range(2):
        step()
    walls = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        walls.append(time.perf_counter() - t0)
    print(
        f"plain step (no profiler): median {1000 * statistics.median(walls):.0f} ms, "
        f"{8 / statistics.median(walls):.2f} img/s  threads={torch.get_num_threads()}"
    )

    label_parts(model, args.freeze)
    per_step: list[dict[str, dict[str, float]]] = []
    last = None
    for _ in range(args.steps):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        events = list(prof.events())
        per_step.append(attribute(events))
        last = prof
    parts = sorted({p for r in per_step for d in r.values() for p in d})
    rows = []
    for p in parts:
        f = statistics.median(r["forward"].get(p, 0.0) for r in per_step)
        b = statistics.median(r["backward"].get(p, 0.0) for r in per_step)
        rows.append((p, f, b))
    total = sum(f + b for _, f, b in rows)
    print(f"\n{'part':<26}{'forward ms':>11}{'backward ms':>12}{'total ms':>10}{'share':>7}")
    for p, f, b in sorted(rows, key=lambda r: -(r[1] + r[2])):
        print(f"{p:<26}{f:11.1f}{b:12.1f}{f + b:10.1f}{100 * (f + b) / total:6.1f}%")
    print(f"{'sum':<26}{sum(r[1] for r in rows):11.1f}{sum(r[2] for r in rows):12.1f}{total:10.1f}")
    assert last is not None
    if args.ops:
        print()
        print(last.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.ops))


if __name__ == "__main__":
    main()
