"""Fixtures of the data tests: the BCCD dataset and a DataConfig writing under tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from data_builders import BCCD

from ssd.config import DataConfig


@pytest.fixture
def bccd() -> Path:
    if not (BCCD / "Annotations").is_dir():
        pytest.skip(f"BCCD dataset not found at {BCCD} (expected ../shared/datasets/bccd)")
    return BCCD


@pytest.fixture
def prepare_cfg(tmp_path: Path) -> Callable[..., DataConfig]:
    """``prepare_cfg(source, path, **overrides)`` -> a DataConfig writing under tmp_path."""

    def build(source: str = "voc", path: Path | None = None, **kw: Any) -> DataConfig:
        values: dict[str, Any] = {
            "source": source,
            "path": str(path) if path else None,
            "name": kw.pop("name", "ds"),
            "prepared_root": str(tmp_path / "prepared"),
            "val_ratio": 0.2,
            "test_ratio": 0.2,
        }
        values.update(kw)
        return DataConfig(**values)

    return build
