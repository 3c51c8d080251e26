"""Finite or nothing: which tensors of a state dict (or any nested dict / list of tensors)
hold inf or NaN. Training refuses to save such weights (:mod:`ssd.train.state`) and
:func:`ssd.model.weights.load_model` refuses to load them: a detector with a NaN in it
returns no detections, or garbage, without a word."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor


def named_tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
    """Every tensor in a nested dict / list (an optimizer state, say), with a dotted name."""
    if isinstance(obj, Tensor):
        yield prefix, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from named_tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from named_tensors(v, f"{prefix}.{i}" if prefix else str(i))


def nonfinite_tensors(obj: Any) -> dict[str, int]:
    """``{name: number of inf/NaN values}`` of every floating tensor in ``obj`` that has any
    (a state dict, an optimizer state, a tensor); ``{}`` when all are finite."""
    floats = [(n, t.detach()) for n, t in named_tensors(obj) if t.is_floating_point() and t.numel()]
    if not floats or bool(torch.stack([torch.isfinite(t).all() for _, t in floats]).all()):
        return {}  # one device sync on the common path
    bad = {n: int((~torch.isfinite(t)).sum()) for n, t in floats}
    return {n: c for n, c in bad.items() if c}


def describe_nonfinite(bad: dict[str, int]) -> str:
    """``12 inf/NaN values in 2 tensors (a.weight, b.bias)``: at most three names."""
    names = ", ".join(list(bad)[:3]) + (", ..." if len(bad) > 3 else "")
    return f"{sum(bad.values())} inf/NaN values in {len(bad)} tensors ({names})"
