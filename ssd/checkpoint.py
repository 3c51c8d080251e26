"""Training checkpoints that survive a kill at any moment.

A checkpoint is a directory ``<out>/checkpoints/step-NNNNNNNN/`` holding the detector
(``model.safetensors`` + ``model.json``, see :mod:`ssd.weights`) and ``state.pt`` with
the optimizer, scheduler, grad scaler, RNG states, epoch and step. ``state.pt`` holds only
tensors and plain Python values and is read with ``torch.load(weights_only=True)``: no
code is unpickled. The directory is complete before ``latest.json`` (replaced atomically)
points at it, so a SIGKILL during a save leaves the previous checkpoint in force.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssd.config import ModelConfig
from ssd.model import SSD
from ssd.weights import save_detector

POINTER = "latest.json"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": repr(random.getstate()),
    }
    _, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # type: ignore[misc]
    key = np.asarray(key)
    state["numpy"] = {
        "key": torch.from_numpy(key.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import ast

    torch.set_rng_state(state["torch"])
    random.setstate(ast.literal_eval(state["python"]))
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    out_dir: str | Path,
    model: SSD,
    model_cfg: ModelConfig,
    class_names: list[str],
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write a complete checkpoint for ``state["step"]`` and point ``latest.json`` at it."""
    root = Path(out_dir) / "checkpoints"
    name = f"step-{int(state['step']):08d}"
    final = root / name
    tmp = root / (name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_detector(tmp, model, model_cfg, class_names)
    with open(tmp / "state.pt", "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    _atomic_write_text(
        root / POINTER, json.dumps({"checkpoint": name, "step": state["step"]}) + "\n"
    )
    # Keep the newest `keep` complete checkpoints.
    done = sorted(p for p in root.glob("step-*") if not p.name.endswith(".partial"))
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The checkpoint ``latest.json`` points at, or None if there is none."""
    root = Path(out_dir) / "checkpoints"
    pointer = root / POINTER
    if not pointer.is_file():
        return None
    path = root / json.loads(pointer.read_text())["checkpoint"]
    return path if (path / "state.pt").is_file() else None


def load_state(checkpoint: Path) -> dict[str, Any]:
    state: dict[str, Any] = torch.load(
        checkpoint / "state.pt", map_location="cpu", weights_only=True
    )
    return state
