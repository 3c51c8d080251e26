"""Training a user can trust: resumable after SIGKILL, DDP-consistent, NaN-safe, tracked."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ssd.config import load_config
from ssd.data.prepare import prepare_dataset
from ssd.train import TrainingError, train

SSD = [sys.executable, "-m", "ssd.cli"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prepared")
    cfg = load_config(
        None,
        [
            f"data.prepared_root={root}",
            "data.name=tiny",
            "data.num_images=24",
            "data.image_size=128",
        ],
    )
    return prepare_dataset(cfg.data).out_dir


def overrides(data: Path, out: Path, *extra: str) -> list[str]:
    base = [
        f"data.prepared_root={data.parent}",
        f"data.name={data.name}",
        "model.input_size=128",
        "train.batch_size=2",
        "train.num_workers=0",
        "train.epochs=2",
        "train.max_steps=8",
        "train.eval_every=0",
        "train.warmup_steps=2",
        f"train.out_dir={out}",
        "tracking.enabled=false",
    ]
    return base + list(extra)


def run_cli(args: list[str], cwd: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [*SSD, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def cli_args(sets: list[str]) -> list[str]:
    out = ["train", "--no-progress"]
    for s in sets:
        out += ["--set", s]
    return out


def test_resume_after_sigkill_equals_uninterrupted_run(tiny_data: Path, tmp_path: Path) -> None:
    sets_a = overrides(tiny_data, tmp_path / "a", "train.checkpoint_every_steps=2")
    a = run_cli(cli_args(sets_a), tmp_path)
    out_a, _ = a.communicate(timeout=600)
    assert a.returncode == 0, out_a

    sets_b = overrides(tiny_data, tmp_path / "b", "train.checkpoint_every_steps=2")
    b = run_cli(cli_args(sets_b), tmp_path)
    pointer = tmp_path / "b" / "tiny" / "checkpoints" / "latest.json"
    deadline = time.time() + 300
    while time.time() < deadline and b.poll() is None:
        if pointer.is_file() and json.loads(pointer.read_text())["step"] >= 2:
            break
        time.sleep(0.05)
    assert b.poll() is None, "the run finished before it could be killed"
    b.send_signal(signal.SIGKILL)
    b.wait()
    assert not (
        tmp_path / "b" / "tiny" / "ssd" / "model.safetensors"
    ).exists()  # really interrupted

    c = run_cli([*cli_args(sets_b), "--resume"], tmp_path)
    out_c, _ = c.communicate(timeout=600)
    assert c.returncode == 0, out_c
    wa = load_file(tmp_path / "a" / "tiny" / "ssd" / "model.safetensors")
    wc = load_file(tmp_path / "b" / "tiny" / "ssd" / "model.safetensors")
    assert wa.keys() == wc.keys()
    for k in wa:
        assert torch.equal(wa[k], wc[k]), f"{k} differs after resume"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ddp_worker(rank: int, world: int, port: int, sets: list[str], out: str) -> None:
    os.environ.update(
        {
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    torch.set_num_threads(1)
    cfg = load_config(None, sets)
    result = train(cfg, progress=False)
    from safetensors.torch import save_file

    save_file(
        {k: v.contiguous() for k, v in result.model.state_dict().items()},
        f"{out}/rank{rank}.safetensors",
    )


def test_ddp_two_cpu_processes_end_with_identical_weights(tiny_data: Path, tmp_path: Path) -> None:
    sets = overrides(tiny_data, tmp_path / "ddp", "train.max_steps=3")
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), sets, str(tmp_path)), nprocs=2)
    w0 = load_file(tmp_path / "rank0.safetensors")
    w1 = load_file(tmp_path / "rank1.safetensors")
    for k in w0:
        assert torch.equal(w0[k], w1[k]), f"{k} differs between ranks"
    assert (tmp_path / "ddp" / "tiny" / "ssd" / "model.safetensors").is_file()  # rank 0 saved


def test_nonfinite_losses_stop_with_the_likely_causes(tiny_data: Path, tmp_path: Path) -> None:
    cfg = load_config(
        None,
        overrides(
            tiny_data,
            tmp_path / "nan",
            "train.lr=1e30",
            "train.warmup_steps=0",
            "train.max_nonfinite=3",
            "train.grad_clip=null",
        ),
    )
    with pytest.raises(TrainingError, match="non-finite losses in a row") as err:
        train(cfg, progress=False)
    assert "learning rate" in str(err.value)
    assert not (tmp_path / "nan" / "tiny" / "ssd").exists()  # no NaN weights written as the result
    log = [
        json.loads(line)
        for line in (tmp_path / "nan" / "tiny" / "metrics.jsonl").read_text().splitlines()
    ]
    assert any(r.get("metrics", {}).get("nonfinite_steps", 0) >= 1 for r in log)


def test_unreachable_tracking_server_warns_and_training_finishes(
    tiny_data: Path, tmp_path: Path
) -> None:
    sets = overrides(
        tiny_data,
        tmp_path / "t",
        "train.max_steps=2",
        "tracking.enabled=true",
        f"tracking.tracking_uri=http://127.0.0.1:{_free_port()}",
    )
    p = run_cli(cli_args(sets), tmp_path)
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
    assert out.count("is unreachable; training continues") == 1
    assert (tmp_path / "t" / "tiny" / "ssd" / "model.safetensors").is_file()
    assert (
        "train_loss" in (tmp_path / "t" / "tiny" / "metrics.jsonl").read_text()
        or "epoch_loss" in (tmp_path / "t" / "tiny" / "metrics.jsonl").read_text()
    )


def test_mlflow_run_has_params_metrics_provenance_and_a_loadable_model(
    tiny_data: Path, tmp_path: Path
) -> None:
    import mlflow
    import pandas as pd

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sets = overrides(
        tiny_data,
        tmp_path / "m",
        "train.max_steps=2",
        "train.log_every=1",
        "tracking.enabled=true",
        f"tracking.tracking_uri={uri}",
    )
    p = run_cli(cli_args(sets), tmp_path)
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("ssd")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.params["train.lr"] == "0.01"
    assert "train_loss" in run.data.metrics and "epoch_loss" in run.data.metrics
    assert len(run.data.tags["dataset_fingerprint"]) == 16
    assert "git_commit" in run.data.tags
    models = mlflow.search_logged_models(experiment_ids=[exp.experiment_id], output_format="list")
    model = mlflow.pyfunc.load_model(models[0].model_uri)
    images = json.loads((tiny_data / "test.json").read_text())["images"][:2]
    table = model.predict(
        pd.DataFrame({"image": [str(tiny_data / i["file_name"]) for i in images]})
    )
    assert list(table.columns) == ["image", "label", "score", "x1", "y1", "x2", "y2"]
    assert set(table["label"]) <= set(json.loads((tiny_data / "classes.json").read_text()))


def test_frozen_stem_blocks_keep_imagenet_weights_and_statistics(
    tiny_data: Path, tmp_path: Path
) -> None:
    from ssd.builder import build_model

    sets = overrides(
        tiny_data,
        tmp_path / "frozen",
        "train.freeze_stem_blocks=5",
        "model.fine_map=true",  # trains end to end with the stride-8 map as well
        "model.priors.first_scale=0.05",
        "model.priors.min_scale=0.1",
    )
    cfg = load_config(None, sets)
    train(cfg, progress=False)
    trained = load_file(tmp_path / "frozen" / "tiny" / "ssd" / "model.safetensors")
    start = build_model(cfg.model, num_classes=6).state_dict()  # ImageNet backbone
    frozen = (
        "backbone.body._conv_stem.",
        "backbone.body._bn0.",
        *(f"backbone.body._blocks.{i}." for i in range(5)),
    )
    frozen_keys = [k for k in trained if k.startswith(frozen)]
    assert any("running_mean" in k for k in frozen_keys)
    for k in frozen_keys:
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(trained[k], start[k]), f"{k} changed though frozen"
    block5 = "backbone.body._blocks.5._expand_conv.weight"
    assert not torch.equal(trained[block5], start[block5])  # the rest trains
