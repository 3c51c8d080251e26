"""EfficientNet-Lite0's frozen layers: BatchNorm folded on the fly, no autograd graph.

With ``train.freeze_stem_blocks`` the stem and first blocks run in eval mode with
``requires_grad`` off; their BatchNorm is then folded into the convolution weights in
each forward (one pass over the feature map instead of two), which must give the numbers
of the plain ``BatchNorm2d`` to float rounding.
"""

from __future__ import annotations

import torch

from ssd.model.backbones.efficientnet_lite import EfficientNetLite0Backbone


def _with_statistics(model: EfficientNetLite0Backbone) -> EfficientNetLite0Backbone:
    model.train()
    with torch.no_grad():  # non-trivial running statistics
        for _ in range(3):
            model(torch.rand(2, 3, 160, 160))
    return model.eval()


def test_eval_without_gradients_folds_batchnorm_to_the_same_numbers() -> None:
    torch.manual_seed(0)
    model = _with_statistics(EfficientNetLite0Backbone(160, fine_map=True))
    x = torch.rand(2, 3, 160, 160)
    plain = model(x)  # parameters need gradients: BatchNorm runs as a module
    with torch.no_grad():
        folded = model(x)
    assert plain[0].grad_fn is not None and folded[0].grad_fn is None
    for a, b in zip(folded, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_frozen_prefix_is_folded_and_builds_no_graph() -> None:
    """Frozen stem + 5 blocks as ``freeze_backbone_parts`` / ``set_train_mode`` leave them
    (eval mode, ``requires_grad`` off): folded, with no autograd graph, so no backward."""
    torch.manual_seed(0)
    model = _with_statistics(EfficientNetLite0Backbone(160, fine_map=True))
    body = model.body
    x = torch.rand(2, 3, 160, 160)

    def prefix() -> torch.Tensor:
        y = body.stem(x)
        for block in body._blocks[:5]:
            y = block(y)
        return y

    want = prefix()  # parameters still trainable: BatchNorm runs as a module
    assert want.grad_fn is not None
    for module in [body._conv_stem, body._bn0, *body._blocks[:5]]:
        module.requires_grad_(False)
    model.train()
    for module in [body._conv_stem, body._bn0, *body._blocks[:5]]:
        module.eval()
    got = prefix()
    assert got.grad_fn is None
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert model(x)[0].grad_fn is not None  # the trainable rest still trains


def test_frozen_prefix_runs_channels_last_and_returns_nchw_maps() -> None:
    """The frozen prefix runs in channels_last on the CPU (forward-only, folded); the maps
    handed to the heads are NCHW again and hold the same numbers. (All BatchNorm on
    running statistics here: batch statistics of 2 images would amplify float rounding.)"""
    torch.manual_seed(0)
    model = _with_statistics(EfficientNetLite0Backbone(160, fine_map=True))
    x = torch.rand(2, 3, 160, 160)
    want = model(x)  # everything trainable: NCHW, BatchNorm as a module
    body = model.body
    for module in [body._conv_stem, body._bn0, *body._blocks[:5]]:
        module.requires_grad_(False)
    assert model._frozen_blocks(x) == 5
    got = model(x)
    for a, b in zip(got, want, strict=True):
        assert a.is_contiguous()
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
