"""``ssd launch``: PyTorch's own elastic launcher (``torchrun``) with its failures as one
message each, and the ``torchrun`` command line a scheduler (Prefect, Kubernetes) runs.

Nothing here schedules or restarts: ``torch.distributed.run`` forms the group at the
rendezvous, starts the workers and restarts the group (``--max-restarts``); training
then continues from the last checkpoint on its own (``TORCHELASTIC_RESTART_COUNT``,
:func:`ssd.train.distributed.elastic_restarts`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from ssd.errors import LaunchError


def torchrun_args(
    nnodes: int,
    nproc_per_node: int,
    *,
    node_rank: int = 0,
    rdzv_endpoint: str = "127.0.0.1:29400",
    rdzv_id: str = "ssd",
    max_restarts: int = 1,
    join_timeout: int = 600,
) -> list[str]:
    """torchrun's options for ``nnodes`` machines of ``nproc_per_node`` processes each,
    meeting at ``rdzv_endpoint`` (``host:port`` of node 0, reachable from every node)."""
    if nnodes < 1 or nproc_per_node < 1:
        raise LaunchError(
            f"nodes ({nnodes}) and processes per node ({nproc_per_node}) must be at least 1"
        )
    return [
        f"--nnodes={nnodes}",
        f"--nproc-per-node={nproc_per_node}",
        f"--node-rank={node_rank}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={rdzv_endpoint}",
        f"--rdzv-id={rdzv_id}",
        f"--rdzv-conf=join_timeout={join_timeout}",
        f"--max-restarts={max_restarts}",
    ]


def train_command(torchrun: Sequence[str], train_args: Sequence[str]) -> list[str]:
    """``ssd launch <torchrun options> -m ssd.cli train <args>`` as an argument list."""
    return [
        sys.executable,
        "-m",
        "ssd.cli",
        "launch",
        *torchrun,
        "-m",
        "ssd.cli",
        "train",
        *train_args,
    ]


def launch(argv: Sequence[str]) -> None:
    """Run ``torchrun argv`` in this process.

    Raises:
        LaunchError: the nodes did not all reach the rendezvous within its join timeout,
            or a worker failed more often than ``--max-restarts`` allowed.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import (
        RendezvousError,
        RendezvousTimeoutError,
    )
    from torch.distributed.run import parse_args, run

    # The workers' process group gets a store of its own each round, hosted by rank 0: with
    # the c10d rendezvous the agent's store outlives a restart, and the first round's gloo
    # addresses left in it sent the restarted ranks to dead peers ("Gloo connectFullMesh
    # failed ... Connection refused"; torch/distributed/rendezvous.py assumes a new store
    # per retry). Measured here: with the shared store every elastic restart failed so.
    os.environ.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    # Each node says when it joins a round of the rendezvous and the global rank it got
    # there: the c10d rendezvous ranks nodes by host name and process id, not --node-rank
    # (torch/distributed/elastic/rendezvous/dynamic_rendezvous.py, logged at INFO, which
    # torch's logging setting for torch.distributed hides).
    logging.getLogger("torch.distributed.elastic.rendezvous.dynamic_rendezvous").setLevel(
        logging.INFO
    )
    args = parse_args(list(argv))
    try:
        run(args)
    except RendezvousTimeoutError:
        conf = dict(kv.split("=", 1) for kv in args.rdzv_conf.split(",") if "=" in kv)
        raise LaunchError(
            f"node {args.node_rank}: not all of {args.nnodes} node(s) reached the rendezvous at "
            f"{args.rdzv_endpoint} within {conf.get('join_timeout', 600)} s: start every node with "
            "the same --nnodes, --rdzv-id and --rdzv-endpoint (host:port of node 0, reachable "
            "from every node: check the host name and the firewall), or raise "
            "--rdzv-conf join_timeout=SECONDS"
        ) from None
    except RendezvousError as err:  # e.g. the endpoint's host cannot be reached
        raise LaunchError(
            f"node {args.node_rank}: the rendezvous at {args.rdzv_endpoint} failed ({err}): "
            "check that node 0 runs and that this host:port is reachable from every node"
        ) from None
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        raise LaunchError(
            f"training failed on rank {rank} (exit code {failure.exitcode}) after "
            f"{args.max_restarts} restart(s) of the group (--max-restarts); its log is above; "
            "the last checkpoint is kept: launch again with `train --resume` to continue from it"
        ) from None
