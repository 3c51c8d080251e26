"""Folding BatchNorm into the preceding convolution for inference.

In eval mode ``BN(conv(x))`` is an affine map of ``conv(x)``, so it can be folded into the
convolution's weights and bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``), saving a
full pass over every feature map. The result is numerically the same network (to float
rounding) and is only valid for inference: the original model is left untouched.
"""

from __future__ import annotations

import copy
import itertools
from typing import TypeVar

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

M = TypeVar("M", bound=nn.Module)


def _fold(parent: nn.Module, conv_name: str, bn_name: str) -> None:
    conv, bn = getattr(parent, conv_name, None), getattr(parent, bn_name, None)
    if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
        setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
        setattr(parent, bn_name, nn.Identity())


def fold_batchnorm(model: M) -> M:
    """An eval-mode copy of ``model`` with every conv -> BatchNorm pair folded.

    Pairs are found in ``nn.Sequential`` containers (consecutive children) and in modules
    that list them in a ``conv_bn_pairs`` attribute (the EfficientNet blocks).
    """
    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        for conv_name, bn_name in getattr(module, "conv_bn_pairs", ()):
            _fold(module, conv_name, bn_name)
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for first, second in itertools.pairwise(names):
                _fold(module, first, second)
    return model
