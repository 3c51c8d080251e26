"""The weight EMA (train.ema): the average itself, and that training saves, validates with
and resumes it (the bit-exact resume with an EMA is in tests/train/test_train.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train import overrides, tiny_data  # noqa: F401  (tiny_data is a fixture)
from torch import nn

from ssd.config import load_config
from ssd.train.ema import ema_decay, weight_ema
from ssd.train.loop import train


def test_decay_is_a_share_of_the_budget() -> None:
    assert ema_decay(0.05, 2000) == pytest.approx(1 - 1 / 100)
    assert ema_decay(0.05, 600) == pytest.approx(1 - 1 / 30)
    assert ema_decay(0.05, 10) == 0.0  # shorter than one step: the average is the model


def test_the_average_follows_the_formula_over_parameters_and_buffers() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    ema = weight_ema(model, span=0.5, total_steps=100)  # decay 0.98
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for n in range(30):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[1].running_mean.add_(1.0)
            model[1].num_batches_tracked.add_(1)
        ema.update_parameters(model)
        d = 0.0 if n == 0 else min(0.98, (1 + n) / (10 + n))  # the first update copies
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                expected[k] = d * expected[k] + (1 - d) * v
            else:
                expected[k] = v.clone()
    got = ema.module.state_dict()
    for k, v in expected.items():
        assert torch.allclose(got[k], v, atol=1e-5), k
    assert got["1.num_batches_tracked"] == 30  # counters follow the model
    # the average lags the model: it is not a copy of it
    assert not torch.allclose(got["0.weight"], model.state_dict()["0.weight"])
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())


def test_training_with_ema_saves_and_validates_the_average(
    tiny_data: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    sets = overrides(
        tiny_data,
        tmp_path,
        "train.ema=true",
        "train.ema_span=0.5",
        "train.eval_every=1",
        "train.freeze_stem_blocks=2",
    )
    result = train(load_config(None, sets), progress=False)
    out = tmp_path / "tiny"
    final = load_file(out / "ssd" / "model.safetensors")
    # the last checkpoint holds the raw weights at the same step (for --resume)
    (last,) = sorted((out / "checkpoints").glob("step-*"))[-1:]
    raw = load_file(last / "model.safetensors")
    state = torch.load(last / "state.pt", weights_only=True)
    averaged = {k.removeprefix("module."): v for k, v in state["ema"].items() if k != "n_averaged"}
    assert final.keys() == raw.keys()
    for k in final:
        assert torch.equal(final[k], averaged[k]), f"{k}: the final detector is not the average"
    trained = [k for k in final if "head" in k and k.endswith("weight")]
    assert trained and all(not torch.equal(final[k], raw[k]) for k in trained)
    frozen = [k for k in final if "_conv_stem" in k]
    assert frozen and all(torch.equal(final[k], raw[k]) for k in frozen)
    assert int(state["ema"]["n_averaged"]) == result.steps
    # best/ comes from the same (averaged) weights validation scored
    assert (out / "best" / "model.safetensors").is_file()


def test_a_nonfinite_average_is_never_checkpointed(tmp_path: Path) -> None:
    from ssd.config import ModelConfig
    from ssd.train.state import NonFiniteError, TrainState, save_checkpoint

    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    state = TrainState(
        model,  # type: ignore[arg-type]
        opt,
        torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0),
        torch.amp.GradScaler("cuda", enabled=False),
        weight_ema(model, 0.5, 10),
    )
    with torch.no_grad():
        state.ema.module.weight[0, 0] = float("nan")  # type: ignore[union-attr, index]
    with pytest.raises(NonFiniteError, match="weight"):
        save_checkpoint(tmp_path, state, ModelConfig(), ["a"], {})
    assert not any(tmp_path.iterdir())
