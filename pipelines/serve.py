"""Serve every flow as a deployment from this process (``make serve`` does this; the
Prefect server must be running: ``make prefect-server``). Trigger a run with, e.g.::

    prefect deployment run 'ssd-pipeline/run-all-stages' --watch
    prefect deployment run 'ssd-pipeline/run-all-stages' --param set_params='["train.epochs=2"]'

SIGTERM (``docker stop``, a process manager, ``kill``) stops serving the way Ctrl-C does:
the deployments are paused (their schedules stop) and the process exits 0. Pausing waits at
most :data:`PAUSE_TIMEOUT_S` for the server, so a server that is already gone cannot hang
the shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from prefect.runner import Runner

from pipelines.flows import (
    audit_flow,
    evaluate_flow,
    prepare_flow,
    register_flow,
    ssd_pipeline,
    train_flow,
)

# Deployment names say what a run of each does.
DEPLOYMENTS = {
    "run-all-stages": ssd_pipeline,
    "prepare-dataset": prepare_flow,
    "train-detector": train_flow,
    "evaluate-detector": evaluate_flow,
    "register-model": register_flow,
    "audit-labels": audit_flow,
}
PAUSE_TIMEOUT_S = 15.0

log = logging.getLogger("pipelines.serve")


class ServeRunner(Runner):
    """Prefect's Runner, with SIGTERM taking Ctrl-C's path (Prefect's own handler calls the
    async ``stop()`` without awaiting it) and a bounded pause on the way out."""

    def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    async def _pause_schedules(self) -> None:
        try:
            await asyncio.wait_for(super()._pause_schedules(), timeout=PAUSE_TIMEOUT_S)
        except TimeoutError:
            self._logger.warning(
                "the Prefect server did not answer within %.0f s; deployments not paused",
                PAUSE_TIMEOUT_S,
            )


def server_problem(api_url: str | None, timeout: float = 5.0) -> str | None:
    """Why serving cannot start, in one line, or None: the Prefect server at ``api_url``
    must answer its health check (``make prefect-server`` starts one)."""
    import urllib.error
    import urllib.request

    if not api_url:
        return (
            "PREFECT_API_URL is not set; start a server with `make prefect-server` (another "
            "terminal), then `make serve` (it sets PREFECT_API_URL)"
        )
    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # it answered
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        return (
            f"no Prefect server answers at {api_url} ({reason}); start it with "
            "`make prefect-server` in another terminal, then run `make serve` again"
        )


def main() -> None:
    from prefect.settings import PREFECT_API_URL

    problem = server_problem(PREFECT_API_URL.value())
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(1)
    runner = ServeRunner(pause_on_shutdown=True)
    for name, flow in DEPLOYMENTS.items():
        runner.add_deployment(flow.to_deployment(name=name))
    print("serving: " + ", ".join(f"'{f.name}/{n}'" for n, f in DEPLOYMENTS.items()), flush=True)
    try:
        asyncio.run(runner.start())
    except KeyboardInterrupt:
        log.info("stopped serving")


if __name__ == "__main__":
    main()
