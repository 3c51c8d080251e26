"""Where training runs: the device, the processes, the precision, the CPU threads, and the
stop signals (SIGTERM / SIGINT stop at the next step boundary with a checkpoint)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import torch

from ssd.config import TrainConfig
from ssd.errors import TrainingStopped
from ssd.infer.detector import resolve_device
from ssd.train.distributed import DistEnv, any_rank, init_distributed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    """Where training runs: the device, the processes, the precision."""

    device: torch.device
    env: DistEnv
    amp_dtype: torch.dtype | None  # autocast dtype on CUDA; None = fp32
    channels_last: bool
    threads: int = 1  # intra-op threads used (recorded with the run's params)


def available_cores() -> int:
    """The cores this process may use: its CPU affinity (``taskset``, a container's
    ``cpuset``), capped by a cgroup v2 CPU quota (``cpu.max``, a container's ``--cpus``);
    properties of the machine and the process, not of how busy the machine is."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text(encoding="ascii").split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def fit_threads(t: TrainConfig) -> int:
    """Intra-op threads for a training process: ``train.num_threads``; else
    ``OMP_NUM_THREADS`` when set (as PyTorch read it); else the cores this process may use
    (:func:`available_cores`) shared among torchrun's local processes; at least 1.

    Never the machine's load: the thread count changes the order of float reductions, so a
    count that followed the idle cores gave other weights on a busy machine (test AP50 0.898
    against 0.900, same commit and params). On a loaded machine fewer threads run faster
    (docs/results.md "Threads"): set ``train.num_threads`` then, knowing it changes the
    result."""
    if t.num_threads:
        return t.num_threads
    if os.environ.get("OMP_NUM_THREADS"):  # the user chose: keep it (and runs comparable)
        return torch.get_num_threads()
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, available_cores() // local)


def setup_runtime(t: TrainConfig) -> Runtime:
    device = resolve_device(t.device)
    env = init_distributed(device)
    threads = fit_threads(t)
    torch.set_num_threads(threads)
    log.info(
        "%d intra-op thread(s)%s, %d loader worker(s)",
        threads,
        "" if t.num_threads else " (the cores this process may use; train.num_threads sets it)",
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
    return Runtime(device, env, amp, t.channels_last and device.type == "cuda", threads)


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
