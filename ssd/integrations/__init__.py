"""Edges to MLOps tools (MLflow, Prefect, FiftyOne). The core library never imports these."""
