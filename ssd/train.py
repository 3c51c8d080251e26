"""``ssd train``: the training loop (paper §3: SGD with momentum and weight decay, warm-up,
then step or cosine decay), for CPU, one GPU (AMP, channels_last) or several (DDP under
``torchrun``).

Determinism: the data order of epoch ``e`` is a permutation seeded by ``(seed, e)`` and
each sample's augmentation is seeded by ``(seed, e, index)``, independent of workers and
ranks. So a run resumed from a checkpoint taken anywhere (epoch end or every
``checkpoint_every_steps``) continues exactly as the uninterrupted run would have on CPU.

The library function :func:`train` takes a :class:`~ssd.tracking.Tracker`; MLflow is
plugged in by the CLI, never imported here.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from ssd.builder import build_loss, build_model
from ssd.checkpoint import latest_checkpoint, load_state, rng_state, save_checkpoint, set_rng_state
from ssd.config import Config, flatten
from ssd.data.prepared import PreparedSplit
from ssd.distributed import (
    DistEnv,
    average_buffers,
    barrier,
    init_distributed,
    reduce_mean,
    shutdown,
)
from ssd.inference import Detector, resolve_device
from ssd.model import SSD
from ssd.tracking import JsonlTracker, Tracker, fan_out
from ssd.weights import save_detector

log = logging.getLogger(__name__)

FINAL_DIR = "ssd"  # <out_dir>/ssd holds the final detector (model.safetensors + model.json)
BEST_DIR = "best"


class TrainingError(RuntimeError):
    """Training cannot go on; the message names the likely causes."""


@dataclass
class TrainResult:
    model: SSD
    model_dir: Path
    best_dir: Path | None
    epochs: int
    steps: int
    seconds: float
    final_metrics: dict[str, float] = field(default_factory=dict)
    nonfinite_steps: int = 0


# ----------------------------------------------------------------------------- data order


class EpochSampler(Sampler[tuple[int, int]]):
    """Seeded permutation of ``n`` samples for one epoch, sharded across ranks, from ``start``.

    Yields ``(epoch, index)`` so that :class:`SeededDataset` can seed each sample.
    """

    def __init__(
        self, n: int, seed: int, epoch: int, env: DistEnv, shuffle: bool = True, start: int = 0
    ) -> None:
        self.n, self.seed, self.epoch, self.env, self.shuffle, self.start = (
            n,
            seed,
            epoch,
            env,
            shuffle,
            start,
        )
        self.per_rank = math.ceil(n / env.world_size)

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.per_rank * self.env.world_size
        order += order[: total - len(order)]  # pad like DistributedSampler
        return order[self.env.rank :: self.env.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in self._order()[self.start :]:
            yield self.epoch, i

    def __len__(self) -> int:
        return self.per_rank - self.start


class SeededDataset(Dataset[Any]):
    """Seeds torch's RNG per ``(seed, epoch, index)`` before the wrapped sample's transforms."""

    def __init__(self, base: Dataset[Any], seed: int) -> None:
        self.base, self.seed = base, seed

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        torch.manual_seed((self.seed * 1_000_003 + epoch * 10_007 + index) % (2**63))
        return self.base[index]


# ----------------------------------------------------------------------------- optimisation


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    t = cfg.train
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        # No weight decay on norms' scales and biases (common practice; L2Norm's scale too).
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": t.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if t.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=t.lr)
    return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum)


def lr_lambda(cfg: Config, total_steps: int) -> Any:
    t = cfg.train
    milestones = [int(m * total_steps) for m in t.milestones]

    def factor(step: int) -> float:
        warm = 1.0
        if step < t.warmup_steps:
            alpha = step / max(1, t.warmup_steps)
            warm = t.warmup_factor * (1 - alpha) + alpha
        if t.schedule == "cosine":
            progress = min(1.0, step / max(1, total_steps))
            decay = 0.5 * (1 + math.cos(math.pi * progress))
        else:
            decay = t.gamma ** sum(step >= m for m in milestones)
        return warm * decay

    return factor


def _frozen_modules(model: SSD, cfg: Config) -> list[nn.Module]:
    """The lite0 stem and first ``train.freeze_stem_blocks`` blocks (nothing for vgg16)."""
    body = getattr(model.backbone, "body", None)
    n = cfg.train.freeze_stem_blocks
    if body is None or n == 0:
        return []
    return [body._conv_stem, body._bn0, *body._blocks[:n]]


def freeze_backbone_parts(model: SSD, cfg: Config) -> None:
    """Fix the ImageNet backbone's BatchNorm (statistics and affine) and optionally the stem
    and first blocks (weights and BatchNorm, as torchvision's ``trainable_layers`` and
    Detectron's ``FREEZE_AT`` do): generic low-level filters, and on a CPU the frozen
    high-resolution layers need no backward pass (about 1.7x faster steps at 5 blocks)."""
    body = getattr(model.backbone, "body", None)
    if body is None:
        if cfg.train.freeze_stem_blocks or cfg.train.freeze_bn:
            log.warning(
                "train.freeze_stem_blocks / train.freeze_bn apply to efficientnet_lite0's "
                "ImageNet body; ignored for %s (set them to 0 / false to silence this)",
                cfg.model.backbone,
            )
        return
    if cfg.train.freeze_bn:
        for m in body.modules():
            if isinstance(m, nn.BatchNorm2d):
                for p in m.parameters():
                    p.requires_grad_(False)
    for module in _frozen_modules(model, cfg):
        for p in module.parameters():
            p.requires_grad_(False)


def set_train_mode(model: SSD, cfg: Config) -> None:
    """``model.train()``, with frozen BatchNorm kept on its running statistics."""
    model.train()
    body = getattr(model.backbone, "body", None)
    if body is not None and cfg.train.freeze_bn:
        for m in body.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
    for module in _frozen_modules(model, cfg):
        module.eval()


def autocast_dtype(cfg: Config, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or cfg.train.amp == "off":
        return None
    if cfg.train.amp == "bf16" or (cfg.train.amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def _to_device(targets: list[dict[str, Any]], device: torch.device) -> list[dict[str, Any]]:
    return [
        {
            "boxes": t["boxes"].as_subclass(torch.Tensor).to(device, non_blocking=True),
            "labels": t["labels"].to(device, non_blocking=True),
            "image_id": t.get("image_id"),
        }
        for t in targets
    ]


def _params_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


# ----------------------------------------------------------------------------- validation


def validate(
    model: SSD, split: PreparedSplit, batch_size: int, progress: bool = False
) -> dict[str, float]:
    """COCO mAP and mAP@0.5 of the current weights on a loaded split (reuses evaluation).

    The post-processing is the paper's (:class:`~ssd.config.PostprocessConfig` defaults), so
    training never depends on the ``postprocess`` section.
    """
    from ssd.evaluation.coco import coco_evaluate
    from ssd.evaluation.predict import predict_split

    if not split.images:
        return {}
    was_training = model.training
    detector = Detector(model, split.class_names, None, str(next(model.parameters()).device))
    results, ips = predict_split(detector, split, batch_size, progress)
    coco = coco_evaluate(split.dataset, results)
    model.train(was_training)
    return {
        f"{split.name}_map": float(coco.stats.get("map") or 0.0),
        f"{split.name}_map50": float(coco.stats.get("map50") or 0.0),
        f"{split.name}_images_per_second": float(ips),
    }


# ----------------------------------------------------------------------------- the loop


def training_params(cfg: Config) -> dict[str, Any]:
    """What a training run depends on, as flat dotted keys (for the run's params)."""
    return {
        "data.name": cfg.data.name,
        **flatten(cfg.model, "model."),
        **flatten(cfg.train, "train."),
    }


def _make_loader(
    dataset: Dataset[Any], cfg: Config, epoch: int, env: DistEnv, start: int, pin: bool
) -> DataLoader[Any]:
    from ssd.data.dataset import collate_detections

    sampler = EpochSampler(len(dataset), cfg.train.seed, epoch, env, True, start)  # type: ignore[arg-type]
    return DataLoader(
        SeededDataset(dataset, cfg.train.seed),
        batch_size=cfg.train.batch_size,
        sampler=sampler,
        num_workers=cfg.train.num_workers,
        collate_fn=collate_detections,
        pin_memory=pin,
        drop_last=True,
        persistent_workers=False,
    )


def train(
    cfg: Config, tracker: Tracker | None = None, resume: bool = False, progress: bool = True
) -> TrainResult:
    """Train the configured SSD on the prepared dataset; returns where the detector is."""
    from ssd.data.dataset import DetectionDataset
    from ssd.data.transforms import build_train_transforms

    device = resolve_device(cfg.train.device)
    env = init_distributed(device)
    if device.type == "cuda" and env.enabled:
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    out_dir = cfg.layout.models
    prepared = cfg.layout.prepared
    if not (prepared / "train.json").is_file():
        raise TrainingError(
            f"no prepared dataset at '{prepared}' (train.json missing); run `ssd prepare` "
            f"with data.name={cfg.data.name} first"
        )
    size = cfg.model.resolved_input_size
    train_split = PreparedSplit.load(prepared, "train")
    val_split = PreparedSplit.load(prepared, "val", allow_empty=True)
    augment = build_train_transforms(size, cfg.train.augment)
    dataset = DetectionDataset(train_split, transforms=augment)
    class_names = dataset.class_names
    if cfg.model.num_classes is not None and cfg.model.num_classes != len(class_names):
        raise TrainingError(
            f"model.num_classes={cfg.model.num_classes} but dataset '{cfg.data.name}' has "
            f"{len(class_names)} classes {class_names}; set model.num_classes to null"
        )
    per_rank = math.ceil(len(dataset) / env.world_size)
    if per_rank < cfg.train.batch_size:
        raise TrainingError(
            f"the train split has {len(dataset)} images ({per_rank} per process) but "
            f"train.batch_size is {cfg.train.batch_size}; lower train.batch_size"
        )
    steps_per_epoch = per_rank // cfg.train.batch_size
    total_steps = steps_per_epoch * cfg.train.epochs
    if cfg.train.max_steps is not None:
        total_steps = min(total_steps, cfg.train.max_steps)

    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, len(class_names)).to(device)
    freeze_backbone_parts(model, cfg)
    # channels_last only on CUDA: on CPU, BatchNorm's backward in NHWC was measured ~10x
    # less accurate than NCHW (relative L2 gradient error ~0.1 vs ~0.01 against float64).
    channels_last = cfg.train.channels_last and device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion = build_loss(model, cfg.train).to(device)
    optimizer = build_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total_steps))
    amp_dtype = autocast_dtype(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    epoch, step, start_in_epoch, best = 0, 0, 0, -1.0
    nonfinite_total = 0
    if resume:
        ckpt = latest_checkpoint(out_dir)
        if ckpt is None:
            log.warning("--resume: no checkpoint in %s/checkpoints, starting from scratch", out_dir)
        else:
            from safetensors.torch import load_file

            model.load_state_dict(load_file(str(ckpt / "model.safetensors")), strict=True)
            state = load_state(ckpt)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"])
            epoch, step = int(state["epoch"]), int(state["step"])
            start_in_epoch = int(state["batches_done_in_epoch"]) * cfg.train.batch_size
            best, nonfinite_total = float(state["best"]), int(state["nonfinite_total"])
            if env.is_main:
                log.info("resumed from %s (epoch %d, step %d)", ckpt, epoch, step)

    ddp: nn.Module = model
    if env.enabled:
        if device.type == "cuda":  # SyncBatchNorm needs CUDA; on CPU buffers are averaged
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # type: ignore[assignment]
        ddp = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    trackers = (
        fan_out([JsonlTracker(out_dir / "metrics.jsonl")] + ([tracker] if tracker else []))
        if env.is_main
        else fan_out([])
    )
    if env.is_main and step == 0:
        trackers.log_params(training_params(cfg))

    def checkpoint(batches_done: int) -> None:
        average_buffers(model, env)
        if not env.is_main:
            return
        if not _params_finite(model):
            raise TrainingError(
                "weights became non-finite; not overwriting the last good checkpoint"
            )
        state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rng_state(),
            "epoch": epoch,
            "step": step,
            "batches_done_in_epoch": batches_done,
            "best": best,
            "nonfinite_total": nonfinite_total,
        }
        save_checkpoint(out_dir, model, cfg.model, class_names, state)

    t_start = time.perf_counter()
    consecutive_bad = 0
    final_metrics: dict[str, float] = {}
    pin = device.type == "cuda"
    while epoch < cfg.train.epochs and step < total_steps:
        loader = _make_loader(dataset, cfg, epoch, env, start_in_epoch, pin)
        batches_done = start_in_epoch // cfg.train.batch_size
        start_in_epoch = 0
        set_train_mode(model, cfg)
        bar = tqdm(
            total=steps_per_epoch,
            initial=batches_done,
            desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
            unit="step",
            disable=not (progress and env.is_main),
            dynamic_ncols=True,
        )
        t_epoch, seen, sums = time.perf_counter(), 0, {"loss": 0.0, "loc": 0.0, "conf": 0.0}
        for images, targets in loader:
            if step >= total_steps:
                break
            images = images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            tg = _to_device(targets, device)
            with torch.autocast(
                device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
            ):
                logits, offsets = ddp(images)
            out = criterion(logits, offsets, tg)
            loss = out["loss"]
            finite = reduce_mean(torch.isfinite(loss).float(), env).item() == 1.0
            optimizer.zero_grad(set_to_none=True)
            if not finite:
                nonfinite_total += 1
                consecutive_bad += 1
                trackers.log_metrics({"nonfinite_steps": nonfinite_total}, step)
                log.warning(
                    "non-finite loss at step %d (%d in a row), step skipped", step, consecutive_bad
                )
                if consecutive_bad >= cfg.train.max_nonfinite:
                    raise TrainingError(
                        f"{consecutive_bad} non-finite losses in a row (step {step}); stopping. "
                        f"Likely causes: learning rate too high (train.lr={cfg.train.lr}; "
                        "try 10x lower or a longer warm-up), degenerate or wrongly scaled boxes "
                        "in the data (check data/prepared/<name>/report.json), or fp16 overflow "
                        "(train.amp=bf16). The last good checkpoint was kept."
                    )
                step += 1
                batches_done += 1
                scheduler.step()
                bar.update(1)
                continue
            consecutive_bad = 0
            scaler.scale(loss).backward()
            if cfg.train.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            batches_done += 1
            seen += images.shape[0] * env.world_size
            parts = {k: reduce_mean(out[k].detach(), env).item() for k in sums}
            for k in sums:
                sums[k] += parts[k]
            lr = optimizer.param_groups[0]["lr"]
            ips = seen / max(1e-9, time.perf_counter() - t_epoch)
            bar.set_postfix(
                loss=f"{parts['loss']:.3f}",
                loc=f"{parts['loc']:.3f}",
                conf=f"{parts['conf']:.3f}",
                lr=f"{lr:.2e}",
                img_s=f"{ips:.1f}",
            )
            bar.update(1)
            if step % cfg.train.log_every == 0:
                trackers.log_metrics(
                    {
                        **{f"train_{k}": v for k, v in parts.items()},
                        "lr": lr,
                        "images_per_second": ips,
                    },
                    step,
                )
            if cfg.train.checkpoint_every_steps and step % cfg.train.checkpoint_every_steps == 0:
                checkpoint(batches_done)
        bar.close()
        average_buffers(model, env)
        epoch += 1
        n_steps = max(1, batches_done)
        epoch_metrics = {f"epoch_{k}": v / n_steps for k, v in sums.items()}
        epoch_metrics["epoch"] = epoch
        is_last = epoch >= cfg.train.epochs or step >= total_steps
        if env.is_main and (
            (cfg.train.eval_every and epoch % cfg.train.eval_every == 0) or is_last
        ):
            val = validate(model, val_split, cfg.train.batch_size)
            set_train_mode(model, cfg)
            epoch_metrics.update(val)
            if val and val["val_map"] > best:
                best = val["val_map"]
                save_detector(
                    out_dir / BEST_DIR,
                    model,
                    cfg.model,
                    class_names,
                    {"val_map": best, "epoch": epoch},
                )
            final_metrics = val
        if env.is_main:
            trackers.log_metrics(epoch_metrics, step)
            log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in epoch_metrics.items()})
        checkpoint(0)
        barrier(env)

    seconds = time.perf_counter() - t_start
    final_dir = out_dir / FINAL_DIR
    if env.is_main:
        if not _params_finite(model):
            raise TrainingError("final weights are non-finite; not saving them")
        save_detector(
            final_dir,
            model,
            cfg.model,
            class_names,
            {
                "steps": step,
                "epochs": epoch,
                "train_seconds": round(seconds, 1),
                "dataset": cfg.data.name,
                "train": cfg.train.model_dump(mode="json"),
            },
        )
        if not (out_dir / BEST_DIR / "model.safetensors").is_file():  # no validation ran
            save_detector(out_dir / BEST_DIR, model, cfg.model, class_names, {"epoch": epoch})
        trackers.log_metrics({"train_seconds": seconds, "nonfinite_steps": nonfinite_total}, step)
        trackers.log_artifacts(final_dir, "model")
    barrier(env)
    shutdown(env)
    best_dir = out_dir / BEST_DIR
    return TrainResult(
        model,
        final_dir,
        best_dir if best_dir.exists() else None,
        epoch,
        step,
        seconds,
        final_metrics,
        nonfinite_total,
    )
