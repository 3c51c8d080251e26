"""Two datasets in one project: every output is keyed by ``data.name``, so training and
evaluating the second never touches the first's models, checkpoints, reports or samples."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ssd import stages
from ssd.cli import app
from ssd.config import load_config

runner = CliRunner()
TINY = [
    "data.num_images=12",
    "data.image_size=128",
    "model.input_size=128",
    "train.epochs=1",
    "train.max_steps=2",
    "train.batch_size=2",
    "train.num_workers=0",
    "train.eval_every=0",
    "train.checkpoint_every_steps=1",
    "evaluate.sample_images=2",
]


def _invoke(*args: str, name: str, extra: tuple[str, ...] = ()) -> str:
    sets = []
    for s in (*TINY, f"data.name={name}", *extra):
        sets += ["--set", s]
    result = runner.invoke(app, [*args, *sets])
    assert result.exit_code == 0, f"{args} {name}: {result.output}"
    return result.output


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _headline(reports: Path) -> dict[str, object]:
    metrics = json.loads((reports / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k != "images_per_second"}


def test_two_datasets_train_and_evaluate_side_by_side(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = dict(os.environ)
    try:
        _invoke("prepare", name="a")
        _invoke("prepare", name="b", extra=("data.seed=1",))
        _invoke("train", "--no-progress", name="a", extra=("tracking.enabled=false",))
        _invoke("evaluate", name="a")
        _invoke("suggest-priors", name="a")
        before = {d: _digest(tmp_path / d / "a") for d in ("models", "reports")}
        before["headline"] = _headline(tmp_path / "reports" / "a")

        _invoke("train", "--no-progress", name="b", extra=("tracking.enabled=false",))
        _invoke("evaluate", name="b")
        _invoke("suggest-priors", name="b")
        _invoke("evaluate", name="a")  # evaluating a again, after b, gives the same report
    finally:
        os.environ.clear()
        os.environ.update(env)

    after = {d: _digest(tmp_path / d / "a") for d in ("models", "reports")}
    assert after["models"] == before["models"]  # detector, best, checkpoints, log
    changed = {k for k in before["reports"] if after["reports"].get(k) != before["reports"][k]}
    assert changed <= {"evaluation.json", "metrics.json"}  # their timings differ, and only they
    assert before["headline"] == _headline(tmp_path / "reports" / "a")
    for name in ("a", "b"):
        assert (tmp_path / "models" / name / "ssd" / "model.safetensors").is_file()
        assert (tmp_path / "models" / name / "checkpoints" / "latest.json").is_file()
        assert (tmp_path / "reports" / name / "priors" / "suggested_priors.json").is_file()
        metrics = json.loads((tmp_path / "reports" / name / "evaluation.json").read_text())
        assert metrics["dataset"] == f"data/prepared/{name}"
        samples = list((tmp_path / "reports" / name / "samples").iterdir())
        assert len(samples) == 2
    a = json.loads((tmp_path / "data/prepared/a/test.json").read_text())
    b = json.loads((tmp_path / "data/prepared/b/test.json").read_text())
    assert a["annotations"] != b["annotations"]  # really two datasets


@pytest.mark.parametrize("name", ["a"])
def test_register_library_function_writes_registry_json(tmp_path: Path, monkeypatch, name) -> None:
    """The stage's library function writes the stage's output (so a Prefect flow does too)."""
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, [*TINY, f"data.name={name}", "tracking.enabled=false"])
    result = stages.register(cfg)
    assert json.loads(cfg.layout.registry.read_text()) == result
    assert result["model_uri"] is None and "tracking.enabled is false" in result["reason"]
