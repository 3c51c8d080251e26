"""MobileNetV2 (Sandler et al., 2018) as the SSD feature extractor of the TensorFlow Object
Detection API's ``ssd_mobilenet_v2_coco`` (``SSDMobileNetV2FeatureExtractor``, depth
multiplier 1), and the map from that graph's tensor names to this module's keys.

Feature maps (300x300 input): the expansion output of ``expanded_conv_13`` (TF's
"layer_15/expansion_output", 576 channels at stride 16, 19x19), the 1280-channel last
layer (``Conv_1``, "layer_19", 10x10), then four extra blocks 1x1 conv to half depth ->
depthwise 3x3 stride 2 -> 1x1 conv (512, 256, 256, 128 channels: 5x5, 3x3, 2x2, 1x1).
Every convolution is followed by BatchNorm (eps 1e-3) and ReLU6 except the linear
projection of each inverted residual; all use TensorFlow "SAME" padding (asymmetric on
stride 2), as the weights were trained with it.

Pretrained weights: ``model.backbone_weights: auto`` loads the COCO detector's backbone and
extra layers (:mod:`ssd.model.coco`; its heads start the detector's heads, class rows kept by
name, :func:`ssd.model.coco.transfer.init_heads_from_coco`).

Module and parameter names are torchvision's ``mobilenet_v2().features`` (``features.0``
stem, ``features.1`` .. ``features.17`` inverted residuals with ``.conv``, ``features.18``
last 1x1 conv), so the key set is the same as torchvision's; the extra blocks are
``extras.N.{0..8}`` like our other SSDLite backbones.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from ssd.errors import ModelError
from ssd.model.backbones.efficientnet_lite import BN_EPS, BN_MOMENTUM, SameConv2d
from ssd.model.backbones.spec import BackboneSpec

if TYPE_CHECKING:
    from ssd.config import ModelConfig
    from ssd.model.network import SSD

# (expand ratio t, channels c, repeats n, first stride s): MobileNetV2 paper, Table 2
INVERTED_RESIDUAL_SETTING = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]
EXTRA_CHANNELS = (512, 256, 256, 128)  # TF feature_map_layout: layer_19_2_Conv2d_{2..5}
TAP_BLOCK = 14  # features[14] = TF expanded_conv_13: first stride-32 block; its expansion is tapped


def _same_conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> SameConv2d:
    pad = k // 2 if stride == 1 else 0  # stride 1: SAME = symmetric; stride 2: padded in forward
    return SameConv2d(cin, cout, k, stride=stride, padding=pad, groups=groups, bias=False)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


def conv_bn_relu6(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation`` layout: ``0`` conv, ``1`` BatchNorm, ``2`` ReLU6."""
    return nn.Sequential(
        _same_conv(cin, cout, k, stride, groups), _bn(cout), nn.ReLU6(inplace=True)
    )


