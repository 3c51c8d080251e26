"""Loss behaviour a trainer relies on: finite with no positives, clear errors, 3:1 mining."""

from __future__ import annotations

import pytest
import torch

from ssd.model.loss import MultiBoxLoss
from ssd.model.priors import default_boxes

PRIORS = default_boxes([(8, 8), (4, 4), (2, 2), (1, 1)], [0.1, 0.3, 0.5, 0.7, 0.9], [[2.0]] * 4)
A = PRIORS.shape[0]


def make_loss() -> MultiBoxLoss:
    return MultiBoxLoss(PRIORS, (100, 100))


def test_no_ground_truth_gives_finite_zero_loss() -> None:
    logits = torch.randn(2, A, 4, requires_grad=True)
    offsets = torch.randn(2, A, 4, requires_grad=True)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    out = make_loss()(logits, offsets, [empty, empty])
    assert torch.isfinite(out["loss"]) and out["loss"].item() == 0.0
    out["loss"].backward()
    assert torch.isfinite(logits.grad).all()


def test_hard_negative_mining_keeps_three_negatives_per_positive() -> None:
    loss = make_loss()
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 40.0, 40.0]]), "labels": torch.tensor([2])}]
    labels, _ = loss.targets(targets)
    num_pos = int((labels > 0).sum())
    assert num_pos >= 1
    # Build logits where every negative has a different loss; count the negatives used.
    logits = torch.zeros(1, A, 4)
    logits[0, :, 1] = torch.linspace(0, 5, A)  # negatives predicting class 1: rising loss
    logits.requires_grad_(True)
    out = loss(logits, torch.zeros(1, A, 4), targets)
    out["loss"].backward()
    used = (logits.grad[0].abs().sum(dim=1) > 0).sum().item()
    assert used == num_pos + 3 * num_pos


def test_degenerate_box_is_rejected_naming_image_and_box() -> None:
    targets = [
        {
            "boxes": torch.tensor([[10.0, 10.0, 40.0, 40.0]]),
            "labels": torch.tensor([1]),
            "image_id": 7,
        },
        {
            "boxes": torch.tensor([[5.0, 5.0, 30.0, 30.0], [20.0, 20.0, 20.0, 50.0]]),
            "labels": torch.tensor([1, 2]),
            "image_id": 42,
        },
    ]
    with pytest.raises(
        ValueError, match=r"image 42: ground-truth box 1 \[20.0, 20.0, 20.0, 50.0\]"
    ):
        make_loss()(torch.randn(2, A, 4), torch.randn(2, A, 4), targets)


def test_non_finite_box_is_rejected() -> None:
    targets = [
        {"boxes": torch.tensor([[1.0, 1.0, float("nan"), 9.0]]), "labels": torch.tensor([1])}
    ]
    with pytest.raises(ValueError, match="not finite"):
        make_loss()(torch.randn(1, A, 4), torch.randn(1, A, 4), targets)


def test_optimising_the_loss_fits_the_matched_default_boxes() -> None:
    logits = torch.zeros(1, A, 4, requires_grad=True)
    offsets = torch.zeros(1, A, 4, requires_grad=True)
    targets = [{"boxes": torch.tensor([[12.0, 20.0, 60.0, 70.0]]), "labels": torch.tensor([3])}]
    loss = make_loss()
    labels, _ = loss.targets(targets)
    pos = labels[0] > 0
    opt = torch.optim.SGD([logits, offsets], lr=1.0)
    first = loss(logits, offsets, targets)
    for _ in range(50):
        opt.zero_grad()
        out = loss(logits, offsets, targets)
        out["loss"].backward()
        opt.step()
    assert out["loc"].item() < 0.01 * first["loc"].item()
    assert (logits[0, pos].argmax(dim=-1) == 3).all()
