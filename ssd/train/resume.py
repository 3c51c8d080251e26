"""``--resume``: what a run records of its settings, which of them may change on resume and
what the new value does, and restoring the newest checkpoint that verifies."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel

from ssd.config import Config, ModelConfig, TrainConfig, flatten
from ssd.errors import CheckpointError, TrainingError
from ssd.train.optim import lr_lambda
from ssd.train.state import TrainState, find_checkpoint, restore

log = logging.getLogger(__name__)


def training_params(cfg: Config) -> dict[str, Any]:
    """What a training run depends on, as flat dotted keys (for the run's params)."""
    return {
        "data.name": cfg.data.name,
        **flatten(cfg.model, "model."),
        **flatten(cfg.train, "train."),
    }


def run_settings(cfg: Config) -> dict[str, Any]:
    """:func:`training_params` as JSON values with derived defaults resolved: what a
    checkpoint records and ``--resume`` compares."""
    params = training_params(cfg)
    params["model.input_size"] = cfg.model.resolved_input_size
    params["model.head"] = cfg.model.resolved_head
    settings: dict[str, Any] = json.loads(json.dumps(params))
    return settings


def _policy(section: type[BaseModel], prefix: str) -> dict[str, dict[str, Any]]:
    """``{key: field metadata}`` of the keys of ``section`` that say what a new value does on
    resume (:func:`ssd.config.sections.on_resume`); a nested section's key covers all of its
    keys (``train.augment.``)."""
    out: dict[str, dict[str, Any]] = {}
    for name, info in section.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and "on_resume" in extra:
            nested = isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
            out[f"{prefix}{name}" + ("." if nested else "")] = extra
    return out


# Settings that may differ from the checkpoint's on --resume, and what the new value does,
# read off the config's fields. Any other model.* or train.* key shapes the weights, the
# optimizer's state or the data order: a difference is refused, naming the key.
_POLICY = _policy(TrainConfig, "train.") | _policy(ModelConfig, "model.")
RESUME_APPLIES: dict[str, str] = {k: str(v["on_resume"]) for k, v in _POLICY.items()}
# Changes the optimizer's restored values or the scheduler's position must take up.
_OPTIMIZER_KEYS = {k for k, v in _POLICY.items() if v.get("resume_optimizer")}


def _applies(key: str) -> str | None:
    return next((v for k, v in RESUME_APPLIES.items() if key == k or key.startswith(k)), None)


def changed_settings(
    saved: dict[str, Any], current: dict[str, Any], where: Path
) -> dict[str, tuple[Any, Any]]:
    """``{key: (checkpoint's value, this config's)}`` of the settings that differ.

    Raises:
        TrainingError: a key that cannot change within a run differs (all are named).
    """
    diff = {
        k: (saved.get(k), current.get(k))
        for k in sorted(saved.keys() | current.keys())
        if saved.get(k) != current.get(k)
    }
    refused = [
        f"{k} is {new!r} here but {old!r}" for k, (old, new) in diff.items() if not _applies(k)
    ]
    if refused:
        raise TrainingError(
            f"--resume: the settings differ from those of checkpoint {where}: "
            + "; ".join(refused)
            + ". These cannot change within a run (they shape the weights, the optimizer's "
            "state or the data order): set them back, or train without --resume to start "
            "a new run."
        )
    return diff


def apply_changes(
    state: TrainState, t: TrainConfig, steps: int, diff: dict[str, tuple[Any, Any]]
) -> None:
    """Put this config's optimizer and schedule values into a restored ``state`` (loading
    the optimizer and scheduler states brought back the checkpoint's)."""
    for key, (old, new) in diff.items():
        log.warning("--resume: %s is %r, was %r: %s", key, new, old, _applies(key))
    if not _OPTIMIZER_KEYS & diff.keys():
        return
    decay, _ = state.optimizer.param_groups
    decay["weight_decay"] = t.weight_decay
    for group in state.optimizer.param_groups:
        group["initial_lr"] = t.lr
        if "momentum" in group and t.optimizer == "sgd":
            group["momentum"] = t.momentum
    # A schedule positioned at this step, over the new length, from the new peak value.
    state.scheduler = torch.optim.lr_scheduler.LambdaLR(
        state.optimizer, lr_lambda(t, steps), last_epoch=state.step - 1
    )


def resume_from(
    state: TrainState,
    root: Path,
    settings: dict[str, Any],
    class_names: list[str],
    t: TrainConfig,
    steps: int,
) -> Path | None:
    """Continue ``state`` from the newest checkpoint under ``root`` that verifies; returns
    it, or None (with a warning) when there is no checkpoint at all.

    Raises:
        TrainingError: checkpoints exist but none verifies (each is named with the reason;
            nothing is deleted), or the settings or classes differ in a way that cannot
            be applied.
    """
    checkpoint, notes = find_checkpoint(root)
    for note in notes:
        log.warning("--resume: %s", note)
    if checkpoint is None:
        if notes:
            raise TrainingError(
                f"--resume: no usable checkpoint in {root} (nothing was deleted):\n  "
                + "\n  ".join(notes)
                + "\nmove them away, or train without --resume to start over"
            )
        log.warning("--resume: no checkpoint in %s, starting from scratch", root)
        return None
    if checkpoint.class_names != class_names:
        raise TrainingError(
            f"--resume: checkpoint {checkpoint.path} was trained on classes "
            f"{checkpoint.class_names}, the prepared dataset has {class_names}"
        )
    if checkpoint.settings is None:
        log.warning("--resume: %s records no settings; not compared", checkpoint.path)
        diff = {}
    else:
        diff = changed_settings(checkpoint.settings, settings, checkpoint.path)
    try:
        restore(checkpoint, state)
    except CheckpointError as err:  # the weights do not fit the model the config builds
        raise TrainingError(f"--resume: {err}") from None
    apply_changes(state, t, steps, diff)
    log.info(
        "resumed from %s (epoch %d, step %d)", checkpoint.path, checkpoint.epoch, checkpoint.step
    )
    return checkpoint.path