class InvertedResidual(nn.Module):
    """1x1 expansion (absent when ``expand_ratio`` is 1) -> depthwise 3x3 -> linear 1x1
    projection, with a residual connection when the shape is kept."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = cin * expand_ratio
        self.hidden_channels = hidden
        self.has_expand = expand_ratio != 1
        layers: list[nn.Module] = [conv_bn_relu6(cin, hidden, 1)] if self.has_expand else []
        layers += [
            conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
            _same_conv(hidden, cout, 1),
            _bn(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout

    def expand(self, x: Tensor) -> Tensor:
        return self.conv[0](x) if self.has_expand else x

    def finish(self, expanded: Tensor, inputs: Tensor) -> Tensor:
        x = expanded
        for layer in list(self.conv)[1 if self.has_expand else 0 :]:
            x = layer(x)
        return inputs + x if self.use_res_connect else x

    def forward(self, x: Tensor) -> Tensor:
        return self.finish(self.expand(x), x)


def _extra_block(cin: int, cout: int) -> nn.Sequential:
    """1x1 to ``cout / 2`` -> depthwise 3x3 stride 2 (SAME) -> 1x1 to ``cout``, BN + ReLU6."""
    mid = cout // 2
    return nn.Sequential(
        _same_conv(cin, mid, 1), _bn(mid), nn.ReLU6(inplace=True),
        _same_conv(mid, mid, 3, 2, groups=mid), _bn(mid), nn.ReLU6(inplace=True),
        _same_conv(mid, cout, 1), _bn(cout), nn.ReLU6(inplace=True),
    )  # fmt: skip


class MobileNetV2Backbone(nn.Module):
    """The six SSD feature maps of TF's ``ssd_mobilenet_v2``; input normalised images.

    ``mean``/``std`` (for inputs in [0, 1]) reproduce TF's preprocessing ``(2 / 255) x - 1``.
    The four extra blocks are always there (TF's fixed feature-map layout), so inputs must be
    at least 33 pixels for the last map to exist; 300 is what the COCO weights were trained at.
    """

    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_relu6(3, 32, 3, stride=2)]
        cin = 32
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn_relu6(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.extras = nn.ModuleList()
        cin = 1280
        for cout in EXTRA_CHANNELS:
            self.extras.append(_extra_block(cin, cout))
            cin = cout
        tap = self.features[TAP_BLOCK]
        assert isinstance(tap, InvertedResidual)
        self.out_channels = [tap.hidden_channels, 1280, *EXTRA_CHANNELS]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, mean=0.0, std=0.03)

    def forward(self, x: Tensor) -> list[Tensor]:
        feats: list[Tensor] = []
        for index, layer in enumerate(self.features):
            if index == TAP_BLOCK:
                assert isinstance(layer, InvertedResidual)
                expanded = layer.expand(x)
                feats.append(expanded)
                x = layer.finish(expanded, x)
            else:
                x = layer(x)
        feats.append(x)
        for block in self.extras:
            x = block(x)
            feats.append(x)
        return feats


# ----------------------------------------------------------------------------- TF names

TF_SCOPE = "FeatureExtractor/MobilenetV2/"


def _tf_block_name(index: int) -> str:
    """``features[index]`` (1..17) -> TF's scope: expanded_conv, expanded_conv_1, ..."""
    return "expanded_conv" if index == 1 else f"expanded_conv_{index - 1}"


def tf_names(backbone: MobileNetV2Backbone) -> Iterator[tuple[str, str]]:
    """``(our module path, TF scope)`` for every convolution and BatchNorm of ``backbone``.

    A convolution's TF scope holds ``weights`` (or ``depthwise_weights``); a BatchNorm's holds
    ``gamma``, ``beta``, ``moving_mean``, ``moving_variance``.
    """
    yield "features.0.0", TF_SCOPE + "Conv"
    yield "features.0.1", TF_SCOPE + "Conv/BatchNorm"
    for index in range(1, len(backbone.features) - 1):
        block = backbone.features[index]
        assert isinstance(block, InvertedResidual)
        tf = TF_SCOPE + _tf_block_name(index)
        at = f"features.{index}.conv"
        d = 0
        if block.has_expand:
            yield f"{at}.0.0", f"{tf}/expand"
            yield f"{at}.0.1", f"{tf}/expand/BatchNorm"
            d = 1
        yield f"{at}.{d}.0", f"{tf}/depthwise"
        yield f"{at}.{d}.1", f"{tf}/depthwise/BatchNorm"
        yield f"{at}.{d + 1}", f"{tf}/project"
        yield f"{at}.{d + 2}", f"{tf}/project/BatchNorm"
    last = len(backbone.features) - 1
    yield f"features.{last}.0", TF_SCOPE + "Conv_1"
    yield f"features.{last}.1", TF_SCOPE + "Conv_1/BatchNorm"
    for i, cout in enumerate(EXTRA_CHANNELS):
        j, mid = i + 2, cout // 2  # TF numbers the extra layers from 2 (after layer_15, layer_19)
        first, second = f"layer_19_1_Conv2d_{j}_1x1_{mid}", f"layer_19_2_Conv2d_{j}_3x3_s2_{cout}"
        for k, scope in enumerate((first, f"{second}_depthwise", second)):
            yield f"extras.{i}.{3 * k}", TF_SCOPE + scope
            yield f"extras.{i}.{3 * k + 1}", TF_SCOPE + scope + "/BatchNorm"


def conv_weight(tf_kernel: np.ndarray, depthwise: bool = False) -> Tensor:
    """A TF kernel as a PyTorch ``[out, in / groups, kh, kw]`` weight.

    Regular kernels are HWIO; depthwise kernels are ``[kh, kw, channels, multiplier]``
    (multiplier 1 here), which become ``[channels * multiplier, 1, kh, kw]``.
    """
    if tf_kernel.ndim != 4:
        raise ValueError(f"expected a 4-d TF kernel, got shape {tf_kernel.shape}")
    if depthwise:
        kh, kw, c, m = tf_kernel.shape
        return torch.from_numpy(tf_kernel.reshape(kh, kw, c * m).transpose(2, 0, 1).copy())[:, None]
    return torch.from_numpy(tf_kernel.transpose(3, 2, 0, 1).copy())


BN_FIELDS = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
             "running_var": "moving_variance"}  # fmt: skip


