"""The pipeline as users run it: `dvc repro`, a Prefect deployment run, the MLflow registry.

A tiny project (12 synthetic images, 2 training steps) is built in a temp folder with this
repo's dvc.yaml and code, then driven with the real dvc, prefect and mlflow, as the README
says: `.venv/bin/dvc ...` from a shell whose PATH lacks the venv (the project's `.venv` is a
link to the venv running the tests).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from tiny_project import (
    BIN,
    DVC,
    GIT,
    REPO,
    make_project,
    prefect_server,
    run,
)
from tiny_project import env as _env
from tiny_project import free_port as _free_port
from tiny_project import stop as _stop


def _terminal(cmd: list[str], project: Path, columns: int) -> str:
    """The output of ``cmd`` run in a terminal ``columns`` wide (a pty), colours removed."""
    import fcntl
    import pty
    import re
    import struct
    import termios

    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = _env(project) | {"COLUMNS": str(columns)}
    proc = subprocess.Popen(cmd, cwd=project, env=env, stdin=child, stdout=child, stderr=child)
    os.close(child)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=120)
    os.close(main)
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode(errors="replace"))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def first_repro(project: Path) -> str:
    return run([DVC, "repro"], project)


def test_dvc_repro_runs_every_stage_and_registers_a_champion(
    project: Path, first_repro: str
) -> None:
    metrics = json.loads((project / "reports" / "synthetic" / "evaluation.json").read_text())
    headline = json.loads((project / "reports" / "synthetic" / "metrics.json").read_text())
    assert len(headline) < 20 and {"map", "map50", "f1", "f1_threshold"} <= set(headline)
    for key in (
        "map",
        "map50",
        "map75",
        "map_small",
        "map_medium",
        "map_large",
        "voc07_map50",
        "voc_map50",
        "per_class",
        "errors",
        "images_per_second",
    ):
        assert key in metrics
    registry = json.loads((project / "reports" / "synthetic" / "registry.json").read_text())
    assert registry["model_name"] == "ssd-synthetic" and registry["version"] == 1
    assert registry["champion"] is True
    audit = json.loads((project / "reports" / "synthetic" / "audit.json").read_text())
    assert audit["split"] == "test" and audit["postprocess"]["score_threshold"] == 0.01
    assert (project / "dvc.lock").is_file()
    show = run([DVC, "metrics", "show"], project)
    assert "reports/synthetic/metrics.json" in show
    summary = run([".venv/bin/ssd", "summary"], project)
    assert "note: AP50 0.0" in summary and "too weak" in summary  # a 2-step model


def test_stage_commands_need_no_venv_on_path(project: Path, first_repro: str) -> None:
    """The README's `.venv/bin/dvc repro` from a shell whose PATH lacks the venv: the stages
    run `bin/ssd`, which finds the project's .venv (first_repro ran them so)."""
    path = _env(project)["PATH"]
    assert shutil.which("ssd", path=path) is None and shutil.which("dvc", path=path) is None
    assert "Running stage 'train'" in first_repro and "> bin/ssd train" in first_repro
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    assert all(stage["cmd"].startswith("bin/ssd ") for stage in stages.values())


def test_side_products_stay_out_of_stage_outputs_and_out_of_git(
    project: Path, first_repro: str
) -> None:
    """ssd export, suggest-priors and detect write where no stage does: DVC sees nothing
    changed (dvc pull / checkout would refuse to replace a changed output) and git nothing
    new to commit."""
    ssd = ".venv/bin/ssd"
    out = run([ssd, "export", "--model", "models/synthetic/ssd"], project)
    assert "wrote exports/synthetic/model.onnx" in out
    run([ssd, "suggest-priors"], project)
    assert (project / "reports/synthetic/priors/suggested_priors.png").is_file()
    images = sorted((project / "data/prepared/synthetic/images").iterdir())[:2]
    detect = [ssd, "detect", *map(str, images), "--model", "models/synthetic/ssd"]
    out = run([*detect, "--score-threshold", "f1"], project)
    f1 = json.loads((project / "reports/synthetic/metrics.json").read_text())["f1_threshold"]
    assert (
        f"kept detections scoring >= {max(f1, 0.01):.3f} (the F1-optimal threshold of "
        "reports/synthetic/metrics.json)" in out
    )
    assert json.loads(run([DVC, "status", "--json"], project)) == {}
    untracked = run(["git", "status", "--porcelain", "--untracked-files=all"], project)
    assert not [line for line in untracked.splitlines() if line.startswith("??")], untracked


