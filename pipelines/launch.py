"""The train stage under torchrun, recorded in ``dvc.lock`` as if ``dvc repro`` had run it.

DVC runs a stage's command as one process; training on several processes or nodes needs
torchrun around it. So the train flow's ``nnodes`` / ``nproc_per_node`` run the stage's own
command (``dvc.yaml``'s ``train.cmd``, its arguments unchanged) under ``ssd launch`` (torchrun,
:mod:`ssd.integrations.torchrun`), and node 0 then records the outputs with
``dvc commit train``: ``dvc.lock`` holds the same entry a ``dvc repro train`` would have
written, and downstream stages (evaluate, register) run as usual. Every node runs this with
its own ``node_rank``; the project folder must be one every node sees (docs/cluster.md).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

import yaml

from pipelines.commands import stream, venv_bin
from ssd.errors import LaunchError
from ssd.integrations.torchrun import torchrun_args, train_command


def stage_train_args(project_dir: Path) -> list[str]:
    """The arguments of ``dvc.yaml``'s train command after ``train`` (e.g. ``--no-progress``)."""
    stages = yaml.safe_load((project_dir / "dvc.yaml").read_text())["stages"]
    cmd = shlex.split(stages["train"]["cmd"])
    if "train" not in cmd:
        raise LaunchError(
            f"dvc.yaml's train stage runs `{stages['train']['cmd']}`, not `ssd train`"
        )
    return cmd[cmd.index("train") + 1 :]


def launch_train(
    project_dir: str | Path,
    *,
    nnodes: int = 1,
    nproc_per_node: int = 1,
    node_rank: int = 0,
    rdzv_endpoint: str | None = None,
    rdzv_id: str = "ssd-train",
    max_restarts: int = 1,
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Run the train stage's command under torchrun in ``project_dir`` (``resume``: from the
    last checkpoint, ``train --resume``); on node 0, record it in ``dvc.lock``
    (``dvc commit train``). The commands run, in order.

    Raises:
        LaunchError: bad node counts, no rendezvous endpoint for several nodes, or the
            training / the commit failed (the message says which and what to do).
    """
    root = Path(project_dir).resolve()
    if nnodes > 1 and not rdzv_endpoint:
        raise LaunchError(
            f"{nnodes} nodes need a rendezvous endpoint: rdzv_endpoint='HOST:PORT' of node 0, "
            "reachable from every node (the same on every node's run)"
        )
    endpoint = rdzv_endpoint or "127.0.0.1:0"  # one node: a free port (torchrun --standalone)
    torchrun = torchrun_args(
        nnodes,
        nproc_per_node,
        node_rank=node_rank,
        rdzv_endpoint=endpoint,
        rdzv_id=rdzv_id,
        max_restarts=max_restarts,
    )
    train_args = stage_train_args(root) + (["--resume"] if resume else [])
    commands = [train_command(torchrun, train_args)]
    if node_rank == 0:
        commands.append([venv_bin("dvc"), "commit", "--force", "train"])
    for cmd in commands:
        log(f"running {shlex.join(cmd)} in {root}")
        code, _ = stream(cmd, root, log)
        if code != 0:
            what = "training under torchrun" if cmd is commands[0] else "`dvc commit train`"
            raise LaunchError(
                f"{what} failed (exit {code}) on node {node_rank}; its output is in "
                "the log above; the last checkpoint is kept: run again with resume=True to "
                "continue from it"
            )
    return [shlex.join(cmd) for cmd in commands]
