"""``ssd train``: the training loop (paper §3: SGD with momentum and weight decay, warm-up,
then step or cosine decay), for CPU, one GPU (AMP, channels_last) or several (DDP under
``torchrun``).

:func:`train` reads as the loop it runs: :func:`load_data`, :func:`build_state` (a
:class:`~ssd.train.state.TrainState`), :func:`resume_from` on ``--resume``, then per epoch
:func:`train_one_epoch` (steps, the non-finite policy, periodic checkpoints, the stop
signal) and :func:`finish_epoch` (averages, validation, best/, a checkpoint), then the
final detector. What a checkpoint holds is :mod:`ssd.train.state`'s business.

Never lose work:

- **Determinism**: the data order of epoch ``e`` is a permutation seeded by ``(seed, e)``
  and each sample's augmentation is seeded by ``(seed, e, index)``, independent of workers
  and ranks, so a run resumed from any checkpoint continues exactly (on CPU).
- **Finite or nothing**: a checkpoint, ``best/`` or the final detector is written only when
  every parameter and buffer is finite; otherwise training stops with the likely causes and
  the last finite checkpoint stays.
- **Signals**: SIGTERM and SIGINT stop training at the next step boundary with a
  checkpoint (:class:`TrainingStopped`); a second signal stops at once.
- **Resume** takes the newest checkpoint that verifies and applies or refuses (naming the
  key) every setting that differs from the checkpoint's: :data:`RESUME_APPLIES`.

MLflow is plugged in by :mod:`ssd.stages` through a :class:`~ssd.train.tracking.Tracker`,
never imported here.
"""

from __future__ import annotations

import logging
import math
import signal
import socket
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from ssd.config import Config, ModelConfig, TrainConfig
from ssd.data.dataset import DetectionDataset
from ssd.data.prepared import PreparedSplit
from ssd.data.transforms import build_train_transforms
from ssd.errors import TrainingError, TrainingStopped
from ssd.evaluation.coco import coco_evaluate
from ssd.infer.detector import Detector
from ssd.infer.predict import predict_split
from ssd.model.builder import build_loss, build_model
from ssd.model.loss import MultiBoxLoss
from ssd.model.network import SSD
from ssd.model.weights import save_detector
from ssd.train.distributed import (
    DistEnv,
    any_rank,
    barrier,
    elastic_restarts,
    reduce_mean,
)
from ssd.train.ema import ema_decay, weight_ema
from ssd.train.optim import (
    build_optimizer,
    freeze_backbone_parts,
    lr_lambda,
    set_train_mode,
    warmup_steps,
)
from ssd.train.resume import resume_from, run_settings, training_params
from ssd.train.runtime import Runtime, StopSignals, setup_runtime
from ssd.train.sampling import make_loader
from ssd.train.state import (
    Checkpointer,
    TrainState,
    average_all_buffers,
    nonfinite_error,
    write_error,
)
from ssd.train.tracking import JsonlTracker, Tracker, fan_out

log = logging.getLogger(__name__)

FINAL_DIR = "ssd"  # <out_dir>/ssd holds the final detector (model.safetensors + model.json)
BEST_DIR = "best"
CHECKPOINT_DIR = "checkpoints"
LOSS_PARTS = ("loss", "loc", "conf")


@dataclass
class TrainResult:
    model: SSD
    model_dir: Path
    best_dir: Path | None
    epochs: int
    steps: int
    seconds: float  # the whole run's training time, earlier (resumed) parts included
    final_metrics: dict[str, float] = field(default_factory=dict)
    nonfinite_steps: int = 0
    resumed_at: int | None = None  # the step this process resumed from
    seconds_here: float | None = None  # this process's part of ``seconds`` when resumed

    def lines(self) -> list[str]:
        """What ``ssd train`` prints at the end."""
        best = f" (best val mAP in {self.best_dir})" if self.best_dir else ""
        part = ""
        if self.resumed_at is not None and self.seconds_here is not None:
            part = (
                f" ({self.seconds_here:.0f} s of them in this part, resumed at step "
                f"{self.resumed_at})"
            )
        lines = [
            f"trained {self.steps} steps in {self.seconds:.0f} s{part}; "
            f"detector in {self.model_dir}{best}"
        ]
        if self.final_metrics:
            values = ", ".join(f"{k}={v:.4f}" for k, v in self.final_metrics.items())
            lines.append(f"validation: {values}")
        return lines


