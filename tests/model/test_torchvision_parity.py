"""Our SSD pieces give the same numbers as torchvision's reference implementation."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import ssd300_vgg16
from torchvision.models.detection._utils import BoxCoder, SSDMatcher
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_convert, box_iou

from ssd.model.boxes import decode, encode
from ssd.model.loss import MultiBoxLoss
from ssd.model.matching import match, pad_targets
from ssd.model.postprocess import PostProcessor
from ssd.model.priors import default_boxes

# torchvision's ssd300_vgg16 default boxes (torchvision/models/detection/ssd.py)
TV_RATIOS = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
TV_SCALES = [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05]
TV_STEPS = [8, 16, 32, 64, 100, 300]
MAPS = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
NUM_CLASSES = 5  # without background


@pytest.fixture(scope="module")
def tv_priors() -> torch.Tensor:
    """torchvision's SSD300 default boxes, (cx, cy, w, h) normalised."""
    gen = DefaultBoxGenerator(TV_RATIOS, scales=TV_SCALES, steps=TV_STEPS)
    images = ImageList(torch.zeros(1, 3, 300, 300), [(300, 300)])
    feats = [torch.zeros(1, 1, h, w) for h, w in MAPS]
    xyxy = gen(images, feats)[0] / 300.0
    return box_convert(xyxy, "xyxy", "cxcywh")


@pytest.fixture(scope="module")
def tv_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return ssd300_vgg16(weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1).eval()


def random_targets(n: int, gen: torch.Generator, size: int = 300) -> list[dict[str, torch.Tensor]]:
    out = []
    for i in range(n):
        k = 1 + i % 5
        xy = torch.rand(k, 2, generator=gen) * size * 0.7
        wh = 8 + torch.rand(k, 2, generator=gen) * size * 0.3
        boxes = torch.cat([xy, (xy + wh).clamp(max=size)], dim=1)
        labels = torch.randint(1, NUM_CLASSES + 1, (k,), generator=gen)
        out.append({"boxes": boxes, "labels": labels})
    return out


def test_default_boxes_match_torchvision_generator(tv_priors: torch.Tensor) -> None:
    ours = default_boxes(MAPS, TV_SCALES, TV_RATIOS, TV_STEPS, (300, 300), clip="size")
    assert ours.shape == (8732, 4)
    torch.testing.assert_close(ours, tv_priors, atol=1e-6, rtol=0)


def test_matching_and_encoding_equal_ssdmatcher_and_boxcoder(tv_priors: torch.Tensor) -> None:
    gen = torch.Generator().manual_seed(1)
    targets = random_targets(6, gen)
    boxes = [t["boxes"] / 300.0 for t in targets]
    gt, _, valid = pad_targets(boxes, [t["labels"] for t in targets])
    ours = match(gt, valid, tv_priors, 0.5)

    # IoU in the same (normalised) units as ours: exact ties between default boxes exist,
    # and pixel-unit rounding would break them differently.
    anchors_norm = box_convert(tv_priors, "cxcywh", "xyxy")
    anchors = anchors_norm * 300.0
    matcher = SSDMatcher(0.5)
    coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    for i, t in enumerate(targets):
        ref = matcher(box_iou(t["boxes"] / 300.0, anchors_norm))
        assert torch.equal(ours[i], ref), f"image {i}: matched indices differ"
        fg = ref >= 0
        ref_offsets = coder.encode_single(t["boxes"][ref[fg]], anchors[fg])
        our_offsets = encode(gt[i][ours[i][fg]], tv_priors[fg])
        torch.testing.assert_close(our_offsets, ref_offsets, atol=1e-4, rtol=1e-4)
        # and decoding inverts encoding
        torch.testing.assert_close(
            decode(our_offsets, tv_priors[fg]), gt[i][ours[i][fg]], atol=1e-5, rtol=0
        )


def test_loss_equals_torchvision_compute_loss(
    tv_model: torch.nn.Module, tv_priors: torch.Tensor
) -> None:
    gen = torch.Generator().manual_seed(2)
    n = 4
    targets = random_targets(n, gen)
    logits = torch.randn(n, 8732, NUM_CLASSES + 1, generator=gen) * 2
    offsets = torch.randn(n, 8732, 4, generator=gen)

    anchors_norm = box_convert(tv_priors, "cxcywh", "xyxy")
    anchors = anchors_norm * 300.0
    matched = [
        tv_model.proposal_matcher(box_iou(t["boxes"] / 300.0, anchors_norm)) for t in targets
    ]
    ref = tv_model.compute_loss(
        targets, {"cls_logits": logits, "bbox_regression": offsets}, [anchors] * n, matched
    )
    ours = MultiBoxLoss(tv_priors, (300, 300))(logits, offsets, targets)
    torch.testing.assert_close(ours["loc"], ref["bbox_regression"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours["conf"], ref["classification"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        ours["loss"], ref["bbox_regression"] + ref["classification"], atol=1e-5, rtol=1e-5
    )


def test_postprocess_equals_torchvision(tv_model: torch.nn.Module, tv_priors: torch.Tensor) -> None:
    gen = torch.Generator().manual_seed(3)
    n = 3
    logits = torch.randn(n, 8732, NUM_CLASSES + 1, generator=gen) * 3
    offsets = torch.randn(n, 8732, 4, generator=gen) * 0.5
    anchors = box_convert(tv_priors, "cxcywh", "xyxy") * 300.0
    ref = tv_model.postprocess_detections(
        {"cls_logits": logits, "bbox_regression": offsets}, [anchors] * n, [(300, 300)] * n
    )
    ours = PostProcessor(tv_priors)(logits, offsets, [(300, 300)] * n)
    for i in range(n):
        assert len(ours[i]["scores"]) == len(ref[i]["scores"]) > 0
        torch.testing.assert_close(ours[i]["scores"], ref[i]["scores"], atol=1e-6, rtol=0)
        assert torch.equal(ours[i]["labels"], ref[i]["labels"])
        torch.testing.assert_close(ours[i]["boxes"], ref[i]["boxes"], atol=1e-3, rtol=0)