def test_second_repro_does_nothing_and_a_train_param_reruns_only_downstream(
    project: Path, first_repro: str
) -> None:
    again = run([DVC, "repro"], project)
    assert "Data and pipelines are up to date" in again
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["seed"] = 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    diff = run([DVC, "params", "diff"], project)
    assert "train.seed" in diff
    out = run([DVC, "repro"], project)
    assert "Stage 'prepare' didn't change, skipping" in out
    assert "Running stage 'train'" in out and "Running stage 'evaluate'" in out
    registry = json.loads((project / "reports" / "synthetic" / "registry.json").read_text())
    assert registry["version"] == 2
    # the alias moves only on improvement, and the log says why either way
    assert ("beats the champion" in registry["reason"]) == registry["champion"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _experiments(project: Path) -> dict[str, dict]:
    """``dvc exp show --json``: experiment name -> its metrics (reports/synthetic/metrics.json)."""
    out: dict[str, dict] = {}
    for commit in json.loads(run([DVC, "exp", "show", "--json"], project)):
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs", []):
                data = rev.get("data", {})
                metrics = data.get("metrics", {}).get("reports/synthetic/metrics.json", {})
                out[rev.get("name") or exp.get("name")] = metrics.get("data", {})
    return out


def test_an_experiment_round_trips_to_the_baseline_without_retraining(
    project: Path, first_repro: str
) -> None:
    dvc = DVC
    run([*GIT, "add", "-A"], project)
    run([*GIT, "commit", "-qm", "baseline"], project)  # what the README says after make run
    model = project / "models" / "synthetic" / "ssd" / "model.safetensors"
    baseline = _sha(model)

    out = run([dvc, "exp", "run", "--set-param", "train.seed=7", "--name", "seed7"], project)
    assert "Running stage 'train'" in out and _sha(model) != baseline
    assert "map" in _experiments(project)["seed7"]  # dvc exp show has its metrics

    # back to the baseline: its params and lock from git, its outputs from DVC's cache
    run(["git", "checkout", "HEAD", "--", "params.yaml", "dvc.lock"], project)
    run([dvc, "checkout"], project)
    assert _sha(model) == baseline
    again = run([dvc, "repro"], project)
    assert "Running stage" not in again  # nothing retrained
    # and to the experiment again, also without training
    run([dvc, "exp", "apply", "seed7"], project)
    assert _sha(model) != baseline
    assert "Running stage" not in run([dvc, "repro"], project)
    run(["git", "checkout", "HEAD", "--", "params.yaml", "dvc.lock"], project)
    run([dvc, "checkout"], project)
    assert _sha(model) == baseline


def test_a_queued_sweep_runs_every_point_and_keeps_its_mlflow_runs(
    project: Path, first_repro: str
) -> None:
    """DVC runs queued experiments in temporary copies under .dvc/tmp/exps/, deleted after:
    their MLflow runs and registered versions must land in the project's mlflow.db."""
    from mlflow import MlflowClient

    run([DVC, "exp", "run", "--queue", "--set-param", "train.lr=0.01,0.03"], project)
    # DVC starts its queue worker as `dvc` from PATH (dvc_task's ManagedProcess), so the
    # README starts the queue from the activated venv
    run(["bash", "-c", "source .venv/bin/activate && dvc queue start --jobs 1"], project)
    deadline = time.time() + 400
    while time.time() < deadline:
        status = run([DVC, "queue", "status"], project)
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    assert "Failed" not in status, status
    swept = {
        name: m
        for name, m in _experiments(project).items()
        if name not in ("seed7", "seed2") and "map" in m
    }
    assert len(swept) >= 2, (status, _experiments(project))
    run([DVC, "queue", "stop"], project)

    # The table a person reads: the evaluation's headline leads (map first), and with
    # --only-changed it fits an 85-column terminal. (--keep: these 2-step models may all
    # score alike, and --only-changed would drop a map column that does not vary.)
    header = run([DVC, "exp", "show", "--csv"], project).splitlines()[0].split(",")
    assert header[header.index("Executor") + 1 :][:2] == ["map", "map50"], header
    table = _terminal(
        [DVC, "exp", "show", "--no-pager", "--only-changed", "--keep", "^map$"], project, 85
    )
    lines = [line for line in table.splitlines() if line.strip()]
    assert max(len(line) for line in lines) <= 85, table
    assert " map " in lines[1], table  # the headline column; later ones fold into "…"
    metrics = run([DVC, "metrics", "show"], project).splitlines()
    assert len(metrics) == 3 and max(map(len, metrics)) < 120, metrics  # two short rows

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "ssd"]
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert Path(experiment.artifact_location.removeprefix("file://")) == project / "mlruns"
    runs = client.search_runs([experiment.experiment_id], "params.`train.lr` = '0.03'")
    assert [r.info.status for r in runs] == ["FINISHED"], runs
    versions = client.search_model_versions("name='ssd-synthetic'")
    assert runs[0].info.run_id in {v.run_id for v in versions}  # registered from the queue
    assert not list((project / ".dvc" / "tmp" / "exps").glob("tmp*/mlflow.db"))


