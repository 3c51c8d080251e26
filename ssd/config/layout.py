"""Where each stage writes: every reader and writer names its files through :class:`Layout`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ssd.config.sections import Config


EXPORTS_ROOT = Path("exports")


class Layout:
    """Where each stage writes, keyed by ``data.name`` so datasets never overwrite each other.

    ``data/prepared/<name>/`` (prepare), ``models/<name>/`` (train: ``ssd/``, ``best/``,
    ``checkpoints/``, ``metrics.jsonl``), ``reports/<name>/`` (evaluate, register, audit).
    Commands that are no DVC stage write outside every stage's outputs (DVC would see a
    changed output, and ``dvc pull`` / ``checkout`` refuse to replace it): ``ssd export``
    to ``exports/<name>/``, ``ssd suggest-priors`` to ``reports/<name>/priors/``. Each
    property reads only the keys it needs.
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

    @property
    def exports(self) -> Path:
        """``ssd export``'s folder: ``exports/<name>/`` (git-ignored, no stage's output)."""
        return EXPORTS_ROOT / self._cfg.data.name

    @property
    def suggested_priors(self) -> Path:
        """``ssd suggest-priors``' folder: ``reports/<name>/priors/`` (no stage's output)."""
        return self.reports / "priors"
