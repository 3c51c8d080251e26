"""Where each stage writes: every reader and writer names its files through :class:`Layout`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ssd.config.sections import Config


class Layout:
    """Where each stage writes, keyed by ``data.name`` so datasets never overwrite each other.

    ``data/prepared/<name>/`` (prepare), ``models/<name>/`` (train: ``ssd/``, ``best/``,
    ``checkpoints/``, ``metrics.jsonl``), ``reports/<name>/`` (evaluate, register,
    suggest-priors, audit). Each property reads only the keys it needs.
    """

    def __init__(self, cfg: Config) -> None:
        self._cfg = cfg

    @property
    def prepared(self) -> Path:
        return self._cfg.data.prepared_dir

    @property
    def models(self) -> Path:
        return Path(self._cfg.train.out_dir) / self._cfg.data.name

    @property
    def detector(self) -> Path:
        return self.models / "ssd"

    @property
    def best(self) -> Path:
        return self.models / "best"

    @property
    def reports(self) -> Path:
        return Path(self._cfg.evaluate.out_dir) / self._cfg.data.name

    @property
    def metrics(self) -> Path:
        return self.reports / "metrics.json"

    @property
    def evaluation(self) -> Path:
        return self.reports / "evaluation.json"

    @property
    def registry(self) -> Path:
        return self.reports / "registry.json"

    @property
    def audit(self) -> Path:
        """``audit.json`` of ``ssd audit`` (next to it ``audit.csv`` and ``audit/``)."""
        return self.reports / "audit.json"
