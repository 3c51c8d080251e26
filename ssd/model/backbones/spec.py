"""What a backbone provides to the SSD built on it: :class:`BackboneSpec`.

A backbone is an ``nn.Module`` mapping normalised images ``[N, 3, S, S]`` to a list of
feature maps, with ``mean`` and ``std`` (per channel, for inputs in [0, 1]) and
``out_channels`` (one per map). Its spec says the rest; :mod:`ssd.model.builder` and
:mod:`ssd.train.optim` read nothing else about a backbone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from ssd.config import ModelConfig
    from ssd.model.network import SSD


def no_frozen_prefix(backbone: nn.Module, blocks: int) -> list[nn.Module]:
    """A backbone with no stem to freeze (``train.freeze_stem_blocks`` is ignored)."""
    return []


def no_batchnorm_body(backbone: nn.Module) -> nn.Module | None:
    """A backbone with no pretrained BatchNorm (``train.freeze_bn`` is ignored)."""
    return None


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone provides.

    Attributes:
        name: the ``model.backbone`` value.
        module: the backbone's class (how a built model's spec is found again).
        build: ``(input_size, fine_map) -> backbone`` with random weights; raises
            :class:`~ssd.errors.ModelError` for a setting it does not support.
        input_size: the default ``model.input_size``.
        head: the default ``model.head`` (``conv`` or ``ssdlite``).
        min_input_size: the smallest input its feature maps allow.
        aspect_ratios: ``num_maps -> per map, the ratios besides 1`` (what
            ``model.priors.aspect_ratios: null`` means for it).
        load_pretrained: ``(backbone, model.backbone_weights) -> what was loaded``, for a
            value other than null: ``"auto"``, a local file or a named source. Raises
            :class:`~ssd.errors.ModelError` naming what is wrong with a file.
        frozen_prefix: ``(backbone, train.freeze_stem_blocks) -> the modules to fix``.
        batchnorm_body: the part whose BatchNorm ``train.freeze_bn`` fixes (None: none).
        init_heads: ``(model, model config, class names) -> what was done``: start the heads
            of a freshly built model from a pretrained detector's (the COCO start); None:
            the heads always start fresh.
    """

    name: str
    module: type[nn.Module]
    build: Callable[[int, bool], nn.Module]
    input_size: int
    head: str
    min_input_size: int
    aspect_ratios: Callable[[int], list[list[float]]]
    load_pretrained: Callable[[nn.Module, str], str]
    frozen_prefix: Callable[[nn.Module, int], list[nn.Module]] = no_frozen_prefix
    batchnorm_body: Callable[[nn.Module], nn.Module | None] = no_batchnorm_body
    init_heads: Callable[[SSD, ModelConfig, Sequence[str]], str] | None = None
