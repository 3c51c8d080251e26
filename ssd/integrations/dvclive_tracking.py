"""dvclive as a :class:`ssd.train.tracking.Tracker`: training curves where DVC users look.

Every metric ``ssd train`` logs (loss parts, learning rate, images/s per ``log_every``
steps; epoch averages and validation mAP per epoch) goes to
``models/<data.name>/live/plots/metrics/<name>.tsv`` (x: the optimizer step), which
``dvc.yaml`` declares as plots, so ``dvc plots show`` / ``dvc plots diff`` draw the
training curves of the workspace and of experiments. ``live/metrics.json``, which
``dvc metrics show`` and ``dvc exp show`` list after the evaluation's figures, keeps only
:data:`SUMMARY` (dvclive's summary is ours to shape: ``Live.summary``), so those tables
stay narrow. The plots and outputs are declared in the project's ``dvc.yaml`` (so dvclive
writes none of its own) and DVC itself saves experiments (so dvclive saves none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Logged once at the end of training: summary values, not curves.
SUMMARY_ONLY = {"train_seconds", "nonfinite_steps", "epoch"}
# What live/metrics.json keeps besides the step (dvclive adds it): the whole run's training
# time, resumed parts included. The curves hold the rest.
SUMMARY = ("train_seconds",)


class DvcLiveTracker:
    """Metrics of a training run through ``dvclive.Live``."""

    def __init__(self, directory: str | Path, resume: bool = False) -> None:
        from dvclive import Live

        self.live = Live(
            dir=str(directory),
            resume=resume,
            report=None,
            save_dvc_exp=False,
            dvcyaml=False,
            monitor_system=False,
        )

    def log_params(self, params: dict[str, Any]) -> None:
        """DVC has the params already (params.yaml, ``dvc exp show``)."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.live.step = step
        for name, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            self.live.log_metric(name, float(value), plot=name not in SUMMARY_ONLY)
        self.live.summary = {k: v for k, v in self.live.summary.items() if k in SUMMARY}
        self.live.make_summary()

    def log_artifacts(self, path: str | Path, artifact_path: str | None = None) -> None:
        """The detector is a DVC output of the train stage already."""

    def end(self) -> None:
        self.live.end()
