"""Training checkpoints: what a run saves, written so that a kill at any moment loses
nothing, and found and verified again on ``--resume``.

A checkpoint is a directory ``<models>/checkpoints/step-NNNNNNNN/`` holding

- ``model.safetensors`` + ``model.json``: the detector (see :mod:`ssd.model.weights`);
- ``state.pt``: :meth:`TrainState.state_dict`, everything else a run needs to continue
  exactly (optimizer, scheduler, grad scaler, RNG states, counters). It holds only tensors
  and plain Python values and is read with ``torch.load(weights_only=True)``: no code is
  unpickled;
- ``checkpoint.json``, written last: step, epoch, run id, the settings the run used (to
  compare on resume) and the size of each file.

The rules, each tested in ``tests/train/test_train.py``:

- **Complete or absent**: written as ``step-N.partial`` and renamed; ``latest.json``
  (replaced atomically) then points at it. A kill during a save leaves the previous one; a
  write that fails (a full disk, ``ulimit -f``, a read-only folder) removes the partial
  folder and stops training with one message (:func:`write_error`), the previous one kept.
- **Finite or nothing**: :func:`save_checkpoint` refuses a model with an inf or NaN in any
  parameter or buffer (BatchNorm running statistics included).
- **Pruning keeps the work**: after a save, older checkpoints of the same run beyond the
  newest ``keep`` go, and those of an earlier run once this run has one of its own. The
  checkpoint just written is never removed, nor is a folder that cannot be read.
- **Resume finds the work**: :func:`find_checkpoint` tries ``latest.json``'s target, then
  every ``step-N`` newest first, and returns the first that is complete, readable and
  finite, with the reason each newer one was skipped. It deletes nothing.
"""

from __future__ import annotations

import ast
import errno
import io
import json
import logging
import os
import pickle
import random
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from ssd.config import ModelConfig, TrainConfig
from ssd.errors import CheckpointError, TrainingError, WeightsError
from ssd.model.finite import describe_nonfinite, nonfinite_tensors
from ssd.model.network import SSD
from ssd.model.weights import read_meta, save_detector
from ssd.train.distributed import DistEnv, average_buffers

log = logging.getLogger(__name__)

POINTER = "latest.json"
MANIFEST = "checkpoint.json"
STATE = "state.pt"
WEIGHTS = "model.safetensors"
FORMAT = 2  # 1: state.pt without "format", no checkpoint.json (still resumable)
_NAME = re.compile(r"step-(\d{8})")


class NonFiniteError(ValueError):
    """The model holds inf or NaN values; :attr:`bad` maps tensor names to their count."""

    def __init__(self, bad: dict[str, int]) -> None:
        self.bad = bad
        super().__init__(describe_nonfinite(bad))


# ----------------------------------------------------------------------------- finite values


def require_finite(model: nn.Module) -> None:
    """Raise :class:`NonFiniteError` unless every parameter and buffer of ``model`` is finite."""
    bad = nonfinite_tensors(model.state_dict())
    if bad:
        raise NonFiniteError(bad)


# ----------------------------------------------------------------------------- RNG states


