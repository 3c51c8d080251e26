"""Where training and evaluation report to: a tiny interface, a local JSON-lines log.

The library talks to a :class:`Tracker`; the MLflow implementation lives at the edge
(:mod:`ssd.integrations.mlflow_tracking`). Metrics always go to a local ``metrics.jsonl``
too, so nothing is lost when a tracking server is down.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Tracker(Protocol):
    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def log_artifacts(self, path: str | Path, artifact_path: str | None = None) -> None: ...


class JsonlTracker:
    """Appends one JSON object per call to a file (params once, metrics per step)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        open(self.path, "a").close()  # a folder that cannot be written fails here, at once

    def _write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, default=str, sort_keys=True) + "\n")

    def log_params(self, params: dict[str, Any]) -> None:
        self._write({"time": time.time(), "params": params})

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._write({"time": time.time(), "step": step, "metrics": metrics})

    def log_artifacts(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._write({"time": time.time(), "artifact": str(path), "artifact_path": artifact_path})


class _FanOut:
    """Calls every tracker; one that raises is warned about once and then left out."""

    def __init__(self, trackers: Iterable[Tracker]) -> None:
        self.trackers = list(trackers)

    def _call(self, name: str, *args: Any) -> None:
        for t in list(self.trackers):
            try:
                getattr(t, name)(*args)
            except Exception as err:  # a tracking failure must never stop training
                log.warning(
                    "tracker %s failed (%s); continuing without it, metrics stay in the "
                    "local metrics.jsonl",
                    type(t).__name__,
                    err,
                )
                self.trackers.remove(t)

    def log_params(self, params: dict[str, Any]) -> None:
        self._call("log_params", params)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._call("log_metrics", metrics, step)

    def log_artifacts(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._call("log_artifacts", path, artifact_path)


def fan_out(trackers: Iterable[Tracker]) -> _FanOut:
    return _FanOut(trackers)
