"""Saving and loading a trained detector without pickle.

A detector is a directory (or the path of its ``.safetensors`` file) holding
``model.safetensors`` (the weights) and ``model.json`` (the model config, class names and
format version). Loading never unpickles anything: safetensors plus JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from ssd.builder import build_model
from ssd.config import MOVED_KEYS, ModelConfig
from ssd.model import SSD

# 2: the post-processing and loss keys left the model config (they live in the postprocess
# and train sections); a version-1 model.json still loads, those keys are dropped.
FORMAT_VERSION = 2
WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"


class WeightsError(FileNotFoundError):
    """A detector file is missing or unreadable; the message says which and what to do."""


def _resolve(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix == ".safetensors":
        return p, p.with_suffix(".json")
    return p / WEIGHTS_FILE, p / META_FILE


def save_detector(
    path: str | Path,
    model: SSD,
    model_cfg: ModelConfig,
    class_names: list[str],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` + ``model.json`` into directory ``path``; returns the dir.

    The weights file is written to a temporary name and renamed, so an interrupted save
    never leaves a truncated file under the final name.
    """
    if len(class_names) != model.num_classes:
        raise ValueError(
            f"{len(class_names)} class names for a model with {model.num_classes} classes"
        )
    weights, meta = _resolve(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = weights.with_name(weights.name + ".tmp")
    save_file(state, str(tmp), metadata={"format": "ssd", "version": str(FORMAT_VERSION)})
    tmp.replace(weights)
    cfg = model_cfg.model_copy(update={"num_classes": len(class_names)})
    info = {
        "format_version": FORMAT_VERSION,
        "class_names": list(class_names),
        "input_size": model.input_size,
        "model": cfg.model_dump(mode="json"),
        **(extra or {}),
    }
    tmp_meta = meta.with_name(meta.name + ".tmp")
    tmp_meta.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    tmp_meta.replace(meta)
    return weights.parent


def read_meta(path: str | Path) -> dict[str, Any]:
    weights, meta = _resolve(path)
    if not weights.is_file():
        raise WeightsError(
            f"no detector weights at '{weights}'; train one with `ssd train` or give the "
            "directory that holds model.safetensors and model.json"
        )
    if not meta.is_file():
        raise WeightsError(f"'{meta}' is missing next to '{weights}' (it holds config and classes)")
    try:
        info: dict[str, Any] = json.loads(meta.read_text())
    except json.JSONDecodeError as err:
        raise WeightsError(f"'{meta}' is not valid JSON: {err}") from None
    return info


def model_config(info: dict[str, Any]) -> ModelConfig:
    """The model config recorded in a ``model.json`` (older format versions included)."""
    raw = dict(info["model"])
    for old in MOVED_KEYS:
        section, key = old.split(".")
        if section == "model":
            raw.pop(key, None)
    return ModelConfig.model_validate(raw)


def load_model(path: str | Path, device: str = "cpu") -> tuple[SSD, ModelConfig, list[str]]:
    """Rebuild the model from ``model.json`` and load ``model.safetensors`` (strict)."""
    info = read_meta(path)
    cfg = model_config(info)
    names = list(info["class_names"])
    model = build_model(cfg, len(names), pretrained=False)
    weights, _ = _resolve(path)
    model.load_state_dict(load_file(str(weights), device="cpu"), strict=True)
    return model.to(device).eval(), cfg, names