# ----------------------------------------------------------------------------- data order


# ----------------------------------------------------------------------------- optimisation


# ----------------------------------------------------------------------------- set-up


@dataclass
class TrainData:
    """The loaded splits training reads."""

    train: DetectionDataset
    val: PreparedSplit
    class_names: list[str]
    steps_per_epoch: int  # per process


def load_data(
    prepared: Path, data_name: str, t: TrainConfig, model_cfg: ModelConfig, env: DistEnv
) -> TrainData:
    """The train split with ``train.augment`` and the val split, checked against the config."""

    if not (prepared / "train.json").is_file():
        raise TrainingError(
            f"no prepared dataset at '{prepared}' (train.json missing); run `ssd prepare` "
            f"with data.name={data_name} first"
        )
    augment = build_train_transforms(model_cfg.resolved_input_size, t.augment)
    dataset = DetectionDataset(PreparedSplit.load(prepared, "train"), transforms=augment)
    names = dataset.class_names
    if model_cfg.num_classes is not None and model_cfg.num_classes != len(names):
        raise TrainingError(
            f"model.num_classes={model_cfg.num_classes} but dataset '{data_name}' has "
            f"{len(names)} classes {names}; set model.num_classes to null"
        )
    per_rank = math.ceil(len(dataset) / env.world_size)
    if per_rank < t.batch_size:
        raise TrainingError(
            f"the train split has {len(dataset)} images ({per_rank} per process) but "
            f"train.batch_size is {t.batch_size}; lower train.batch_size"
        )
    val = PreparedSplit.load(prepared, "val", allow_empty=True)
    return TrainData(dataset, val, names, per_rank // t.batch_size)


def total_steps(t: TrainConfig, steps_per_epoch: int) -> int:
    steps = steps_per_epoch * t.epochs
    return steps if t.max_steps is None else min(steps, t.max_steps)


def build_state(
    model_cfg: ModelConfig, t: TrainConfig, class_names: list[str], steps: int, rt: Runtime
) -> TrainState:
    """A fresh :class:`TrainState`: the seeded model (its pretrained start matched to
    ``class_names``) with its frozen parts, the optimizer, the schedule over ``steps`` steps
    and the grad scaler."""
    torch.manual_seed(t.seed)
    model = build_model(model_cfg, len(class_names), class_names=class_names).to(rt.device)
    freeze_backbone_parts(model, t)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, t)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(t, steps))
    log.info("learning rate: warm-up over %d of the %d steps", warmup_steps(t, steps), steps)
    scaler = torch.amp.GradScaler("cuda", enabled=rt.amp_dtype == torch.float16)
    ema = weight_ema(model, t.ema_span, steps) if t.ema else None
    if ema is not None:
        decay = ema_decay(t.ema_span, steps)
        log.info(
            "weight EMA: decay %.4f, a time constant of %.0f of the %d steps (train.ema_span; "
            "validation, best/ and the final detector use it)",
            decay,
            1 / (1 - decay),
            steps,
        )
    return TrainState(model, optimizer, scheduler, scaler, ema)


# ----------------------------------------------------------------------------- resume


# ----------------------------------------------------------------------------- stopping


# ----------------------------------------------------------------------------- saving


# ----------------------------------------------------------------------------- one epoch


@dataclass
class Run:
    """What the loop reports to and is steered by, besides the state."""

    rt: Runtime
    trackers: Tracker
    checkpoints: Checkpointer
    stop: StopSignals
    progress: bool


def _to_device(targets: list[dict[str, Any]], device: torch.device) -> list[dict[str, Any]]:
    return [
        {
            "boxes": t["boxes"].as_subclass(torch.Tensor).to(device, non_blocking=True),
            "labels": t["labels"].to(device, non_blocking=True),
            "image_id": t.get("image_id"),
        }
        for t in targets
    ]


