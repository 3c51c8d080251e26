"""Resolving ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION`` to a local detector directory.

The registered model is the pyfunc logged by
:func:`ssd.integrations.mlflow_tracking.log_detector_model`; its artifact ``detector`` is a
detector directory (``model.safetensors`` + ``model.json``). Only that artifact is
downloaded; nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path

from ssd.errors import RegistryError
from ssd.integrations.env import (
    check_tracking_server,
    configure_offline_defaults,
    resolve_tracking_uri,
)

MODELS_SCHEME = "models:/"
DETECTOR_ARTIFACT = "detector"  # the pyfunc artifact's name


def is_model_uri(path_or_uri: str | Path) -> bool:
    return str(path_or_uri).startswith(MODELS_SCHEME)


def resolve_detector(
    path_or_uri: str | Path, tracking_uri: str | None = None, dst: str | Path | None = None
) -> Path:
    """A local detector path for ``path_or_uri``: a path is returned as is; a ``models:/``
    URI is downloaded (its ``detector`` artifact) into ``dst`` (default: a temp folder).

    Args:
        path_or_uri: a detector directory / ``.safetensors`` path, or ``models:/NAME@ALIAS``
            or ``models:/NAME/VERSION``.
        tracking_uri: MLflow tracking URI (default: ``sqlite:///<project>/mlflow.db``).
        dst: folder to download into.
    """
    if not is_model_uri(path_or_uri):
        return Path(path_or_uri)
    uri = str(path_or_uri).rstrip("/")
    configure_offline_defaults()
    import mlflow
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

    resolved = resolve_tracking_uri(tracking_uri)
    try:
        check_tracking_server(resolved)
    except ConnectionError as err:
        raise RegistryError(f"cannot resolve '{uri}': {err}") from None
    mlflow.set_tracking_uri(resolved)
    try:
        # MLflow stores the artifact as artifacts/<folder name at logging time>; MLmodel says.
        flavors = mlflow.models.get_model_info(uri).flavors
        artifact = flavors["python_function"]["artifacts"][DETECTOR_ARTIFACT]["path"]
    except KeyError:
        raise RegistryError(
            f"'{uri}' has no '{DETECTOR_ARTIFACT}' artifact; log detectors with "
            "ssd.integrations.mlflow_tracking.log_detector_model"
        ) from None
    except Exception as err:  # MlflowException, OSError: one clear message for the CLI
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise RegistryError(f"cannot resolve '{uri}': {first}") from None
    try:
        storage = ModelsArtifactRepository.get_underlying_uri(uri)  # also for models:/m-<id>
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{storage.rstrip('/')}/{artifact}",
            dst_path=None if dst is None else str(dst),
        )
    except Exception as err:  # MlflowException, OSError: one clear message for the CLI
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise RegistryError(f"cannot download the detector of '{uri}': {first}") from None
    path = Path(local)
    if not (path / "model.safetensors").is_file():
        raise RegistryError(
            f"the '{DETECTOR_ARTIFACT}' artifact of '{uri}' has no model.safetensors ({path})"
        )
    return path
