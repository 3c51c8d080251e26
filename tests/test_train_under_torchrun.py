"""The train flow's ``nproc_per_node`` / ``nnodes`` (pipelines/launch.py): the train stage's
own command under torchrun, then ``dvc commit train`` on node 0, so that dvc.lock records it
as ``dvc repro train`` would and DVC sees the stage up to date. Two processes on one node
(gloo on CPU) in the tiny project (tests/tiny_project.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from tiny_project import DVC, env, make_project, run

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


def test_several_nodes_without_a_rendezvous_endpoint_is_one_message(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="2 nodes need a rendezvous endpoint"):
        launch_train(tmp_path, nnodes=2, nproc_per_node=1)