def rng_state() -> dict[str, Any]:
    """Python's, NumPy's, torch's (and CUDA's) RNG states as tensors and plain values."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": repr(random.getstate())}
    _, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # type: ignore[misc]
    state["numpy"] = {
        "key": torch.from_numpy(np.asarray(key).astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(ast.literal_eval(state["python"]))
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- the state


def _new_run_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass
class TrainState:
    """Everything a training run needs to continue exactly where it was.

    :func:`save_checkpoint` writes it (the model's weights to ``model.safetensors``, the rest
    via :meth:`state_dict` to ``state.pt``) and :func:`restore` reads it back: one pair.
    """

    model: SSD
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: AveragedModel | None = None  # train.ema: the weight average (ssd/train/ema.py)
    step: int = 0  # steps taken, skipped non-finite ones included (the scheduler's count)
    epoch: int = 0  # epochs completed
    batches_done: int = 0  # batches of the current epoch already taken (per process)
    best_map: float = -1.0  # best validation mAP so far (best/ holds that model)
    nonfinite_total: int = 0
    nonfinite_in_a_row: int = 0
    epoch_sums: dict[str, float] = field(default_factory=dict)  # loss parts, finite steps
    epoch_finite_steps: int = 0  # the steps epoch_sums adds up
    run_id: str = field(default_factory=_new_run_id)  # kept across resumes
    # Training time of the run's earlier parts (a resumed run's before this process), and
    # when this part's clock started: train_seconds() is the whole run's.
    seconds_before: float = 0.0
    clock_started: float = field(default_factory=time.perf_counter)

    SAVED_VALUES = (  # plain values saved next to the optimizer, scheduler and scaler states
        "step",
        "epoch",
        "batches_done",
        "best_map",
        "nonfinite_total",
        "nonfinite_in_a_row",
        "epoch_sums",
        "epoch_finite_steps",
        "run_id",
    )

    def start_clock(self) -> None:
        """This part of the run starts training now (after loading, building, resuming)."""
        self.clock_started = time.perf_counter()

    def train_seconds(self) -> float:
        """Seconds of training of the whole run: earlier parts (resumed) plus this one."""
        return self.seconds_before + (time.perf_counter() - self.clock_started)

    @property
    def eval_model(self) -> SSD:
        """The weights validation, ``best/`` and the final detector use: the EMA's if kept."""
        return self.model if self.ema is None else cast(SSD, self.ema.module)

    def state_dict(self) -> dict[str, Any]:
        """All but the weights, RNG states included (tensors and plain values only)."""
        return {
            "format": FORMAT,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            **{name: getattr(self, name) for name in self.SAVED_VALUES},
            "train_seconds": self.train_seconds(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "format" not in state:  # format 1 (before checkpoint.json): other names, no sums
            state = {
                **state,
                "best_map": state["best"],
                "batches_done": state["batches_done_in_epoch"],
            }
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"] or not self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])  # saved without AMP: a fresh scaler
        set_rng_state(state["rng"])
        if self.ema is not None:
            if state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
            else:  # saved without train.ema: the average starts from the restored weights
                self.ema.n_averaged.zero_()
                self.ema.update_parameters(self.model)
        for name in self.SAVED_VALUES:
            if name in state:
                value = state[name]
                setattr(self, name, dict(value) if isinstance(value, dict) else value)
        self.seconds_before = float(state.get("train_seconds", 0.0))  # none before: 0
        self.start_clock()


# ----------------------------------------------------------------------------- saving


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)


def save_checkpoint(
    root: Path,
    state: TrainState,
    model_cfg: ModelConfig,
    class_names: list[str],
    settings: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write ``root/step-N`` for ``state``, point ``latest.json`` at it, prune; returns it.

    ``settings`` (flat config keys) go to ``checkpoint.json`` for the comparison on resume.

    Raises:
        NonFiniteError: a parameter or buffer is inf or NaN; nothing was written.
        OSError: a write failed; the partial folder was removed, earlier checkpoints kept.
    """
    require_finite(state.model)
    if state.ema is not None:  # the average goes into state.pt and becomes the detector
        require_finite(state.ema.module)
    name = f"step-{state.step:08d}"
    final, tmp, replaced = root / name, root / f"{name}.partial", root / f"{name}.replaced"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        save_detector(tmp, state.model, model_cfg, class_names)
        # torch.save reports a failed write as "unexpected pos": serialise in memory, write
        # here, and a full disk is an OSError with its errno
        buffer = io.BytesIO()
        torch.save(state.state_dict(), buffer)
        with open(tmp / STATE, "wb") as fh:
            fh.write(buffer.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())
        del buffer
        manifest = {
            "format": FORMAT,
            "step": state.step,
            "epoch": state.epoch,
            "run": state.run_id,
            "settings": settings,
            "files": {p.name: p.stat().st_size for p in sorted(tmp.iterdir())},
        }
        _atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # half-written: never left filling the disk
        raise
    if final.exists():  # same step saved before (an abandoned run): swap, never a gap
        shutil.rmtree(replaced, ignore_errors=True)
        final.rename(replaced)
    tmp.rename(final)
    shutil.rmtree(replaced, ignore_errors=True)
    _atomic_write_text(root / POINTER, json.dumps({"checkpoint": name, "step": state.step}) + "\n")
    prune(root, final, state.run_id, keep)
    return final


def _manifest(path: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def prune(root: Path, current: Path, run_id: str, keep: int) -> None:
    """Remove older checkpoints of run ``run_id`` beyond the newest ``keep`` (``current``
    counted) and every checkpoint of an earlier run; never ``current``, never a folder
    whose ``checkpoint.json`` cannot be read."""
    step = int(current.name.split("-")[1])
    ours: list[Path] = []
    for path in root.glob("step-*"):
        if path.name.endswith(".partial"):
            shutil.rmtree(path, ignore_errors=True)  # incomplete by construction
            continue
        info = _manifest(path) if _NAME.fullmatch(path.name) and path != current else None
        if info is None:
            continue
        if info.get("run") != run_id:
            log.info("removing %s of an earlier run (this run has its own now)", path)
            shutil.rmtree(path, ignore_errors=True)
        elif int(path.name.split("-")[1]) < step:
            ours.append(path)
    for path in sorted(ours)[: max(0, len(ours) - (keep - 1))]:
        shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------- finding, reading


@dataclass
class Checkpoint:
    """A verified checkpoint, read into memory: complete, readable, every value finite."""

    path: Path
    weights: dict[str, Tensor]
    state: dict[str, Any]
    class_names: list[str]
    settings: dict[str, Any] | None  # None: format 1, settings not recorded

    @property
    def step(self) -> int:
        return int(self.state["step"])

    @property
    def epoch(self) -> int:
        return int(self.state["epoch"])


def _load_state(path: Path) -> dict[str, Any]:
    """``state.pt`` with ``weights_only=True``; one clear reason when it is not a state."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's message suggests weights_only=False: that would run the file's code.
        raise CheckpointError(
            f"{path} holds pickled Python objects besides tensors and plain values, which "
            "ssd train never writes; it is not loaded, as unpickling could run code"
        ) from None
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path} is truncated or damaged ({reason})") from None
    if not isinstance(state, dict) or not {"optimizer", "scheduler", "step"} <= state.keys():
        raise CheckpointError(f"{path} is not a training state written by ssd train")
    return state


def read_checkpoint(path: Path) -> Checkpoint:
    """Read and verify one checkpoint folder.

    Raises:
        CheckpointError: incomplete, unreadable or non-finite; the message says which file.
    """
    if not (path / STATE).is_file() or not (path / WEIGHTS).is_file():
        raise CheckpointError(f"{path} is incomplete (no {STATE} or {WEIGHTS})")
    info = _manifest(path)
    if (path / MANIFEST).exists() and info is None:
        raise CheckpointError(f"{path / MANIFEST} is not valid JSON")
    for name, size in (info or {}).get("files", {}).items():
        actual = (path / name).stat().st_size if (path / name).is_file() else None
        if actual != size:
            raise CheckpointError(f"{path / name} has {actual} bytes, {size} were written")
    try:
        weights = load_file(str(path / WEIGHTS))
        class_names = list(read_meta(path)["class_names"])
    except (WeightsError, KeyError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: the detector cannot be read ({err})") from None
    except Exception as err:  # safetensors' own error type for a damaged file
        raise CheckpointError(f"{path / WEIGHTS} is truncated or damaged ({err})") from None
    state = _load_state(path / STATE)
    for what, values in (("weights", weights), ("optimizer state", state["optimizer"])):
        bad = nonfinite_tensors(values)
        if bad:
            raise CheckpointError(f"{path}: its {what} hold {describe_nonfinite(bad)}")
    settings = info.get("settings") if info else None
    return Checkpoint(path, weights, state, class_names, settings)


def _candidates(root: Path) -> tuple[list[Path], str | None]:
    """Checkpoint folders to try, best first, and what was wrong with ``latest.json``."""
    folders = sorted((p for p in root.glob("step-*") if _NAME.fullmatch(p.name)), reverse=True)
    problem = None
    try:
        pointed = root / json.loads((root / POINTER).read_text())["checkpoint"]
        if pointed.parent != root or not pointed.is_dir():
            problem = f"{root / POINTER} points at {pointed.name}, which does not exist"
        else:
            folders = [pointed] + [p for p in folders if p != pointed]
    except FileNotFoundError:
        problem = f"{root / POINTER} is missing" if folders else None
    except (OSError, ValueError, TypeError, KeyError) as err:
        problem = f"{root / POINTER} is unreadable ({type(err).__name__}: {err})"
    return folders, problem


def find_checkpoint(root: Path) -> tuple[Checkpoint | None, list[str]]:
    """The checkpoint to resume from, and why each one tried before it was not taken.

    ``latest.json``'s target first; when it is missing, corrupt or points nowhere, or its
    target does not verify, every other ``step-N`` from the newest. Nothing is deleted.
    """
    folders, problem = _candidates(root)
    notes = [problem] if problem else []
    for path in folders:
        try:
            return read_checkpoint(path), notes
        except CheckpointError as err:
            notes.append(str(err))
    return None, notes


def restore(checkpoint: Checkpoint, state: TrainState) -> None:
    """Load a verified checkpoint into ``state`` (weights strictly, then everything else)."""
    try:
        state.model.load_state_dict(checkpoint.weights, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"{checkpoint.path}: the weights do not fit the model the config builds: "
            f"{str(err).splitlines()[0]}"
        ) from None
    state.load_state_dict(checkpoint.state)


def nonfinite_error(what: str, t: TrainConfig, last: Path | None) -> TrainingError:
    kept = f"the last finite checkpoint, {last}, is kept" if last else "no checkpoint was written"
    return TrainingError(
        f"{what}. Likely causes: learning rate too high (train.lr={t.lr}; try 10x lower or "
        "a longer warm-up), degenerate or wrongly scaled boxes in the data (check "
        "data/prepared/<name>/report.json), or fp16 overflow (train.amp=bf16). Nothing "
        f"non-finite was saved; {kept}"
        + (f" (continue from it: ssd train --resume --set train.lr={t.lr / 10:g})" if last else "")
    )


# What to do about a write that failed, by errno.
_WRITE_FIXES = {
    errno.ENOSPC: "free disk space",
    errno.EDQUOT: "free space in your disk quota",
    errno.EFBIG: "raise the file size limit (ulimit -f)",
    errno.EROFS: "set train.out_dir to a writable folder",
    errno.EACCES: "set train.out_dir to a folder you may write",
}


def write_error(err: OSError, what: Path, last: Path | None, started: bool = True) -> TrainingError:
    """The one message for a write that failed (``err``, writing ``what``): the reason, that
    nothing half-written was left, the checkpoint kept, how to go on. ``started=False``:
    before the first step (the output folder cannot be written at all)."""
    where = Path(err.filename) if isinstance(err.filename, str) else what
    reason = err.strerror or str(err) or type(err).__name__
    fix = _WRITE_FIXES.get(err.errno or 0, "make room to write there")
    if not started:
        return TrainingError(
            f"cannot write {where}: {reason}; nothing was trained: {fix}, then run "
            "`ssd train` again"
        )
    kept = f"the last checkpoint, {last}, is kept" if last else "no checkpoint was written yet"
    then = "continue with `ssd train --resume`" if last else "run `ssd train` again"
    return TrainingError(
        f"cannot write {where}: {reason}; training stopped, the half-written files were "
        f"removed and {kept}: {fix}, then {then}"
    )


def average_all_buffers(state: TrainState, env: DistEnv) -> None:
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
        average_all_buffers(state, self.env)
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
        except OSError as err:  # a full disk, a file size limit, a read-only folder
            raise write_error(err, self.root, self.last) from None
        self._saved = key
