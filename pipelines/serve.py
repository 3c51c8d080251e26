"""Serve every flow as a deployment from this process (``make serve`` starts the server
and this). Trigger a run with, e.g.::

    prefect deployment run 'ssd-pipeline/default' --param set_params='["train.epochs=2"]' --watch
"""

from __future__ import annotations

from prefect import serve

from pipelines.flows import evaluate_flow, prepare_flow, register_flow, ssd_pipeline, train_flow


def main() -> None:
    deployments = [
        ssd_pipeline.to_deployment(name="default"),
        prepare_flow.to_deployment(name="default"),
        train_flow.to_deployment(name="default"),
        evaluate_flow.to_deployment(name="default"),
        register_flow.to_deployment(name="default"),
    ]
    serve(*deployments)  # type: ignore[arg-type]  # sync context: not coroutines


if __name__ == "__main__":
    main()
