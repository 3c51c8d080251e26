# The project image for Prefect's Docker and Kubernetes work pools (docs/cluster.md): the
# package, its pinned dependencies and the flows; the project itself (git checkout, data,
# .dvc/cache, models/) is mounted at /project from a shared volume. Build it from the commit
# the workers run: `docker build -t ssd:latest .`
# NOT built or run by this project's tests (no Docker daemon on its machines).
FROM python:3.11-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/ssd
COPY pyproject.toml constraints.txt README.md LICENSE NOTICE ./
COPY ssd ssd
COPY pipelines pipelines
# torch from PyPI on Linux carries CUDA: the same image runs on GPU nodes
RUN python -m pip install --no-cache-dir -c constraints.txt ".[mlops]"
ENV DO_NOT_TRACK=true \
    DVC_NO_ANALYTICS=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    FIFTYONE_DO_NOT_TRACK=true \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    HF_HUB_OFFLINE=1 \
    SSD_PROJECT_DIR=/project
WORKDIR /project
