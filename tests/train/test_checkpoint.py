"""``--resume`` finds the work and says what it did: each checkpoint is verified before use
(complete, readable without unpickling code, finite), nothing is deleted on the way, and a
setting that differs from the checkpoint's is applied or refused by name, never ignored."""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_train import overrides, tiny_data  # noqa: F401  (tiny_data is a fixture)
from typer.testing import CliRunner

from ssd.cli import app
from ssd.config import load_config
from ssd.errors import TrainingError
from ssd.train.loop import train

BASE = ("train.max_steps=6", "train.checkpoint_every_steps=2", "train.log_every=1")


class _Crash(BaseException):
    """The process dying mid-run (what a SIGKILL or an OOM kill does to it)."""


class CrashAt:
    """A tracker that ends training abruptly once step ``n`` is logged."""

    def __init__(self, n: int) -> None:
        self.n = n

    def log_params(self, params: dict) -> None:
        pass

    def log_metrics(self, metrics: dict, step: int) -> None:
        if step == self.n and "train_loss" in metrics:
            raise _Crash

    def log_artifacts(self, path: Path, artifact_path: str | None = None) -> None:
        pass


@pytest.fixture(scope="module")
def crashed(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """train.out_dir of a run that died at step 5: checkpoints step-2 and step-4."""
    out = tmp_path_factory.mktemp("crashed")
    with pytest.raises(_Crash):
        train(load_config(None, overrides(tiny_data, out, *BASE)), CrashAt(5), progress=False)
    root = out / "tiny" / "checkpoints"
    assert sorted(p.name for p in root.glob("step-*")) == ["step-00000002", "step-00000004"]
    return out


@pytest.fixture
def work(crashed: Path, tmp_path: Path) -> Path:
    """A copy of the crashed run's train.out_dir to break and resume."""
    shutil.copytree(crashed, tmp_path / "out")
    return tmp_path / "out"


def resume(data: Path, out: Path, *extra: str):  # type: ignore[no-untyped-def]
    return train(
        load_config(None, overrides(data, out, *BASE, *extra)), resume=True, progress=False
    )


def steps_logged(out: Path) -> list[list[int]]:
    """The steps with a train_loss, per session (a session starts with its params)."""
    sessions: list[list[int]] = []
    for line in (out / "tiny" / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "params" in record:
            sessions.append([])
        elif "train_loss" in record.get("metrics", {}):
            sessions[-1].append(record["step"])
    return sessions


def lr_at(out: Path, step: int) -> list[float]:
    """The lr each session logged at ``step``."""
    lines = (out / "tiny" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return [r["metrics"]["lr"] for r in records if r.get("step") == step and "lr" in r["metrics"]]


# ----------------------------------------------------------------------------- finding the work


def test_resume_takes_the_newest_complete_checkpoint_when_latest_points_nowhere(
    tiny_data: Path,  # noqa: F811
    work: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = work / "tiny" / "checkpoints"
    shutil.rmtree(root / "step-00000004")  # latest.json now points at a missing folder
    with caplog.at_level(logging.INFO):
        result = resume(tiny_data, work)
    assert steps_logged(work)[-1] == [3, 4, 5, 6]  # continued after step 2, not from scratch
    assert result.steps == 6
    assert "step-00000004, which does not exist" in caplog.text
    assert f"resumed from {root / 'step-00000002'}" in caplog.text


def test_a_resumed_run_reports_the_whole_run_s_training_time(
    tiny_data: Path,  # noqa: F811
    work: Path,
) -> None:
    """The checkpoint carries the time trained so far: after --resume, train_seconds (the
    detector's model.json, MLflow, dvclive) is the whole run's, and the line says both."""
    saved = torch.load(
        work / "tiny" / "checkpoints" / "step-00000004" / "state.pt", weights_only=True
    )
    assert saved["train_seconds"] > 0
    result = resume(tiny_data, work)
    assert result.resumed_at == 4 and result.seconds_here is not None
    assert result.seconds == pytest.approx(saved["train_seconds"] + result.seconds_here, abs=0.1)
    info = json.loads((work / "tiny" / "ssd" / "model.json").read_text())
    assert info["train_seconds"] == round(result.seconds, 1)
    log = (work / "tiny" / "metrics.jsonl").read_text().splitlines()
    logged = [json.loads(line).get("metrics", {}) for line in log]
    assert [m["train_seconds"] for m in logged if "train_seconds" in m] == [info["train_seconds"]]
    assert "of them in this part, resumed at step 4" in result.lines()[0]


@pytest.mark.parametrize("pointer", ["{not json", "[]", ""])
def test_resume_with_a_corrupt_latest_json_takes_the_newest_checkpoint(
    pointer: str,
    tiny_data: Path,  # noqa: F811
    work: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = work / "tiny" / "checkpoints"
    (root / "latest.json").write_text(pointer)
    with caplog.at_level(logging.INFO):
        resume(tiny_data, work, "train.max_steps=5")  # one step is enough to show it
    assert steps_logged(work)[-1] == [5]
    assert "latest.json is unreadable" in caplog.text
    assert f"resumed from {root / 'step-00000004'}" in caplog.text


def _rewrite(checkpoint: Path, name: str, data: bytes) -> None:
    """Replace one file and record its new size, as if it had been written so."""
    (checkpoint / name).write_bytes(data)
    manifest = json.loads((checkpoint / "checkpoint.json").read_text())
    manifest["files"][name] = len(data)
    (checkpoint / "checkpoint.json").write_text(json.dumps(manifest))


def _corrupt(checkpoint: Path, how: str) -> None:
    state = checkpoint / "state.pt"
    if how == "truncated":
        _rewrite(checkpoint, "state.pt", state.read_bytes()[: state.stat().st_size // 2])
    elif how == "pickle":  # a state.pt that needs real unpickling (here a harmless Path)
        torch.save({"step": 4, "optimizer": {}, "scheduler": {}, "x": Path("x")}, state)
        _rewrite(checkpoint, "state.pt", state.read_bytes())
    elif how == "size":  # cut short, the manifest still says the full size
        state.write_bytes(state.read_bytes()[:100])
    elif how == "nan-weights":
        weights = load_file(checkpoint / "model.safetensors")
        first = next(k for k, v in weights.items() if v.is_floating_point())
        weights[first].view(-1)[0] = float("nan")
        save_file(weights, checkpoint / "nan.safetensors")
        _rewrite(checkpoint, "model.safetensors", (checkpoint / "nan.safetensors").read_bytes())
    elif how == "nan-momentum":
        s = torch.load(state, weights_only=True)
        next(iter(s["optimizer"]["state"].values()))["momentum_buffer"].view(-1)[0] = float("inf")
        torch.save(s, state)
        _rewrite(checkpoint, "state.pt", state.read_bytes())


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("truncated", "truncated or damaged"),
        ("size", "were written"),
        ("pickle", "pickled Python objects"),
        ("nan-weights", "inf/NaN values"),
        ("nan-momentum", "inf/NaN values"),
    ],
)
def test_a_damaged_or_nonfinite_checkpoint_is_skipped_for_the_previous_one(
    how: str,
    reason: str,
    tiny_data: Path,  # noqa: F811
    work: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = work / "tiny" / "checkpoints"
    _corrupt(root / "step-00000004", how)
    with caplog.at_level(logging.INFO):
        resume(tiny_data, work, "train.max_steps=3")
    assert steps_logged(work)[-1] == [3]
    assert reason in caplog.text and "weights_only" not in caplog.text
    assert f"resumed from {root / 'step-00000002'}" in caplog.text


@pytest.mark.parametrize(
    ("how", "reason"),
    [("truncated", "truncated or damaged"), ("pickle", "pickled Python objects")],
)
def test_no_usable_checkpoint_is_one_clear_message_and_nothing_is_deleted(
    how: str,
    reason: str,
    tiny_data: Path,  # noqa: F811
    work: Path,
) -> None:
    root = work / "tiny" / "checkpoints"
    for checkpoint in root.glob("step-*"):
        _corrupt(checkpoint, how)
    before = sorted(p.name for p in root.iterdir())
    args = ["train", "--resume", "--no-progress"]
    for s in overrides(tiny_data, work, *BASE):
        args += ["--set", s]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "no usable checkpoint" in result.output and reason in result.output, result.output
    assert "Traceback" not in result.output and "weights_only" not in result.output
    assert sorted(p.name for p in root.iterdir()) == before


# ----------------------------------------------------------------------------- changed settings


def test_a_changed_learning_rate_is_applied_on_resume_and_said(
    tiny_data: Path,  # noqa: F811
    work: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        result = resume(tiny_data, work, "train.lr=0.001", "train.max_steps=7")
    first, second = lr_at(work, 5)  # the crashed run's lr at step 5, then the resumed one's
    assert second == pytest.approx(first / 10 * _cosine_ratio(5, 6, 7))
    assert result.steps == 7  # the longer run (the schedule is recomputed for it)
    assert "train.lr is 0.001, was 0.01" in caplog.text
    assert "train.max_steps is 7, was 6" in caplog.text


def _cosine_ratio(step: int, old_total: int, new_total: int) -> float:
    """lr factor at ``step`` of a cosine schedule over ``new_total`` / over ``old_total``."""
    import math

    def f(total: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * step / total))

    return f(new_total) / f(old_total)


def test_settings_that_cannot_change_within_a_run_are_refused_by_name(
    tiny_data: Path,  # noqa: F811
    work: Path,
) -> None:
    before = sorted(p.name for p in (work / "tiny" / "checkpoints").iterdir())
    with pytest.raises(TrainingError, match=r"train\.batch_size is 4 here but 2") as err:
        resume(tiny_data, work, "train.batch_size=4", "train.seed=1")
    assert "train.seed is 1 here but 0" in str(err.value)
    assert sorted(p.name for p in (work / "tiny" / "checkpoints").iterdir()) == before


# ----------------------------------------------------------------------------- pruning


def test_pruning_keeps_the_newest_of_this_run_and_anything_it_cannot_read(tmp_path: Path) -> None:
    from ssd.train.state import prune

    def folder(step: int, run: str | None) -> Path:
        path = tmp_path / f"step-{step:08d}"
        path.mkdir()
        if run is not None:
            (path / "checkpoint.json").write_text(json.dumps({"step": step, "run": run}))
        return path

    earlier = folder(30, "earlier-run")  # a higher step of a run this one replaced
    unreadable = folder(1, None)  # no checkpoint.json: not verified, so not touched
    ours = [folder(s, "this-run") for s in (2, 4, 6)]
    ahead = folder(8, "this-run")  # beyond the current step (an abandoned branch)
    (tmp_path / "step-00000010.partial").mkdir()  # a save that was killed
    prune(tmp_path, ours[-1], "this-run", keep=2)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [unreadable.name, ours[1].name, ours[2].name, ahead.name]
    assert not earlier.exists()


# ----------------------------------------------------------------------------- disk full


def _file_size_limit(limit: int):  # type: ignore[no-untyped-def]
    def apply() -> None:  # in the child: `ulimit -f`; Python ignores SIGXFSZ, writes fail
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_checkpoint_that_cannot_be_written_is_one_message_and_keeps_the_last(
    tiny_data: Path,  # noqa: F811
    work: Path,
) -> None:
    """`ulimit -f` (as a full disk) in a real `ssd train --resume`: the write of step-6 fails;
    one message, step-6.partial removed, step-4 kept and still resumable."""
    args = [sys.executable, "-m", "ssd.cli", "train", "--resume", "--no-progress"]
    for s in overrides(tiny_data, work, *BASE):
        args += ["--set", s]
    run = subprocess.run(
        args,
        cwd=work,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_file_size_limit(1 << 20),  # 1 MiB: metrics.jsonl fits, weights do not
    )
    root = work / "tiny" / "checkpoints"
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr and "unexpected pos" not in run.stderr, run.stderr
    assert "File too large; training stopped, the half-written files were removed" in run.stderr
    assert f"the last checkpoint, {root / 'step-00000004'}, is kept" in run.stderr
    assert "raise the file size limit (ulimit -f), then continue with `ssd train --resume`" in (
        run.stderr
    )
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("step-")) == [
        "step-00000002",
        "step-00000004",
    ]
    assert json.loads((root / "latest.json").read_text())["checkpoint"] == "step-00000004"


def test_an_out_dir_that_cannot_be_written_is_one_message_before_the_first_step(
    tiny_data: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A folder that cannot be written (here: a file where out_dir's folder must be; a
    read-only mount gives EROFS the same way) stops training before its first step."""
    blocked = tmp_path / "out"
    blocked.mkdir()
    (blocked / "tiny").write_text("not a folder")
    with pytest.raises(TrainingError) as err:
        train(load_config(None, overrides(tiny_data, blocked, *BASE)), progress=False)
    message = str(err.value)
    assert message.startswith(f"cannot write {blocked / 'tiny'}")
    assert "nothing was trained" in message and "run `ssd train` again" in message
