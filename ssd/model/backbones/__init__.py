"""Backbones, and the one registry of them: ``model.backbone`` names a :class:`BackboneSpec`.

Adding a backbone is a module that defines the network and its ``SPEC``
(:class:`~ssd.model.backbones.spec.BackboneSpec`), plus one line in :data:`BACKBONES` (or
:func:`register`, from outside the package).
"""

from __future__ import annotations

from torch import nn

from ssd.model.backbones import efficientnet_lite, mobilenet_v2, vgg
from ssd.model.backbones.spec import BackboneSpec

BACKBONES: dict[str, BackboneSpec] = {
    vgg.SPEC.name: vgg.SPEC,
    efficientnet_lite.SPEC.name: efficientnet_lite.SPEC,
    mobilenet_v2.SPEC.name: mobilenet_v2.SPEC,
}


def register(spec: BackboneSpec) -> BackboneSpec:
    """Add ``spec`` to :data:`BACKBONES`: ``model.backbone: <spec.name>`` then builds it."""
    BACKBONES[spec.name] = spec
    return spec


def spec_for(backbone: nn.Module) -> BackboneSpec | None:
    """The spec of a built backbone (None for a module no spec names)."""
    return next((s for s in BACKBONES.values() if isinstance(backbone, s.module)), None)


__all__ = ["BACKBONES", "BackboneSpec", "register", "spec_for"]
