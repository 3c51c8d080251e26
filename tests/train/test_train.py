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
from ssd.errors import TrainingError
from ssd.train.loop import train

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


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _epoch_losses(out: Path) -> list[float]:
    return [
        r["metrics"]["epoch_loss"] for r in _records(out) if "epoch_loss" in r.get("metrics", {})
    ]


RESUMED = ["train.checkpoint_every_steps=2", "train.ema=true", "train.ema_span=0.5"]


@pytest.fixture(scope="module")
def uninterrupted(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/tiny of a run that nothing interrupted (checkpoints every 2 steps), with a
    weight EMA: the saved detector is the average, so resuming must restore it too."""
    out = tmp_path_factory.mktemp("uninterrupted")
    a = run_cli(cli_args(overrides(tiny_data, out, *RESUMED)), out)
    log, _ = a.communicate(timeout=600)
    assert a.returncode == 0, log
    return out / "tiny"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_resume_after_a_kill_or_stop_signal_equals_uninterrupted_run(
    sig: signal.Signals, uninterrupted: Path, tiny_data: Path, tmp_path: Path
) -> None:
    """SIGKILL: resume from the last periodic checkpoint. SIGTERM / SIGINT (a scheduler,
    Prefect, docker stop, Ctrl-C): stop at the next step boundary with a checkpoint, end the
    MLflow run as KILLED (checked with SIGTERM), exit 128 + signal. Either way --resume
    ends bit-exact, with the same epoch averages."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracked = sig == signal.SIGTERM  # MLflow's start-up costs seconds: one signal shows it
    tracking = ["tracking.enabled=true", f"tracking.tracking_uri={uri}"] if tracked else []
    sets_b = overrides(tiny_data, tmp_path / "b", *RESUMED)
    b = run_cli(cli_args(sets_b + tracking), tmp_path)
    pointer = tmp_path / "b" / "tiny" / "checkpoints" / "latest.json"
    deadline = time.time() + 300
    while time.time() < deadline and b.poll() is None:
        if pointer.is_file() and json.loads(pointer.read_text())["step"] >= 2:
            break
        time.sleep(0.05)
    assert b.poll() is None, "the run finished before it could be stopped"
    b.send_signal(sig)
    out_b, _ = b.communicate(timeout=300)
    assert not (tmp_path / "b" / "tiny" / "ssd" / "model.safetensors").exists()  # interrupted
    if sig != signal.SIGKILL:
        assert b.returncode == 128 + sig, out_b
        assert f"stopped by {sig.name}" in out_b and "Traceback" not in out_b, out_b
        stopped_at = json.loads(pointer.read_text())["step"]
        assert f"at step {stopped_at};" in out_b  # the checkpoint is the stop's own
    if tracked:
        import mlflow

        mlflow.set_tracking_uri(uri)
        client = mlflow.MlflowClient()
        (run,) = client.search_runs([client.get_experiment_by_name("ssd").experiment_id])
        assert run.info.status == "KILLED" and run.info.end_time is not None

    c = run_cli([*cli_args(sets_b), "--resume"], tmp_path)
    out_c, _ = c.communicate(timeout=600)
    assert c.returncode == 0, out_c
    assert "resumed from" in out_c
    wa = load_file(uninterrupted / "ssd" / "model.safetensors")
    wc = load_file(tmp_path / "b" / "tiny" / "ssd" / "model.safetensors")
    assert wa.keys() == wc.keys()
    for k in wa:
        assert torch.equal(wa[k], wc[k]), f"{k} differs after resume"
    # the resumed epoch's averages cover the steps before the interruption too
    assert _epoch_losses(tmp_path / "b" / "tiny")[-1] == _epoch_losses(uninterrupted)[-1]


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


def _nonfinite(path: Path) -> dict[str, int]:
    """inf/NaN counts of a checkpoint's weights and optimizer state."""
    state = torch.load(path / "state.pt", weights_only=True)["optimizer"]["state"]
    tensors = dict(load_file(path / "model.safetensors"))
    tensors |= {f"{i}.{k}": v for i, s in state.items() for k, v in s.items()}
    bad = {k: int((~torch.isfinite(v)).sum()) for k, v in tensors.items() if v.is_floating_point()}
    return {k: n for k, n in bad.items() if n}


def test_weights_that_go_nonfinite_are_never_saved_and_the_run_fails(
    tiny_data: Path, tmp_path: Path
) -> None:
    """lr 1e6 blows up BatchNorm's running statistics while every loss stays finite: no
    checkpoint, best/ or detector may hold them, the run exits non-zero with the likely
    causes, and the last finite checkpoint survives (pruning never takes it)."""
    sets = overrides(
        tiny_data,
        tmp_path / "x",
        "train.lr=1e6",
        "train.batch_size=4",
        "train.checkpoint_every_steps=1",
    )
    p = run_cli(cli_args(sets), tmp_path)
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 1, out
    assert "non-finite" in out and "train.lr=1000000" in out and "Traceback" not in out, out
    models = tmp_path / "x" / "tiny"
    assert not (models / "ssd").exists() and not (models / "best").exists()
    kept = sorted((models / "checkpoints").glob("step-*"))
    assert kept, "the last finite checkpoint was pruned"
    for path in kept:
        assert not _nonfinite(path), path
    latest = json.loads((models / "checkpoints" / "latest.json").read_text())["checkpoint"]
    assert (models / "checkpoints" / latest) == kept[-1]
    assert f"{kept[-1]}, is kept" in out


class _NanLossAt(torch.nn.Module):
    """The loss, made NaN on the given calls (1-based): a bad batch."""

    def __init__(self, inner: torch.nn.Module, bad: set[int]) -> None:
        super().__init__()
        self.inner, self.bad, self.calls = inner, bad, 0

    def forward(self, *args):  # type: ignore[no-untyped-def]
        out = self.inner(*args)
        self.calls += 1
        if self.calls in self.bad:
            out = {**out, "loss": out["loss"] * float("nan")}
        return out


def test_epoch_averages_are_over_the_finite_steps_only(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ssd.train.loop

    real = ssd.train.loop.build_loss
    monkeypatch.setattr(ssd.train.loop, "build_loss", lambda m, t: _NanLossAt(real(m, t), {3, 6}))
    cfg = load_config(None, overrides(tiny_data, tmp_path / "avg", "train.log_every=1"))
    result = train(cfg, progress=False)
    assert result.nonfinite_steps == 2
    records = _records(tmp_path / "avg" / "tiny")
    steps = [r["metrics"] for r in records if "train_loss" in r.get("metrics", {})]
    assert len(steps) == 6  # 8 steps, 2 skipped
    (epoch,) = [r["metrics"] for r in records if "epoch_loss" in r.get("metrics", {})]
    for part in ("loss", "loc", "conf"):
        mean = sum(m[f"train_{part}"] for m in steps) / len(steps)
        assert epoch[f"epoch_{part}"] == pytest.approx(mean, rel=1e-12)


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


@pytest.fixture(scope="module")
def tracked_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`ssd train` against a real sqlite-backed MLflow."""
    tmp = tmp_path_factory.mktemp("tracked")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    sets = overrides(
        tiny_data,
        tmp / "m",
        "train.max_steps=2",
        "train.log_every=1",
        "tracking.enabled=true",
        f"tracking.tracking_uri={uri}",
    )
    p = run_cli(cli_args(sets), tmp)
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
    return {"uri": uri, "model_dir": tmp / "m" / "tiny" / "ssd", "tmp": tmp}


def test_mlflow_run_has_params_metrics_provenance_dataset_and_a_loadable_model(
    tiny_data: Path, tracked_run: dict
) -> None:
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(tracked_run["uri"])
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("ssd")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.params["train.lr"] == "0.01"
    # derived values as the run used them, not the config's null
    assert run.data.params["model.input_size"] == "128"
    assert run.data.params["model.num_classes"] == "6"
    assert run.data.params["model.head"] == "ssdlite"
    # the UI opens the experiment on its training runs, not its GenAI page
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "train_loss" in run.data.metrics and "epoch_loss" in run.data.metrics
    assert len(run.data.tags["dataset_fingerprint"]) == 16
    assert "git_commit" in run.data.tags
    # the prepared dataset is the run's input, with its content fingerprint as digest
    (given,) = run.inputs.dataset_inputs
    assert given.dataset.name == "tiny"
    assert given.dataset.digest == run.data.tags["dataset_fingerprint"]
    assert [t.value for t in given.tags if t.key == "mlflow.data.context"] == ["training"]
    # the detector folder names its training run, for `ssd register`
    run_file = json.loads((tracked_run["model_dir"] / "mlflow_run.json").read_text())
    assert run_file == {"run_id": run.info.run_id}
    models = mlflow.search_logged_models(experiment_ids=[exp.experiment_id], output_format="list")
    assert [m.name for m in models] == ["trained"] and "ssd register" in models[0].tags["ssd.note"]
    model = mlflow.pyfunc.load_model(models[0].model_uri)
    images = json.loads((tiny_data / "test.json").read_text())["images"][:2]
    table = model.predict(
        pd.DataFrame({"image": [str(tiny_data / i["file_name"]) for i in images]})
    )
    assert list(table.columns) == ["image", "label", "score", "x1", "y1", "x2", "y2"]
    assert set(table["label"]) <= set(json.loads((tiny_data / "classes.json").read_text()))


def test_dvclive_writes_the_curves_and_summary_dvc_yaml_declares(tracked_run: dict) -> None:
    """Loss parts, learning rate and images/s per logged step, epoch averages per epoch,
    under models/<name>/live where dvc.yaml's plots and metrics point."""
    live = tracked_run["model_dir"].parent / "live"
    summary = json.loads((live / "metrics.json").read_text())
    assert set(summary) == {"step", "train_seconds"}  # few columns in dvc exp show
    assert summary["train_seconds"] > 0 and summary["step"] == 2
    for curve in ("train_loss", "train_loc", "train_conf", "lr", "epoch_loss"):
        assert (live / "plots" / "metrics" / f"{curve}.tsv").is_file(), curve
    rows = (live / "plots" / "metrics" / "train_loss.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["step", "train_loss"]
    assert [int(r.split("\t")[0]) for r in rows[1:]] == [1, 2]  # train.log_every=1, 2 steps
    assert not (live / "plots" / "metrics" / "train_seconds.tsv").exists()  # a summary only
    dvc_yaml = (Path(__file__).parents[2] / "dvc.yaml").read_text()
    assert "${train.out_dir}/${data.name}/live/plots/metrics/train_loss.tsv: train_loss" in dvc_yaml


def test_threads_follow_the_machine_not_its_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default thread count is the cores this process may use (shared among torchrun's
    local processes), whatever else runs: the same weights on a busy or a quiet machine."""
    import ssd.train.runtime as ssd_train
    from ssd.config import TrainConfig

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(2)))
    quiet = ssd_train.fit_threads(TrainConfig())
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # a core taken
    try:
        time.sleep(1.0)
        assert ssd_train.fit_threads(TrainConfig()) == quiet
    finally:
        busy.kill()
        busy.wait()
    assert quiet == min(2, ssd_train.available_cores())
    assert ssd_train.fit_threads(TrainConfig(num_threads=3)) == 3  # as configured
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(16)))
    monkeypatch.setattr(ssd_train, "available_cores", lambda: 16)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun --nproc-per-node 4
    assert ssd_train.fit_threads(TrainConfig()) == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # set by the user: kept, as PyTorch read it
    assert ssd_train.fit_threads(TrainConfig()) == torch.get_num_threads()


def test_the_thread_count_used_is_recorded_with_the_run(tiny_data: Path, tmp_path: Path) -> None:
    cfg = load_config(
        None, overrides(tiny_data, tmp_path, "train.max_steps=1", "train.num_threads=1")
    )
    train(cfg, progress=False)
    params = _records(tmp_path / "tiny")[0]["params"]
    assert params["train.num_threads_used"] == 1


def test_register_gates_links_to_the_training_run_and_moves_the_champion_on_improvement(
    tiny_data: Path, tracked_run: dict
) -> None:
    """Versions below tracking.register_min are not registered, below champion_min never
    champion; each registered version points at the run that trained it, with the decision
    in a child run; the alias moves only beyond champion_min_delta; registering the same
    detector with the same settings again is a no-op that names the version; the champion
    predicts from a data: URI with a per-call score threshold, without MLflow's type-hint
    warning."""
    import warnings

    import mlflow
    import pandas as pd

    from ssd.data.prepared import PreparedSplit
    from ssd.integrations.mlflow_model import image_data_uri
    from ssd.integrations.registry import Policy, register_detector

    uri, model_dir, tmp = tracked_run["uri"], tracked_run["model_dir"], tracked_run["tmp"]
    train_id = json.loads((model_dir / "mlflow_run.json").read_text())["run_id"]
    split = PreparedSplit.load(tiny_data, "test")
    policy = Policy(metric="map", min_delta=0.001, register_min=0.01, champion_min=0.1)

    (tmp / "plots").mkdir(exist_ok=True)
    (tmp / "plots" / "confusion_matrix.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp / "evaluation.json").write_text('{"split": "test"}')

    def reg(value: float, nms: float) -> dict:
        """Register with ``value`` as map; a new ``nms`` makes it another version."""
        metrics = tmp / "metrics.json"
        metrics.write_text(json.dumps({"map": value, "map50": value}))
        return register_detector(
            model_dir,
            metrics,
            split,
            tmp / "registry.json",
            tracking_uri=uri,
            model_name="ssd-tiny",
            policy=policy,
            postprocess={"nms_threshold": nms},
        )

    below = reg(0.005, 0.4)
    assert below["version"] is None and "below tracking.register_min 0.01" in below["reason"]
    assert json.loads((tmp / "registry.json").read_text())["version"] is None
    weak = reg(0.05, 0.41)  # a smoke run: registered, never the champion
    assert (weak["version"], weak["champion"]) == (1, False)
    assert "below tracking.champion_min 0.1" in weak["reason"]
    first, tie, better = reg(0.30, 0.42), reg(0.3005, 0.43), reg(0.40, 0.44)
    assert (first["version"], first["champion"]) == (2, True)
    assert (tie["version"], tie["champion"]) == (3, False)
    assert "does not beat the champion's 0.3000 by more than 0.001" in tie["reason"]
    assert (better["version"], better["champion"]) == (4, True)
    assert better["previous_champion_version"] == 2
    again = reg(0.40, 0.44)  # ssd register run twice: the same version, named
    assert (again["version"], again["champion"]) == (4, True)
    assert again["reason"].startswith("already version 4")

    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    assert int(client.get_model_version_by_alias("ssd-tiny", "champion").version) == 4
    versions = client.search_model_versions("name='ssd-tiny'")
    assert len(versions) == 4
    for v in versions:
        assert v.run_id == train_id and v.tags["run_id"] == train_id
    exp = client.get_experiment_by_name("ssd")
    children = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{train_id}'"
    )
    assert len(children) == 4 and {c.info.run_name for c in children} == {"register-tiny"}
    # the training run's logged models: "trained" and one "registered" per version, each
    # naming its registered version; the settings keep their postprocess. prefix
    models = mlflow.search_logged_models(experiment_ids=[exp.experiment_id], output_format="list")
    names = sorted(m.name for m in models)
    assert names == ["registered"] * 4 + ["trained"]
    registered = [m for m in models if m.name == "registered"]
    assert all("ssd-tiny" in m.tags["mlflow.modelVersions"] for m in registered)
    assert client.get_run(train_id).data.params["postprocess.nms_threshold"] == "0.41"
    logged = {a.path for a in client.list_artifacts(children[0].info.run_id, "evaluation")}
    assert logged == {"evaluation/evaluation.json", "evaluation/plots"}

    image = tiny_data / json.loads((tiny_data / "test.json").read_text())["images"][0]["file_name"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = mlflow.pyfunc.load_model("models:/ssd-tiny@champion")
        frame = pd.DataFrame({"image": [image_data_uri(image)]})
        everything = model.predict(frame, params={"score_threshold": 0.0})
        confident = model.predict(frame, params={"score_threshold": 0.99})
    assert not [w for w in caught if "type hint" in str(w.message).lower()]
    assert list(everything.columns) == ["image", "label", "score", "x1", "y1", "x2", "y2"]
    assert len(everything) > 0 and (everything["score"] >= 0.0).all()
    assert len(confident) <= len(everything) and (confident["score"] >= 0.99).all()


def test_frozen_stem_blocks_keep_imagenet_weights_and_statistics(
    tiny_data: Path, tmp_path: Path
) -> None:
    from ssd.model.builder import build_model

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


def test_a_run_shorter_than_log_every_still_logs_its_last_step(
    tiny_data: Path, tmp_path: Path
) -> None:
    """The training curves (dvclive, MLflow) are never empty: each epoch's last step is
    logged whatever train.log_every says."""
    cfg = load_config(None, overrides(tiny_data, tmp_path / "log", "train.log_every=1000"))
    result = train(cfg, progress=False)
    records = _records(tmp_path / "log" / "tiny")
    logged = [r for r in records if "train_loss" in r.get("metrics", {})]
    assert logged and logged[-1]["step"] == result.steps
    assert all(r["metrics"]["images_per_second"] > 0 for r in logged)
