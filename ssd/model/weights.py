"""Saving and loading a trained detector without pickle.

A detector is a directory (or the path of its ``.safetensors`` file) holding
``model.safetensors`` (the weights) and ``model.json`` (the model config, class names and
format version). Loading never unpickles anything: safetensors plus JSON. Whatever is
wrong with either file (missing, truncated, not safetensors, not a JSON object, weights of
another architecture, an inf or NaN in any tensor) is a :class:`WeightsError` with one
message saying which and why. Shapes are compared on a model built on the meta device
(no memory) before the real one is built: a ``model.json`` naming 200,000 classes for
weights of 6 is refused, not allocated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from ssd.config import MAX_CLASSES, MOVED_KEYS, ModelConfig
from ssd.errors import WeightsError
from ssd.model.builder import build_model
from ssd.model.finite import describe_nonfinite, nonfinite_tensors
from ssd.model.network import SSD

# 2: the post-processing and loss keys left the model config (they live in the postprocess
# and train sections); a version-1 model.json still loads, those keys are dropped.
FORMAT_VERSION = 2
WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"


def _resolve(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if "\x00" in str(p):
        raise WeightsError(f"detector path {str(p)[:80]!r} contains a NUL character")
    if p.suffix == ".safetensors":
        return p, p.with_suffix(".json")
    return p / WEIGHTS_FILE, p / META_FILE


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError as err:  # e.g. a name too long for the file system
        raise WeightsError(f"detector path '{str(path)[:200]}...': {err.strerror}") from None


def save_detector(
    path: str | Path,
    model: SSD,
    model_cfg: ModelConfig,
    class_names: list[str],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` + ``model.json`` into directory ``path``; returns the dir.

    The weights file is written to a temporary name and renamed, so an interrupted save
    never leaves a truncated file under the final name; a write that fails (a full disk, a
    file size limit) removes the temporary file and raises ``OSError``.
    """
    if len(class_names) != model.num_classes:
        raise ValueError(
            f"{len(class_names)} class names for a model with {model.num_classes} classes"
        )
    weights, meta = _resolve(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = weights.with_name(weights.name + ".tmp")
    # serialised in memory, written by Python: a failed write is an OSError with its errno
    data = safetensors_bytes(state, metadata={"format": "ssd", "version": str(FORMAT_VERSION)})
    try:
        tmp.write_bytes(data)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
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
    try:
        tmp_meta.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    except OSError:
        tmp_meta.unlink(missing_ok=True)
        raise
    tmp_meta.replace(meta)
    return weights.parent


def read_meta(path: str | Path) -> dict[str, Any]:
    """``model.json`` as a dict with a ``class_names`` list of strings and a ``model`` object."""
    weights, meta = _resolve(path)
    if not _is_file(weights):
        raise WeightsError(
            f"no detector weights at '{weights}'; train one with `ssd train` or give the "
            "directory that holds model.safetensors and model.json"
        )
    if not _is_file(meta):
        raise WeightsError(f"'{meta}' is missing next to '{weights}' (it holds config and classes)")
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        first = str(err).splitlines()[0][:200] if str(err) else "nested too deeply"
        raise WeightsError(f"'{meta}' is not valid JSON: {first}") from None
    if not isinstance(info, dict):
        raise WeightsError(
            f"'{meta}' must be a JSON object with class_names and model, got a "
            f"{type(info).__name__}; was it written by ssd train?"
        )
    names = info.get("class_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise WeightsError(f"'{meta}': class_names must be a non-empty list of names")
    if len(names) > MAX_CLASSES:
        raise WeightsError(
            f"'{meta}' names {len(names)} classes, more than the {MAX_CLASSES} a detector may "
            "have; was it written by ssd train?"
        )
    if not isinstance(info.get("model"), dict):
        raise WeightsError(f"'{meta}': 'model' must be an object (the model section)")
    return info


def model_config(info: dict[str, Any]) -> ModelConfig:
    """The model config recorded in a ``model.json`` (older format versions included)."""
    raw = dict(info["model"])
    for old in MOVED_KEYS:
        section, key = old.split(".")
        if section == "model":
            raw.pop(key, None)
    try:
        return ModelConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise WeightsError(
            f"model.json's model section is not valid ({len(err.errors())} problems, first: "
            f"model.{where}: {first['msg']})"
        ) from None


def _read_weights(weights: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise WeightsError(
            f"'{weights}' is not a readable safetensors file ({first}); it may be truncated "
            "or another format: save detectors with ssd train (or ssd.model.weights.save_detector)"
        ) from None


def _check_matches(model: SSD, state: dict[str, Tensor], weights: Path, cfg: ModelConfig) -> None:
    """A :class:`WeightsError` when ``state`` is not a state dict of ``model``'s architecture."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if not (missing or unexpected or reshaped):
        return
    first = (
        f"{reshaped[0]} is {tuple(state[reshaped[0]].shape)}, expected {expected[reshaped[0]]}"
        if reshaped
        else (f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}")
    )
    raise WeightsError(
        f"'{weights}' does not hold the weights of the model its model.json describes "
        f"({cfg.backbone}, input {cfg.resolved_input_size}, {model.num_classes} classes): "
        f"{len(missing)} missing, {len(unexpected)} unexpected, {len(reshaped)} of another "
        f"shape (first: {first}); keep model.safetensors and model.json of one training together"
    )


def check_finite(state: dict[str, Tensor], weights: Path) -> None:
    """A :class:`WeightsError` naming the tensors of ``state`` that hold inf or NaN."""
    bad = nonfinite_tensors(state)
    if bad:
        raise WeightsError(
            f"'{weights}' holds {describe_nonfinite(bad)}: a detector with non-finite weights "
            "gives no or meaningless detections, so it is not loaded; use an earlier "
            "checkpoint (models/<name>/checkpoints) or train again (ssd train saves only "
            "finite weights)"
        )


def load_model(path: str | Path, device: str = "cpu") -> tuple[SSD, ModelConfig, list[str]]:
    """Rebuild the model from ``model.json`` and load ``model.safetensors`` (strict).

    Raises:
        WeightsError: a file missing or unreadable, weights of another architecture (found
            before any memory is allocated for the model), or an inf / NaN in them.
    """
    info = read_meta(path)
    cfg = model_config(info)
    names = list(info["class_names"])
    weights, _ = _resolve(path)
    state = _read_weights(weights)
    check_finite(state, weights)
    with torch.device("meta"):  # shapes only: nothing allocated whatever model.json says
        skeleton = build_model(cfg, len(names), pretrained=False)
    _check_matches(skeleton, state, weights, cfg)
    model = build_model(cfg, len(names), pretrained=False)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), cfg, names
