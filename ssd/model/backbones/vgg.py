"""VGG16 as SSD modifies it (paper §3, "Base network"; Fig. 2).

- pool3 uses ceil mode, so conv4_3 is 38x38 at 300x300;
- pool5 is 3x3, stride 1, padding 1 (instead of 2x2, stride 2);
- fc6 becomes a 3x3 conv with dilation 6 ("atrous"), fc7 a 1x1 conv, both 1024 channels;
- conv4_3 is L2-normalised with a learnable per-channel scale initialised to 20
  (ParseNet; paper §3.1);
- extra layers (conv8_2 ... conv11_2 at 300) shrink the map down to 1x1.

Layer indices of ``features`` follow ``torchvision.models.vgg16().features`` so a
torchvision VGG16 state dict loads as is. When that state dict has the classifier, fc6 and
fc7 are initialised by subsampling it, as the paper does ("we convert fc6 and fc7 to
convolutional layers, subsample parameters from fc6 and fc7").
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ssd.errors import ModelError
from ssd.model.backbones.pretrained import read_state_dict, weights_error, weights_path
from ssd.model.backbones.spec import BackboneSpec

# torchvision vgg16 "D" configuration; "M" = max pool.
_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
CONV4_3_RELU = 22  # index of conv4_3's ReLU in torchvision's vgg16().features


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learnable scale (ParseNet), init 20."""

    def __init__(self, channels: int, scale: float = 20.0, eps: float = 1e-10) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), scale))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt().clamp_min(self.eps)
        return x / norm * self.weight.view(1, -1, 1, 1)


def _vgg_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 3
    pools = 0
    for v in _VGG16:
        if v == "M":
            pools += 1
            if pools == 3:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))  # 75 -> 38 at 300
            elif pools == 5:
                layers.append(nn.MaxPool2d(3, 1, padding=1))  # pool5: 3x3-s1
            else:
                layers.append(nn.MaxPool2d(2, 2))
        else:
            out_ch = int(str(v))
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True)]
            in_ch = out_ch
    return nn.Sequential(*layers)


def _extra_layers(fc7_size: int) -> tuple[nn.ModuleList, list[int]]:
    """The extra feature layers, chosen so the last map is 1x1 for any input size.

    Reproduces the paper: at 300 (fc7 19x19) ``10, 5, 3, 1`` (two stride-2 blocks, then two
    valid 3x3 convs); at 512 (fc7 32x32) ``16, 8, 4, 2, 1`` (stride-2 blocks, then a 4x4 conv).
    Each block is a 1x1 reduction then a 3x3 conv, as in the Caffe SSD.
    """
    blocks = nn.ModuleList()
    out_channels: list[int] = []
    size, in_ch = fc7_size, 1024
    while size > 1:
        mid, out = (256, 512) if not blocks else (128, 256)
        if size == 2:
            conv = nn.Conv2d(mid, out, kernel_size=4, padding=1)
            size = 1
        elif size <= 5 and size % 2 == 1:
            conv = nn.Conv2d(mid, out, kernel_size=3)
            size -= 2
        else:
            conv = nn.Conv2d(mid, out, kernel_size=3, stride=2, padding=1)
            size = (size + 1) // 2
        blocks.append(
            nn.Sequential(
                nn.Conv2d(in_ch, mid, 1), nn.ReLU(inplace=True), conv, nn.ReLU(inplace=True)
            )
        )
        out_channels.append(out)
        in_ch = out
    return blocks, out_channels


