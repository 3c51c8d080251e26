"""Shared test settings: small thread count, offline tools, data paths."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# The tests mirror the package (tests/model, tests/train, ...); the builders of test data
# they share live beside the tests that own them and are importable from every folder.
for helpers in ("", "data", "evaluation", "audit"):
    path = str(Path(__file__).parent / helpers)
    if path not in sys.path:
        sys.path.insert(0, path)
SHARED = REPO.parent / "shared"
BCCD = SHARED / "datasets" / "bccd"

os.environ.setdefault("DO_NOT_TRACK", "true")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# FiftyOne's `eta` reads its package metadata when first imported; once MLflow has imported
# the importlib_metadata backport (which replaces the stdlib's finder), that read raises
# KeyError('author'). Importing it first keeps the FiftyOne tests independent of which
# test file ran before them in the same worker.
with contextlib.suppress(ImportError):
    import eta  # noqa: F401


@pytest.fixture(scope="session")
def bccd_root() -> Path:
    if not (BCCD / "Annotations").is_dir():
        pytest.skip(f"BCCD dataset not found at {BCCD}")
    return BCCD