def test_dvc_plots_page_renders_offline_in_a_real_browser(
    project: Path, first_repro: str, tmp_path: Path
) -> None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).is_file():
        pytest.skip("chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    out = tmp_path / "plots"
    run([DVC, "plots", "show", "--out", str(out)], project)
    asked: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_context(offline=True).new_page()
        page.on("request", lambda r: asked.append(r.url))
        page.goto((out / "index.html").as_uri())
        page.wait_for_function(  # every chart drawn (an empty one has a 0 x 0 canvas)
            """() => { const c = [...document.querySelectorAll('.vega-embed canvas')];
                       return c.length >= 5 && c.every(e => e.width > 0 && e.height > 0); }""",
            timeout=30_000,
        )
        charts = page.locator(".vega-embed").count()
        drawn = page.locator(".vega-embed canvas, .vega-embed svg").count()
        html = (out / "index.html").read_text()
        titles = html.count("F1 against the confidence threshold")
        curves = html.count("Training loss") and html.count("Learning rate")
        images = page.locator("img").count()
        browser.close()
    assert charts >= 5 and drawn >= 5 and titles >= 1  # PR, F1, confusion drawn by Vega
    assert curves  # and dvclive's training curves
    assert images >= 4  # and the evaluation's PNG plots
    assert not [u for u in asked if not u.startswith(("file:", "data:", "about:"))], asked


ALL = {"prepare", "train", "evaluate", "register", "audit"}
CHANGES = [  # (a params.yaml key or a code file, the stages that read it)
    ("data.seed", 1, {"prepare"}),
    ("model.fine_map", False, {"train"}),
    ("train.lr", 0.03, {"train"}),
    ("postprocess.nms_threshold", 0.3, {"evaluate", "register", "audit"}),
    ("evaluate.sample_images", 1, {"evaluate"}),
    ("tracking.champion_metric", "map50", {"register"}),
    # Code: a stage depends on the layers (folders of ssd/) it runs. The config validates
    # model.backbone against the backbone registry, so every stage runs ssd/model.
    ("ssd/model/fusion.py", None, ALL),
    ("ssd/evaluation/tide.py", None, {"train", "evaluate", "register", "audit"}),
    ("ssd/data/sources/voc.py", None, ALL),
    ("ssd/integrations/fiftyone/browse.py", None, {"train", "register"}),  # MLflow in train
    ("audit.min_score", 0.6, {"audit"}),
    ("ssd/audit/rank.py", None, {"audit", "register"}),
    ("ssd/stages.py", None, ALL),
]


@pytest.mark.parametrize(("what", "value", "expected"), CHANGES, ids=[c[0] for c in CHANGES])
def test_a_change_marks_exactly_the_stages_that_read_it(
    project: Path, first_repro: str, what: str, value: object, expected: set[str]
) -> None:
    """`dvc status` names the stages whose own deps or params changed (`dvc repro` then
    reruns them and everything downstream, see the next test)."""
    params_file = project / "params.yaml"
    before = params_file.read_text()
    code = project / what
    code_before = code.read_text() if value is None else None
    try:
        if value is None:
            code.write_text(code_before + "\n# edited\n")
        else:
            params = yaml.safe_load(before)
            section, key = what.split(".")
            params[section][key] = value
            params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        status = json.loads(run([DVC, "status", "--json"], project))
    finally:
        params_file.write_text(before)
        if code_before is not None:
            code.write_text(code_before)
    assert set(status) == expected, status


def _api(port: int, path: str, body: dict) -> list[dict]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        result: list[dict] = json.loads(r.read())
    return result


def _last_run(port: int) -> tuple[dict, list[dict], list[str]]:
    """The newest flow run, its task runs and their names in the order they started."""
    (flow_run,) = _api(port, "flow_runs/filter", {"limit": 1, "sort": "START_TIME_DESC"})
    tasks = _api(port, "task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run["id"]]}}})
    names = [t["name"] for t in sorted(tasks, key=lambda t: t["start_time"])]
    return flow_run, tasks, names


def test_prefect_run_shows_every_stage_records_the_experiment_and_serve_stops_on_sigterm(
    project: Path, first_repro: str
) -> None:
    port = _free_port()
    env = _env(project) | {"PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    with (
        prefect_server(port, project, env, project / "prefect-server.log"),
        open(project / "serve.log", "w") as slog,
    ):
        served = None
        try:
            served = subprocess.Popen(
                [sys.executable, "-m", "pipelines.serve"],
                cwd=project,
                env=env,
                stdout=slog,
                stderr=subprocess.STDOUT,
            )
            lock_before = (project / "dvc.lock").read_text()
            params_before = (project / "params.yaml").read_text()
            model = project / "models" / "synthetic" / "ssd" / "model.safetensors"
            model_before = _sha(model)
            deadline = time.time() + 120
            while True:  # wait until serve has registered the deployment
                p = subprocess.run(
                    [str(BIN / "prefect"), "deployment", "inspect", "ssd-pipeline/run-all-stages"],
                    cwd=project,
                    env=env,
                    capture_output=True,
                    text=True,
                )
                if p.returncode == 0 or time.time() > deadline:
                    break
                time.sleep(1)
            assert p.returncode == 0, p.stdout + p.stderr
            result = subprocess.run(
                [
                    str(BIN / "prefect"),
                    "deployment",
                    "run",
                    "ssd-pipeline/run-all-stages",
                    "--param",
                    'set_params=["train.seed=2"]',
                    "--param",
                    "experiment_name=seed2",
                    "--watch",
                    "--watch-timeout",
                    "480",
                ],
                cwd=project,
                env=env,
                capture_output=True,
                text=True,
                timeout=540,
            )
            out = result.stdout + result.stderr
            assert result.returncode == 0, out + (project / "serve.log").read_text()[-3000:]
            assert "Completed" in out

            # the run graph: one task per DVC stage, in order, each completed
            flow_run, tasks, names = _last_run(port)
            assert flow_run["state_type"] == "COMPLETED"
            assert names == [
                "set params",
                "dvc repro prepare",
                "dvc repro train",
                "dvc repro evaluate",
                "dvc repro register",
                "dvc repro audit",
                "dvc exp save",
                "summary",
                "restore workspace",
            ]
            assert {t["state_type"] for t in tasks} == {"COMPLETED"}
            # the markdown artifact says what the run gave and why the model fails
            (artifact,) = _api(
                port, "artifacts/filter", {"artifacts": {"key": {"any_": ["ssd-synthetic"]}}}
            )
            for needle in (
                "COCO AP",
                "AP by object size",
                "TIDE",
                "Registry",
                "make browse",
                "Label audit",
                "too weak",  # a 2-step model: its TIDE errors and audit mean nothing
            ):
                assert needle in artifact["data"], needle
            assert "@" not in artifact["data"]  # "mAP@0.5" rendered as a mailto: link
            # training progress reached the log
            assert "epoch 1:" in (project / "serve.log").read_text()

            # recorded as a DVC experiment, and the workspace is where it was: its params,
            # lock and outputs (the experiment's trained model is not left in place)
            exps = run([DVC, "exp", "show", "--json"], project)
            assert '"seed2"' in exps
            assert (project / "dvc.lock").read_text() == lock_before
            assert (project / "params.yaml").read_text() == params_before
            assert _sha(model) == model_before
            assert "up to date" in run([DVC, "status"], project).lower()
            assert "dvc exp apply seed2" in (project / "serve.log").read_text()

            served.send_signal(signal.SIGTERM)  # as docker stop / a process manager does
            assert served.wait(timeout=60) == 0
            served = None
            assert "All deployments have been paused" in (project / "serve.log").read_text()
        finally:
            if served is not None:
                _stop(served)


def test_serve_without_a_server_says_so_in_one_line(tmp_path: Path) -> None:
    """`make serve` before `make prefect-server`: one line naming it, not a traceback."""
    env = _env(tmp_path) | {"PREFECT_API_URL": f"http://127.0.0.1:{_free_port()}/api"}
    p = subprocess.run(
        [sys.executable, "-m", "pipelines.serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 1
    lines = (p.stdout + p.stderr).strip().splitlines()
    assert len(lines) == 1 and "make prefect-server" in lines[0], lines


def test_a_process_worker_runs_the_deployed_pipeline_in_the_project(
    project: Path, first_repro: str, tmp_path: Path
) -> None:
    """prefect.yaml as docs/cluster.md says: a process pool, `prefect deploy --all` in the
    project, a worker started in another folder; the pipeline deployment runs to completion
    in the project, its stage tasks in order."""
    shutil.copy(REPO / "prefect.yaml", project / "prefect.yaml")
    shutil.copytree(
        REPO / "pipelines", project / "pipelines", ignore=shutil.ignore_patterns("__pycache__")
    )
    port = _free_port()
    env = _env(project) | {"PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    prefect = str(BIN / "prefect")
    with (
        prefect_server(port, tmp_path, env, tmp_path / "server.log"),
        open(tmp_path / "worker.log", "w") as wlog,
    ):
        worker = None
        try:

            def cli(*args: str, cwd: Path = project, extra: dict | None = None) -> str:
                p = subprocess.run(
                    [prefect, *args],
                    cwd=cwd,
                    env=env | (extra or {}),
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                assert p.returncode == 0, f"prefect {' '.join(args)}:\n{p.stdout}\n{p.stderr}"
                return p.stdout + p.stderr

            cli("work-pool", "create", "ssd-process", "--type", "process", "--overwrite")
            cli("--no-prompt", "deploy", "--all", extra={"SSD_PROJECT_DIR": str(project)})
            worker = subprocess.Popen(  # elsewhere: the deployment says where the project is
                [prefect, "worker", "start", "--pool", "ssd-process"],
                cwd=tmp_path,
                env=env,
                stdout=wlog,
                stderr=subprocess.STDOUT,
            )
            out = cli(
                "deployment",
                "run",
                "ssd-pipeline/run-all-stages",
                "--param",
                "push=true",  # the outputs to the DVC remote, as a cluster job must
                "--watch",
                "--watch-timeout",
                "240",
            )
            assert "Completed" in out, out + (tmp_path / "worker.log").read_text()[-3000:]
            print(out)  # with -rA: the run as a user sees it
            flow_run, tasks, names = _last_run(port)
            assert flow_run["state_type"] == "COMPLETED"
            assert flow_run["work_pool_name"] == "ssd-process"
            assert names == [
                "dvc repro prepare",
                "dvc repro train",
                "dvc repro evaluate",
                "dvc repro register",
                "dvc repro audit",
                "dvc push",
                "summary",
            ]
            assert {t["state_type"] for t in tasks} == {"COMPLETED"}
            pushed = run([DVC, "status", "--cloud"], project)  # the remote: ../dvc-remote
            assert "Cache and remote 'local' are in sync" in pushed, pushed
        finally:
            if worker is not None:
                _stop(worker)  # before the server (the block's end), as STACK.md says
            (project / "prefect.yaml").unlink()
            shutil.rmtree(project / "pipelines")
