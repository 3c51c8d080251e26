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

MLflow is plugged in by the CLI through a :class:`~ssd.train.tracking.Tracker`, never imported here.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, cast

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from ssd.config import Config, ModelConfig, TrainConfig, flatten
from ssd.data.dataset import DetectionDataset, collate_detections
from ssd.data.prepared import PreparedSplit
from ssd.infer.detector import Detector, resolve_device
from ssd.model.builder import build_loss, build_model
from ssd.model.loss import MultiBoxLoss
from ssd.model.network import SSD
from ssd.model.weights import save_detector
from ssd.train.distributed import (
    DistEnv,
    any_rank,
    average_buffers,
    barrier,
    init_distributed,
    reduce_mean,
    shutdown,
)
from ssd.train.ema import ema_decay, weight_ema
from ssd.train.state import (
    CheckpointError,
    NonFiniteError,
    TrainState,
    find_checkpoint,
    require_finite,
    restore,
    save_checkpoint,
)
from ssd.train.tracking import JsonlTracker, Tracker, fan_out

log = logging.getLogger(__name__)

FINAL_DIR = "ssd"  # <out_dir>/ssd holds the final detector (model.safetensors + model.json)
BEST_DIR = "best"
CHECKPOINT_DIR = "checkpoints"
LOSS_PARTS = ("loss", "loc", "conf")


class TrainingError(RuntimeError):
    """Training cannot go on; the message names the likely causes."""


class TrainingStopped(TrainingError):
    """A signal stopped training; :attr:`signum` is the signal (exit status 128 + signum)."""

    def __init__(self, signum: int, message: str) -> None:
        self.signum = signum
        super().__init__(message)


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
        self.n, self.seed, self.epoch, self.env = n, seed, epoch, env
        self.shuffle, self.start = shuffle, start
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


def _ignore_stop_signals(worker_id: int) -> None:
    """Loader workers leave SIGINT / SIGTERM to the training process (Ctrl-C reaches the
    whole process group); they end with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loader(
    dataset: Dataset[Any], t: TrainConfig, epoch: int, env: DistEnv, start: int, pin: bool
) -> DataLoader[Any]:
    """Batches of epoch ``epoch`` from sample ``start`` of this rank's share."""
    sampler = EpochSampler(len(dataset), t.seed, epoch, env, True, start)  # type: ignore[arg-type]
    return DataLoader(
        SeededDataset(dataset, t.seed),
        batch_size=t.batch_size,
        sampler=sampler,
        num_workers=t.num_workers,
        collate_fn=collate_detections,
        pin_memory=pin,
        drop_last=True,
        worker_init_fn=_ignore_stop_signals if t.num_workers else None,
    )


# ----------------------------------------------------------------------------- optimisation


def build_optimizer(model: nn.Module, t: TrainConfig) -> torch.optim.Optimizer:
    """SGD (paper) or AdamW; group 0 decays, group 1 (norm scales, biases) does not."""
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


def lr_lambda(t: TrainConfig, total_steps: int) -> Any:
    """The learning-rate factor of step ``s``: linear warm-up, then cosine or multistep."""
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


def _frozen_modules(model: SSD, t: TrainConfig) -> list[nn.Module]:
    """The lite0 stem and first ``train.freeze_stem_blocks`` blocks (nothing for vgg16)."""
    body = getattr(model.backbone, "body", None)
    n = t.freeze_stem_blocks
    if body is None or n == 0:
        return []
    return [body._conv_stem, body._bn0, *body._blocks[:n]]


