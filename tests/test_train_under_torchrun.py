"""The train flow's ``nproc_per_node`` / ``nnodes`` (pipelines/launch.py): the train stage's
own command under torchrun, then ``dvc commit train`` on node 0, so that dvc.lock records it
as ``dvc repro train`` would and DVC sees the stage up to date. Two processes on one node
(gloo on CPU) in the tiny project (tests/tiny_project.py)."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from tiny_project import DVC, env, free_port, make_project, run

from pipelines.launch import launch_train
from ssd.errors import LaunchError


def test_two_processes_train_the_stage_and_dvc_records_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path)
    run([DVC, "repro", "prepare"], project)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    lines: list[str] = []
    commands = launch_train(project, nproc_per_node=2, log=lines.append)

    assert "--nproc-per-node=2" in commands[0] and commands[0].endswith("train --no-progress")
    assert commands[1].endswith("dvc commit --force train")
    log = "\n".join(lines)
    for rank in (0, 1):  # both processes joined one group of two
        assert f"distributed: rank {rank} of world size 2" in log, log[-3000:]
    assert (project / "models/synthetic/ssd/model.safetensors").is_file()
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    assert {"prepare", "train"} <= set(lock)
    status = subprocess.run(
        [DVC, "status", "train", "--json"], cwd=project, env=env(project), capture_output=True
    )
    assert status.stdout.strip() == b"{}", status  # DVC: the stage is up to date
    assert "Stage 'train' didn't change, skipping" in run([DVC, "repro", "train"], project)


def test_node_0_commits_only_what_rank_0_finished_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two nodes (one process each) through the train flow's launch, as on a cluster. The
    c10d rendezvous ranks the nodes by host name and process id, not by ``node_rank``: here
    node 1's agent starts first and hosts global rank 0, which writes the outputs. Node 0 runs
    ``dvc commit train`` once its own launcher returns: by then rank 0 must have written its
    last output (the MLflow run file, dvclive's files), or dvc.lock records half-written
    outputs and DVC sees the stage as changed. Two things hold node 0 back: every worker's
    final barrier (ssd.train.distributed.end_group) and torchrun's exit barrier (300 s)."""
    project = make_project(tmp_path)
    run([DVC, "repro", "prepare"], project)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    endpoint = f"127.0.0.1:{free_port()}"
    logs: dict[int, list[str]] = {0: [], 1: []}
    errors: list[BaseException] = []

    def node(rank: int) -> None:
        try:
            launch_train(
                project,
                nnodes=2,
                node_rank=rank,
                rdzv_endpoint=endpoint,
                max_restarts=0,
                log=logs[rank].append,
            )
        except BaseException as err:  # reported by the test thread below
            errors.append(err)

    threads = [threading.Thread(target=node, args=(r,)) for r in (1, 0)]
    for t in threads:
        t.start()
        time.sleep(2)  # node 1's agent first: a lower process id, global rank 0
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    text = {r: "\n".join(lines) for r, lines in logs.items()}
    rank = {r: re.search(r"distributed: rank (\d) of world size 2", text[r]) for r in (0, 1)}
    assert rank[0] and rank[1], text
    assert (rank[0].group(1), rank[1].group(1)) == ("1", "0"), "node 0 hosted rank 0 this time"
    # `ssd launch` shows the rendezvous's own line: the global rank each node got there
    assert "of the rendezvous 'ssd-train' as rank 1 in a world of size 2" in text[0], text[0]
    assert "dvc commit --force train" in text[0] and "dvc commit" not in text[1]
    assert (project / "models/synthetic/ssd/mlflow_run.json").is_file()
    status = subprocess.run(
        [DVC, "status", "train", "--json"], cwd=project, env=env(project), capture_output=True
    )
    assert status.stdout.strip() == b"{}", status  # dvc.lock holds the finished outputs


def test_several_nodes_without_a_rendezvous_endpoint_is_one_message(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="2 nodes need a rendezvous endpoint"):
        launch_train(tmp_path, nnodes=2, nproc_per_node=1)