def train_step(
    state: TrainState,
    net: nn.Module,
    criterion: MultiBoxLoss,
    images: torch.Tensor,
    targets: list[dict[str, Any]],
    t: TrainConfig,
    rt: Runtime,
) -> dict[str, float] | None:
    """One step; the loss parts (mean over processes), or None when the loss was not
    finite on some process and the update was skipped (the schedule still advances)."""
    images = images.to(rt.device, non_blocking=True)
    if rt.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast(
        rt.device.type, dtype=rt.amp_dtype or torch.float32, enabled=rt.amp_dtype is not None
    ):
        logits, offsets = net(images)
    out = criterion(logits, offsets, _to_device(targets, rt.device))
    finite = reduce_mean(torch.isfinite(out["loss"]).float(), rt.env).item() == 1.0
    state.optimizer.zero_grad(set_to_none=True)
    if finite:
        state.scaler.scale(out["loss"]).backward()
        if t.grad_clip:
            state.scaler.unscale_(state.optimizer)
            torch.nn.utils.clip_grad_norm_(state.model.parameters(), t.grad_clip)
        state.scaler.step(state.optimizer)
        state.scaler.update()
        if state.ema is not None:
            state.ema.update_parameters(state.model)
    state.scheduler.step()
    state.step += 1
    state.batches_done += 1
    if not finite:
        return None
    return {k: reduce_mean(out[k].detach(), rt.env).item() for k in LOSS_PARTS}


def skip_nonfinite(state: TrainState, t: TrainConfig, run: Run) -> None:
    """The non-finite policy: a skipped step is counted; ``train.max_nonfinite`` in a row stop."""
    state.nonfinite_total += 1
    state.nonfinite_in_a_row += 1
    run.trackers.log_metrics({"nonfinite_steps": state.nonfinite_total}, state.step)
    log.warning(
        "non-finite loss at step %d (%d in a row), step skipped",
        state.step - 1,
        state.nonfinite_in_a_row,
    )
    if state.nonfinite_in_a_row >= t.max_nonfinite:
        raise nonfinite_error(
            f"{state.nonfinite_in_a_row} non-finite losses in a row (step {state.step - 1}); "
            "stopping",
            t,
            run.checkpoints.last,
        )


def train_one_epoch(
    state: TrainState,
    net: nn.Module,
    criterion: MultiBoxLoss,
    loader: DataLoader[Any],
    t: TrainConfig,
    run: Run,
    until_step: int,
) -> bool:
    """Train the rest of epoch ``state.epoch`` (or up to step ``until_step``); False when a
    stop signal ended it early, at a step boundary."""
    set_train_mode(state.model, t)
    bar = tqdm(
        total=len(loader) + state.batches_done,
        initial=state.batches_done,
        desc=f"epoch {state.epoch + 1}/{t.epochs}",
        unit="step",
        disable=not (run.progress and run.rt.env.is_main),
        dynamic_ncols=True,
    )
    started, seen = time.perf_counter(), 0
    epoch_end = len(loader) + state.batches_done  # the epoch's last step is always logged
    with bar:
        for images, targets in loader:
            if state.step >= until_step:
                break
            parts = train_step(state, net, criterion, images, targets, t, run.rt)
            bar.update(1)
            if parts is None:
                skip_nonfinite(state, t, run)
            else:
                state.nonfinite_in_a_row = 0
                state.epoch_finite_steps += 1
                for k, v in parts.items():
                    state.epoch_sums[k] = state.epoch_sums.get(k, 0.0) + v
                seen += images.shape[0] * run.rt.env.world_size
                lr = state.optimizer.param_groups[0]["lr"]
                ips = seen / max(1e-9, time.perf_counter() - started)
                postfix = {k: f"{v:.3f}" for k, v in parts.items()}
                bar.set_postfix(postfix, lr=f"{lr:.2e}", img_s=f"{ips:.1f}")
                last = state.batches_done == epoch_end or state.step >= until_step
                if state.step % t.log_every == 0 or last:
                    step_metrics = {f"train_{k}": v for k, v in parts.items()}
                    step_metrics |= {"lr": lr, "images_per_second": ips}
                    run.trackers.log_metrics(step_metrics, state.step)
            if t.checkpoint_every_steps and state.step % t.checkpoint_every_steps == 0:
                run.checkpoints.save(state)
            if run.stop.agreed(run.rt):
                return False
    return True


# ----------------------------------------------------------------------------- validation


def validate(
    model: SSD, split: PreparedSplit, batch_size: int, progress: bool = False
) -> dict[str, float]:
    """COCO mAP and mAP@0.5 of the current weights on a loaded split (reuses evaluation).

    The post-processing is the paper's (:class:`~ssd.config.PostprocessConfig` defaults), so
    training never depends on the ``postprocess`` section.
    """

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