def freeze_backbone_parts(model: SSD, t: TrainConfig) -> None:
    """Fix the ImageNet backbone's BatchNorm (statistics and affine) and optionally the stem
    and first blocks (weights and BatchNorm, as torchvision's ``trainable_layers`` and
    Detectron's ``FREEZE_AT`` do): generic low-level filters, and on a CPU the frozen
    high-resolution layers need no backward pass (about 1.7x faster steps at 5 blocks)."""
    body = getattr(model.backbone, "body", None)
    if body is None:
        if t.freeze_stem_blocks or t.freeze_bn:
            log.warning(
                "train.freeze_stem_blocks / train.freeze_bn apply to efficientnet_lite0's "
                "ImageNet body; ignored for %s (set them to 0 / false to silence this)",
                type(model.backbone).__name__,
            )
        return
    if t.freeze_bn:
        for m in body.modules():
            if isinstance(m, nn.BatchNorm2d):
                for p in m.parameters():
                    p.requires_grad_(False)
    for module in _frozen_modules(model, t):
        for p in module.parameters():
            p.requires_grad_(False)


def set_train_mode(model: SSD, t: TrainConfig) -> None:
    """``model.train()``, with frozen BatchNorm kept on its running statistics."""
    model.train()
    body = getattr(model.backbone, "body", None)
    if body is not None and t.freeze_bn:
        for m in body.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
    for module in _frozen_modules(model, t):
        module.eval()


# ----------------------------------------------------------------------------- set-up


@dataclass(frozen=True)
class Runtime:
    """Where training runs: the device, the processes, the precision."""

    device: torch.device
    env: DistEnv
    amp_dtype: torch.dtype | None  # autocast dtype on CUDA; None = fp32
    channels_last: bool


