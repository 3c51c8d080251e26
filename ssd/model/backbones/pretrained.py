"""Reading a pretrained-weights file safely: ``.safetensors``, or ``torch.load`` with
``weights_only=True`` (no pickled code runs), each failure one :class:`ModelError`."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from ssd.errors import ModelError


def weights_error(spec: str, err: BaseException, backbone_name: str = "") -> ModelError:
    """One message for a weights file that cannot be used; torch's own text is not shown
    for a refused pickle (it suggests weights_only=False, which would run the file's code)."""
    if isinstance(err, pickle.UnpicklingError) and "GLOBAL" in str(err):
        return ModelError(
            f"model.backbone_weights '{spec}' holds Python objects other than tensors (a "
            "pickled program, or a full model object) and was not loaded; save a plain state "
            "dict (torch.save(model.state_dict(), PATH)) or a .safetensors file"
        )
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    first = lines[0][:160] if lines else type(err).__name__
    if first.startswith("Error(s) in loading state_dict") and len(lines) > 1:
        first = (
            f"its keys or shapes are not those of the {backbone_name} backbone: {lines[1][:160]}"
        )
    if "weights_only" in str(err) or "Weights only" in first:
        first = "not a PyTorch state dict file"
    return ModelError(
        f"model.backbone_weights '{spec}' cannot be used ({first}); give an intact state dict "
        "saved with torch.save(...state_dict(), PATH) or a .safetensors file"
    )


def weights_path(spec: str) -> Path:
    path = Path(spec)
    try:
        exists = "\x00" not in spec and path.is_file()
    except OSError as err:
        raise ModelError(f"model.backbone_weights '{spec[:200]}': {err.strerror}") from None
    if not exists:
        raise ModelError(
            f"model.backbone_weights: file '{spec[:200]}' does not exist (give a torchvision "
            "vgg16 state dict saved with torch.save(vgg16(weights=...).state_dict(), PATH), "
            "or for efficientnet_lite0 'auto')"
        )
    return path


def read_state_dict(path: Path) -> Mapping[str, Tensor]:
    """A state dict from ``.safetensors`` or ``torch.save`` (``weights_only``: no code runs)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"it holds a {type(state).__name__}, not a state dict of tensors")
    return state