def finish_epoch(
    state: TrainState, data: TrainData, t: TrainConfig, run: Run, best_dir: Path, last: bool
) -> dict[str, float]:
    """The end of an epoch: the averages of its finite steps, validation when due (and
    ``best/`` when it improved), a checkpoint. Returns the validation metrics."""
    average_all_buffers(state, run.rt.env)
    run.checkpoints.require_finite(state)  # before validating or saving anything
    state.epoch += 1
    metrics: dict[str, float] = {"epoch": state.epoch}
    if state.epoch_finite_steps:
        metrics |= {f"epoch_{k}": v / state.epoch_finite_steps for k, v in state.epoch_sums.items()}
    state.batches_done, state.epoch_sums, state.epoch_finite_steps = 0, {}, 0
    val: dict[str, float] = {}
    if run.rt.env.is_main and ((t.eval_every and state.epoch % t.eval_every == 0) or last):
        val = validate(state.eval_model, data.val, t.batch_size)
        set_train_mode(state.model, t)
        metrics |= val
        if val and val["val_map"] > state.best_map:
            state.best_map = val["val_map"]
            extra = {"val_map": state.best_map, "epoch": state.epoch}
            model_cfg = run.checkpoints.model_cfg
            save_detector(best_dir, state.eval_model, model_cfg, data.class_names, extra)
    if run.rt.env.is_main:
        run.trackers.log_metrics(metrics, state.step)
        log.info("epoch %d: %s", state.epoch, {k: round(v, 4) for k, v in metrics.items()})
    run.checkpoints.save(state)
    barrier(run.rt.env)
    return val


# ----------------------------------------------------------------------------- the loop


def _distributed(state: TrainState, rt: Runtime) -> nn.Module:
    """The module to call: ``state.model``, or DDP around it under torchrun."""
    if not rt.env.enabled:
        return state.model
    if rt.device.type == "cuda":  # SyncBatchNorm needs CUDA; on CPU buffers are averaged
        state.model = cast(SSD, nn.SyncBatchNorm.convert_sync_batchnorm(state.model))
    ids = [rt.device.index] if rt.device.type == "cuda" else None
    return DistributedDataParallel(state.model, device_ids=ids)