def backbone_state_from_tf(
    backbone: MobileNetV2Backbone, tensors: Mapping[str, np.ndarray]
) -> tuple[dict[str, Tensor], set[str]]:
    """Our backbone's state dict (keys relative to ``backbone``) from TF Const tensors.

    Returns the state (``num_batches_tracked`` not included) and the TF names used.

    Raises:
        KeyError: a TF tensor the architecture needs is not in ``tensors``.
        ValueError: a tensor has another shape than our parameter.
    """
    state: dict[str, Tensor] = {}
    used: set[str] = set()
    modules = dict(backbone.named_modules())
    for ours, scope in tf_names(backbone):
        module = modules[ours]
        if isinstance(module, nn.Conv2d):
            depthwise = module.groups > 1
            name = f"{scope}/depthwise_weights" if depthwise else f"{scope}/weights"
            state[f"{ours}.weight"] = conv_weight(tensors[name], depthwise)
            used.add(name)
        else:
            assert isinstance(module, nn.BatchNorm2d), ours
            for field, tf_field in BN_FIELDS.items():
                name = f"{scope}/{tf_field}"
                state[f"{ours}.{field}"] = torch.from_numpy(np.array(tensors[name]))
                used.add(name)
    expected = {k: v.shape for k, v in backbone.state_dict().items()}
    for key, value in state.items():
        if value.shape != expected[key]:
            raise ValueError(
                f"{key}: TF tensor of shape {tuple(value.shape)}, expected {tuple(expected[key])}"
            )
    return state, used


# ----------------------------------------------------------------------------- the spec


def _build(input_size: int, fine_map: bool) -> MobileNetV2Backbone:
    if fine_map:
        raise ModelError(
            "model.fine_map is for efficientnet_lite0; mobilenet_v2 has TF's fixed six maps "
            "(set model.fine_map: false)"
        )
    return MobileNetV2Backbone()


def _load_pretrained(backbone: nn.Module, weights: str) -> str:
    """``auto``: the backbone and extra layers of TF's COCO ``ssd_mobilenet_v2``."""
    from ssd.model.coco.convert import COCO_SOURCE, coco_state  # the converter builds models

    assert isinstance(backbone, MobileNetV2Backbone)
    if weights != "auto":
        raise ModelError(
            f"model.backbone_weights '{weights[:200]}': mobilenet_v2 starts from its COCO "
            "detector ('auto') or from nothing (null)"
        )
    prefix = "backbone."
    state = {k[len(prefix) :]: v for k, v in coco_state().items() if k.startswith(prefix)}
    backbone.load_state_dict(state, strict=True)
    return COCO_SOURCE


def _init_heads(model: SSD, cfg: ModelConfig, class_names: Sequence[str]) -> str:
    """With ``backbone_weights: auto``, the heads start from the COCO detector's."""
    from ssd.model.coco.transfer import init_heads_from_coco

    if cfg.backbone_weights != "auto":
        return "heads start fresh (model.backbone_weights is not auto)"
    p = cfg.priors
    return init_heads_from_coco(model, class_names, p.layout, (p.min_scale, p.max_scale))


def _frozen_prefix(backbone: nn.Module, blocks: int) -> list[nn.Module]:
    """The stem and the first ``blocks`` inverted residuals (``train.freeze_stem_blocks``)."""
    assert isinstance(backbone, MobileNetV2Backbone)
    return list(backbone.features[: blocks + 1]) if blocks else []


SPEC = BackboneSpec(
    name="mobilenet_v2",
    module=MobileNetV2Backbone,
    build=_build,
    input_size=300,  # what TF's COCO ssd_mobilenet_v2 was trained at
    head="conv",  # its box predictors are 3x3 convolutions with bias
    min_input_size=64,
    aspect_ratios=lambda num_maps: [[2.0, 3.0] for _ in range(num_maps)],  # layout paper only
    load_pretrained=_load_pretrained,
    frozen_prefix=_frozen_prefix,
    batchnorm_body=lambda backbone: backbone,
    init_heads=_init_heads,
)