def idle_cores(seconds: float = 0.5) -> float | None:
    """How many CPU cores were idle over the last ``seconds`` (from ``/proc/stat``), or
    None where that cannot be read."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields[:8])  # idle + iowait, all but guest

    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
        ncpu = os.cpu_count() or 1
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return ncpu * (idle1 - idle0) / (total1 - total0)


def fit_threads(t: TrainConfig) -> int:
    """Intra-op threads for a training process: ``train.num_threads``, or the cores that
    are idle when training starts (at most the cores this process may use), shared among
    torchrun's local processes; at least 1.

    Measured on 2 cores with 2 loader workers (README "Speed"): alone, 2 threads ran at
    1.8x the images/s of 1; beside one other busy process, 1 thread ran at 1.6x the
    images/s of 2 (OpenMP threads that wait for a core stall every operator). So the
    count follows what is free, not a fixed rule."""
    if t.num_threads:
        return t.num_threads
    if os.environ.get("OMP_NUM_THREADS"):  # the user chose: keep it (and runs comparable)
        return torch.get_num_threads()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    idle = idle_cores()
    free = cores if idle is None else min(cores, max(1, round(idle)))
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, free // local)


def setup_runtime(t: TrainConfig) -> Runtime:
    device = resolve_device(t.device)
    env = init_distributed(device)
    threads = fit_threads(t)
    torch.set_num_threads(threads)
    log.info(
        "%d intra-op thread(s)%s, %d loader worker(s)",
        threads,
        "" if t.num_threads else " (the cores idle now; train.num_threads sets it)",
        t.num_workers,
    )
    if device.type == "cuda" and env.enabled:
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    amp: torch.dtype | None = None
    if device.type == "cuda" and t.amp != "off":
        bf16 = t.amp == "bf16" or (t.amp == "auto" and torch.cuda.is_bf16_supported())
        amp = torch.bfloat16 if bf16 else torch.float16
    # channels_last only on CUDA: on CPU, BatchNorm's backward in NHWC was measured ~10x
    # less accurate than NCHW (relative L2 gradient error ~0.1 vs ~0.01 against float64).
    return Runtime(device, env, amp, t.channels_last and device.type == "cuda")


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
    from ssd.data.transforms import build_train_transforms

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
    model_cfg: ModelConfig, t: TrainConfig, num_classes: int, steps: int, rt: Runtime
) -> TrainState:
    """A fresh :class:`TrainState`: the seeded model with its frozen parts, the optimizer,
    the schedule over ``steps`` steps and the grad scaler."""
    torch.manual_seed(t.seed)
    model = build_model(model_cfg, num_classes).to(rt.device)
    freeze_backbone_parts(model, t)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, t)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(t, steps))
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


def training_params(cfg: Config) -> dict[str, Any]:
    """What a training run depends on, as flat dotted keys (for the run's params)."""
    return {
        "data.name": cfg.data.name,
        **flatten(cfg.model, "model."),
        **flatten(cfg.train, "train."),
    }


def run_settings(cfg: Config) -> dict[str, Any]:
    """:func:`training_params` as JSON values with derived defaults resolved: what a
    checkpoint records and ``--resume`` compares."""
    params = training_params(cfg)
    params["model.input_size"] = cfg.model.resolved_input_size
    params["model.head"] = cfg.model.resolved_head
    settings: dict[str, Any] = json.loads(json.dumps(params))
    return settings


# ----------------------------------------------------------------------------- resume

_CONTINUES = "the schedule continues from this step with it"
_NEXT_STEP = "used from the next step"
_HERE_ON = "used from here on"
# Settings that may differ from the checkpoint's on --resume, and what the new value does.
# Any other model.* or train.* key shapes the weights, the optimizer's state or the data
# order: a difference is refused, naming the key.
RESUME_APPLIES = {
    "train.epochs": "the learning-rate schedule is recomputed for the new length",
    "train.max_steps": "the learning-rate schedule is recomputed for the new length",
    "train.lr": _CONTINUES,
    "train.schedule": _CONTINUES,
    "train.milestones": _CONTINUES,
    "train.gamma": _CONTINUES,
    "train.warmup_steps": _CONTINUES,
    "train.warmup_factor": _CONTINUES,
    "train.momentum": _NEXT_STEP,
    "train.weight_decay": _NEXT_STEP,
    "train.grad_clip": _NEXT_STEP,
    "train.iou_threshold": _NEXT_STEP,
    "train.neg_pos_ratio": _NEXT_STEP,
    "train.alpha": _NEXT_STEP,
    "train.augment.": _NEXT_STEP,  # every augment key
    "train.num_workers": _HERE_ON,
    "train.num_threads": _HERE_ON,
    "train.device": _HERE_ON,
    "train.amp": _HERE_ON,
    "train.channels_last": _HERE_ON,
    "train.eval_every": _HERE_ON,
    "train.checkpoint_every_steps": _HERE_ON,
    "train.ema": "an average is kept (from the restored weights on) or dropped from here on",
    "train.ema_span": "the average's decay is recomputed; it applies from the next step",
    "train.max_nonfinite": _HERE_ON,
    "train.log_every": _HERE_ON,
    "train.out_dir": _HERE_ON,
    "model.backbone_weights": "it only sets initial weights; the checkpoint's are used",
    "model.num_classes": "the class names are compared instead",
}
# Changes the optimizer's restored values or the scheduler's position must take up.
_OPTIMIZER_KEYS = {
    "train.epochs",
    "train.max_steps",
    "train.lr",
    "train.schedule",
    "train.milestones",
    "train.gamma",
    "train.warmup_steps",
    "train.warmup_factor",
    "train.momentum",
    "train.weight_decay",
}


def _applies(key: str) -> str | None:
    return next((v for k, v in RESUME_APPLIES.items() if key == k or key.startswith(k)), None)


def changed_settings(
    saved: dict[str, Any], current: dict[str, Any], where: Path
) -> dict[str, tuple[Any, Any]]:
    """``{key: (checkpoint's value, this config's)}`` of the settings that differ.

    Raises:
        TrainingError: a key that cannot change within a run differs (all are named).
    """
    diff = {
        k: (saved.get(k), current.get(k))
        for k in sorted(saved.keys() | current.keys())
        if saved.get(k) != current.get(k)
    }
    refused = [
        f"{k} is {new!r} here but {old!r}" for k, (old, new) in diff.items() if not _applies(k)
    ]
    if refused:
        raise TrainingError(
            f"--resume: the settings differ from those of checkpoint {where}: "
            + "; ".join(refused)
            + ". These cannot change within a run (they shape the weights, the optimizer's "
            "state or the data order): set them back, or train without --resume to start "
            "a new run."
        )
    return diff


def apply_changes(
    state: TrainState, t: TrainConfig, steps: int, diff: dict[str, tuple[Any, Any]]
) -> None:
    """Put this config's optimizer and schedule values into a restored ``state`` (loading
    the optimizer and scheduler states brought back the checkpoint's)."""
    for key, (old, new) in diff.items():
        log.warning("--resume: %s is %r, was %r: %s", key, new, old, _applies(key))
    if not _OPTIMIZER_KEYS & diff.keys():
        return
    decay, _ = state.optimizer.param_groups
    decay["weight_decay"] = t.weight_decay
    for group in state.optimizer.param_groups:
        group["initial_lr"] = t.lr
        if "momentum" in group and t.optimizer == "sgd":
            group["momentum"] = t.momentum
    # A schedule positioned at this step, over the new length, from the new peak value.
    state.scheduler = torch.optim.lr_scheduler.LambdaLR(
        state.optimizer, lr_lambda(t, steps), last_epoch=state.step - 1
    )


def resume_from(
    state: TrainState,
    root: Path,
    settings: dict[str, Any],
    class_names: list[str],
    t: TrainConfig,
    steps: int,
) -> Path | None:
    """Continue ``state`` from the newest checkpoint under ``root`` that verifies; returns
    it, or None (with a warning) when there is no checkpoint at all.

    Raises:
        TrainingError: checkpoints exist but none verifies (each is named with the reason;
            nothing is deleted), or the settings or classes differ in a way that cannot
            be applied.
    """
    checkpoint, notes = find_checkpoint(root)
    for note in notes:
        log.warning("--resume: %s", note)
    if checkpoint is None:
        if notes:
            raise TrainingError(
                f"--resume: no usable checkpoint in {root} (nothing was deleted):\n  "
                + "\n  ".join(notes)
                + "\nmove them away, or train without --resume to start over"
            )
        log.warning("--resume: no checkpoint in %s, starting from scratch", root)
        return None
    if checkpoint.class_names != class_names:
        raise TrainingError(
            f"--resume: checkpoint {checkpoint.path} was trained on classes "
            f"{checkpoint.class_names}, the prepared dataset has {class_names}"
        )
    if checkpoint.settings is None:
        log.warning("--resume: %s records no settings; not compared", checkpoint.path)
        diff = {}
    else:
        diff = changed_settings(checkpoint.settings, settings, checkpoint.path)
    try:
        restore(checkpoint, state)
    except CheckpointError as err:  # the weights do not fit the model the config builds
        raise TrainingError(f"--resume: {err}") from None
    apply_changes(state, t, steps, diff)
    log.info(
        "resumed from %s (epoch %d, step %d)", checkpoint.path, checkpoint.epoch, checkpoint.step
    )
    return checkpoint.path


# ----------------------------------------------------------------------------- stopping


class StopSignals:
    """While active, SIGTERM and SIGINT ask training to stop at the next step boundary;
    a second one (or any, when not ``deferred``) raises :class:`TrainingStopped` at once.

    Installed only in the main thread (Python delivers signals there).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, deferred: bool = True) -> None:
        self.deferred = deferred
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not self.deferred:
            raise TrainingStopped(signum, f"stopped by {name}")
        if self.received is not None:
            raise TrainingStopped(signum, f"stopped by a second {name} at once, mid-step")
        self.received = signum
        log.warning(
            "%s: stopping at the next step boundary with a checkpoint (again: stop at once)", name
        )

    def agreed(self, rt: Runtime) -> bool:
        """Whether any process received a stop signal (the same answer on every rank)."""
        return any_rank(self.received is not None, rt.env, rt.device)


# ----------------------------------------------------------------------------- saving


def nonfinite_error(what: str, t: TrainConfig, last: Path | None) -> TrainingError:
    kept = f"the last finite checkpoint, {last}, is kept" if last else "no checkpoint was written"
    return TrainingError(
        f"{what}. Likely causes: learning rate too high (train.lr={t.lr}; try 10x lower or "
        "a longer warm-up), degenerate or wrongly scaled boxes in the data (check "
        "data/prepared/<name>/report.json), or fp16 overflow (train.amp=bf16). Nothing "
        f"non-finite was saved; {kept}"
        + (f" (continue from it: ssd train --resume --set train.lr={t.lr / 10:g})" if last else "")
    )


def _average_buffers(state: TrainState, env: DistEnv) -> None:
    """Under torchrun on CPU: the model's and the average's BatchNorm statistics, the same
    on every process (DDP keeps the parameters so, not the buffers)."""
    average_buffers(state.model, env)
    if state.ema is not None:
        average_buffers(state.ema.module, env)


@dataclass
class Checkpointer:
    """Writes this run's checkpoints (rank 0) and checks that the weights are finite."""

    root: Path
    model_cfg: ModelConfig
    class_names: list[str]
    settings: dict[str, Any]
    t: TrainConfig
    env: DistEnv
    last: Path | None = None  # the newest checkpoint of this run (written or resumed from)
    _saved: tuple[int, int, int] | None = None

    def _error(self, state: TrainState, err: NonFiniteError) -> TrainingError:
        what = f"the weights became non-finite by step {state.step}: {err}"
        return nonfinite_error(what, self.t, self.last)

    def require_finite(self, state: TrainState) -> None:
        """Raise :class:`TrainingError` (on every rank alike) unless all weights are finite."""
        try:
            require_finite(state.model)
            if state.ema is not None:
                require_finite(state.ema.module)
        except NonFiniteError as err:
            raise self._error(state, err) from None

    def resumed(self, path: Path, state: TrainState) -> None:
        """``state`` came from checkpoint ``path``: no need to write it again."""
        self.last, self._saved = path, (state.epoch, state.step, state.batches_done)

    def save(self, state: TrainState) -> None:
        """A checkpoint of ``state`` unless this one was saved already; finite or an error."""
        _average_buffers(state, self.env)
        key = (state.epoch, state.step, state.batches_done)
        if key == self._saved:
            return
        try:
            if self.env.is_main:
                self.last = save_checkpoint(
                    self.root, state, self.model_cfg, self.class_names, self.settings
                )
            else:
                self.require_finite(state)  # the same verdict on every rank
        except NonFiniteError as err:
            raise self._error(state, err) from None
        self._saved = key


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
    from ssd.evaluation.coco import coco_evaluate
    from ssd.infer.predict import predict_split

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
    _average_buffers(state, run.rt.env)
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
    data = load_data(cfg.layout.prepared, cfg.data.name, t, cfg.model, rt.env)
    steps = total_steps(t, data.steps_per_epoch)
    state = build_state(cfg.model, t, len(data.class_names), steps, rt)
    settings = run_settings(cfg) | {"world_size": rt.env.world_size}  # shards the data
    checkpoints = Checkpointer(
        out_dir / CHECKPOINT_DIR, cfg.model, data.class_names, settings, t, rt.env
    )
    if resume:
        found = resume_from(state, checkpoints.root, settings, data.class_names, t, steps)
        if found is not None:
            checkpoints.resumed(found, state)
    criterion = build_loss(state.model, t).to(rt.device)
    net = _distributed(state, rt)
    trackers = fan_out(
        [JsonlTracker(out_dir / "metrics.jsonl")] + ([tracker] if tracker else [])
        if rt.env.is_main
        else []
    )
    resumed = {"resumed_from": str(checkpoints.last)} if checkpoints.last else {}
    trackers.log_params(training_params(cfg) | resumed)

    started, stopped = time.perf_counter(), False
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
    seconds = time.perf_counter() - started
    info = {
        "steps": state.step,
        "epochs": state.epoch,
        "train_seconds": round(seconds, 1),
        "dataset": cfg.data.name,
        "train": cfg.train.model_dump(mode="json"),
    }
    final_dir = save_final(state, out_dir, cfg.model, data.class_names, run, info)
    barrier(rt.env)
    shutdown(rt.env)
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