def train(
    cfg: Config, tracker: Tracker | None = None, resume: bool = False, progress: bool = True
) -> TrainResult:
    """Train the configured SSD on the prepared dataset; returns where the detector is.

    Raises:
        TrainingError: the data or a checkpoint does not fit the config, or the weights
            became non-finite (the last finite checkpoint is kept).
        TrainingStopped: SIGTERM / SIGINT stopped it; a checkpoint was written.
    """
    t, out_dir = cfg.train, cfg.layout.models
    rt = setup_runtime(t)
    # torchrun restarted the group (on any node: the others see only a new rendezvous round,
    # TORCHELASTIC_RESTART_COUNT stays 0 there): every rank continues from the checkpoint
    if any_rank(elastic_restarts() > 0, rt.env, rt.device) and not resume:
        log.warning("torchrun restarted the group: resuming from the last checkpoint")
        resume = True
    data = load_data(cfg.layout.prepared, cfg.data.name, t, cfg.model, rt.env)
    if rt.env.enabled:  # one line per process: who joined the group
        log.info(
            "distributed: rank %d of world size %d (local rank %d on %s, %s); global batch %d",
            rt.env.rank,
            rt.env.world_size,
            rt.env.local_rank,
            socket.gethostname(),
            torch.distributed.get_backend(),
            t.batch_size * rt.env.world_size,
        )
    steps = total_steps(t, data.steps_per_epoch)
    state = build_state(cfg.model, t, data.class_names, steps, rt)
    settings = run_settings(cfg) | {"world_size": rt.env.world_size}  # shards the data
    checkpoints = Checkpointer(
        out_dir / CHECKPOINT_DIR, cfg.model, data.class_names, settings, t, rt.env
    )
    if resume:
        found = resume_from(state, checkpoints.root, settings, data.class_names, t, steps)
        if found is not None:
            checkpoints.resumed(found, state)
    criterion = build_loss(state.model, t).to(rt.device)
    if rt.env.enabled:
        criterion.mean_positives = partial(reduce_mean, env=rt.env)
    net = _distributed(state, rt)
    try:  # a read-only or full out_dir: one message before the first step
        jsonl = [JsonlTracker(out_dir / "metrics.jsonl")] if rt.env.is_main else []
    except OSError as err:
        raise write_error(err, out_dir / "metrics.jsonl", None, started=False) from None
    trackers = fan_out(jsonl + ([tracker] if tracker and rt.env.is_main else []))
    resumed = {"resumed_from": str(checkpoints.last)} if checkpoints.last else {}
    derived = {  # the values the run used where the config says null (derived)
        "model.input_size": cfg.model.resolved_input_size,
        "model.head": cfg.model.resolved_head,
        "model.num_classes": len(data.class_names),
        "train.warmup_steps": warmup_steps(t, steps),
        # the threads used change float reductions, so the result
        "train.num_threads_used": rt.threads,
    }
    trackers.log_params(training_params(cfg) | derived | resumed)

    resumed_at = state.step if checkpoints.last else None
    stopped = False
    state.start_clock()
    val: dict[str, float] = {}
    with StopSignals() as stop:
        run = Run(rt, trackers, checkpoints, stop, progress)
        while state.epoch < t.epochs and state.step < steps:
            start = state.batches_done * t.batch_size
            loader = make_loader(
                data.train, t, state.epoch, rt.env, start, rt.device.type == "cuda"
            )
            if stop.agreed(rt) or not train_one_epoch(state, net, criterion, loader, t, run, steps):
                stopped = True
                break
            last = state.epoch + 1 >= t.epochs or state.step >= steps
            val = finish_epoch(state, data, t, run, out_dir / BEST_DIR, last) or val
        if stopped:
            raise stop_with_checkpoint(state, run)
    seconds = state.train_seconds()
    seconds_here = seconds - state.seconds_before  # this process's part
    info = {
        "steps": state.step,
        "epochs": state.epoch,
        "train_seconds": round(seconds, 1),
        "dataset": cfg.data.name,
        "train": cfg.train.model_dump(mode="json"),
    }
    try:
        final_dir = save_final(state, out_dir, cfg.model, data.class_names, run, info)
    except OSError as err:  # a full disk, a file size limit: the checkpoints are kept
        raise write_error(err, out_dir / FINAL_DIR, checkpoints.last) from None
    barrier(rt.env)  # the process group stays: the caller ends it (distributed.end_group)
    best_dir = out_dir / BEST_DIR
    return TrainResult(
        state.eval_model,
        final_dir,
        best_dir if best_dir.exists() else None,
        state.epoch,
        state.step,
        seconds,
        val,
        state.nonfinite_total,
        resumed_at,
        seconds_here if resumed_at is not None else None,
    )


def stop_with_checkpoint(state: TrainState, run: Run) -> TrainingStopped:
    """Checkpoint the state a stop signal left (if finite) and say how to continue."""
    run.checkpoints.save(state)
    barrier(run.rt.env)
    signum = run.stop.received or signal.SIGTERM  # another rank received it
    return TrainingStopped(
        signum,
        f"stopped by {signal.Signals(signum).name} at step {state.step}; checkpoint "
        f"{run.checkpoints.last} written; continue with `ssd train --resume`",
    )


def save_final(
    state: TrainState,
    out_dir: Path,
    model_cfg: ModelConfig,
    class_names: list[str],
    run: Run,
    info: dict[str, Any],
) -> Path:
    """The final detector, with ``info`` in its model.json (and ``best/`` when no
    validation wrote it in this run), if every weight is finite."""
    final_dir = out_dir / FINAL_DIR
    run.checkpoints.require_finite(state)
    if run.rt.env.is_main:
        save_detector(final_dir, state.eval_model, model_cfg, class_names, info)
        if state.best_map < 0:  # no validation ran
            save_detector(
                out_dir / BEST_DIR, state.eval_model, model_cfg, class_names, {"epoch": state.epoch}
            )
        metrics = {"train_seconds": info["train_seconds"], "nonfinite_steps": state.nonfinite_total}
        run.trackers.log_metrics(metrics, state.step)
        run.trackers.log_artifacts(final_dir, "model")
    return final_dir
