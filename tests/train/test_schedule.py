"""The learning-rate schedule scales its warm-up to the budget: a short run leaves warm-up
and reaches its peak rate (a fixed 100 steps kept a 1-epoch run of 52 steps in warm-up
throughout: test AP 0.0008), while the default job keeps the 100 it was tuned with."""

from __future__ import annotations

import pytest
from stage_code import REPO

from ssd.config import TrainConfig, load_config
from ssd.train.optim import lr_lambda, warmup_steps


def test_the_default_job_keeps_its_100_warm_up_steps() -> None:
    t = load_config(REPO / "params.yaml").train
    steps_per_epoch = 420 // t.batch_size  # 600 synthetic images, 70 % train
    assert t.warmup_steps is None
    assert warmup_steps(t, steps_per_epoch * t.epochs) == 100


@pytest.mark.parametrize(("epochs", "warm"), [(1, 8), (2, 17), (12, 100)])
def test_a_short_run_warms_up_for_its_share_and_reaches_the_peak(epochs: int, warm: int) -> None:
    t = TrainConfig(epochs=epochs, lr=0.02)
    steps = 52 * epochs
    assert warmup_steps(t, steps) == warm
    factor = lr_lambda(t, steps)
    assert factor(0) == pytest.approx(t.warmup_factor)
    peak = max(factor(s) for s in range(steps))
    assert peak > 0.9  # the configured lr, less the cosine decay begun meanwhile
    fixed = lr_lambda(t.model_copy(update={"warmup_steps": 100}), steps)
    if steps < 100:  # what a fixed 100 did to it: never more than half the rate
        assert max(fixed(s) for s in range(steps)) < 0.6


def test_an_explicit_warm_up_is_kept() -> None:
    t = TrainConfig(warmup_steps=100)
    assert warmup_steps(t, 52) == 100  # the user's choice, even when it is the whole run
    assert lr_lambda(t, 52)(51) < 0.6