class VGG16Backbone(nn.Module):
    """Returns the SSD feature maps: conv4_3 (L2-normalised), fc7, then the extra layers."""

    # ImageNet statistics of torchvision's VGG16 weights, for inputs in [0, 1].
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)

    def __init__(self, input_size: int) -> None:
        super().__init__()
        self.features = _vgg_features()
        self.l2norm = L2Norm(512)
        self.fc = nn.Sequential(
            nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6),  # fc6, atrous
            nn.ReLU(inplace=True),
            nn.Conv2d(1024, 1024, kernel_size=1),  # fc7
            nn.ReLU(inplace=True),
        )
        conv4_3 = _conv4_3_size(input_size)
        fc7 = conv4_3 // 2  # pool4 floors (38 -> 19); pool5 and fc6 keep the size
        self.extras, extra_channels = _extra_layers(fc7)
        self.out_channels = [512, 1024, *extra_channels]
        for m in [*self.fc.modules(), *self.extras.modules()]:
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.features[: CONV4_3_RELU + 1](x)
        feats = [self.l2norm(x)]
        x = self.features[CONV4_3_RELU + 1 :](x)
        x = self.fc(x)
        feats.append(x)
        for block in self.extras:
            x = block(x)
            feats.append(x)
        return feats

    def load_imagenet(self, state_dict: Mapping[str, Tensor]) -> list[str]:
        """Load a torchvision ``vgg16`` state dict; returns the keys that were used.

        ``features.*`` load directly. If ``classifier.0`` / ``classifier.3`` (fc6 / fc7) are
        present they are subsampled into the 1024-channel atrous fc6 and fc7 convs: every
        4th filter, and every 3rd tap of fc6's 7x7 (DeepLab / Caffe SSD "reduced fc").
        """
        feats = {
            k[len("features.") :]: v for k, v in state_dict.items() if k.startswith("features.")
        }
        if not feats:
            raise ValueError(
                "the VGG16 weights file has no 'features.*' keys; expected a torchvision "
                "vgg16 state dict (torchvision.models.vgg16().state_dict())"
            )
        self.features.load_state_dict(feats, strict=True)
        used = [f"features.{k}" for k in feats]
        if "classifier.0.weight" in state_dict and "classifier.3.weight" in state_dict:
            w6 = state_dict["classifier.0.weight"].view(4096, 512, 7, 7)[::4, :, ::3, ::3]
            w7 = state_dict["classifier.3.weight"][::4, ::4]
            fc6, fc7 = self.fc[0], self.fc[2]
            assert isinstance(fc6, nn.Conv2d) and isinstance(fc7, nn.Conv2d)
            assert fc6.bias is not None and fc7.bias is not None
            with torch.no_grad():
                fc6.weight.copy_(w6)
                fc6.bias.copy_(state_dict["classifier.0.bias"][::4])
                fc7.weight.copy_(w7.reshape(1024, 1024, 1, 1))
                fc7.bias.copy_(state_dict["classifier.3.bias"][::4])
            used += [f"classifier.{i}.{p}" for i in (0, 3) for p in ("weight", "bias")]
        return used


def _conv4_3_size(input_size: int) -> int:
    """conv4_3's side: three 2x2 pools, the third in ceil mode (300 -> 150 -> 75 -> 38)."""
    s = input_size // 2
    s = s // 2
    return -(-s // 2)


def _load_pretrained(backbone: nn.Module, weights: str) -> str:
    """ImageNet weights of torchvision's vgg16: a local state dict, or ``torchvision`` (a
    download the user asked for). ``auto``: none (no VGG16 weights ship with a package)."""
    assert isinstance(backbone, VGG16Backbone)
    if weights == "auto":
        return "none (random init)"
    if weights == "torchvision":  # the user asked for a download explicitly
        from torchvision.models import VGG16_Weights, vgg16

        state: Mapping[str, Tensor] = vgg16(weights=VGG16_Weights.IMAGENET1K_V1).state_dict()
    else:
        try:
            state = read_state_dict(weights_path(weights))
        except ModelError:
            raise
        except Exception as err:  # torch.load / safetensors raise many kinds on a bad file
            raise weights_error(weights, err) from None
    try:
        backbone.load_imagenet(state)
    except (ValueError, RuntimeError, KeyError, TypeError, AttributeError) as err:
        raise weights_error(weights, err, "vgg16") from None
    return weights


def _build(input_size: int, fine_map: bool) -> VGG16Backbone:
    if fine_map:
        raise ModelError(
            "model.fine_map is for efficientnet_lite0; vgg16's first map (conv4_3) is "
            "already at stride 8 - set model.fine_map: false (configs/ssd300_vgg16.yaml "
            "has the paper's full SSD300 settings)"
        )
    return VGG16Backbone(input_size)


def _paper_aspect_ratios(num_maps: int) -> list[list[float]]:
    """Paper SSD300/512 (§3.1): {1, 2, 1/2} on the first and the last two maps, {.., 3, 1/3}
    between."""
    return [[2.0] if k == 0 or k >= num_maps - 2 else [2.0, 3.0] for k in range(num_maps)]


SPEC = BackboneSpec(
    name="vgg16",
    module=VGG16Backbone,
    build=_build,
    input_size=300,  # the paper's SSD300
    head="conv",
    min_input_size=128,
    aspect_ratios=_paper_aspect_ratios,
    load_pretrained=_load_pretrained,
)
