"""A registered model URI resolves to the detector folder logged with it (real sqlite MLflow)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from ssd.config import ModelConfig
from ssd.model.builder import build_model
from ssd.model.weights import load_model, save_detector


@pytest.mark.slow
def test_models_uri_resolves_to_the_logged_detector(tmp_path, monkeypatch) -> None:
    mlflow = pytest.importorskip("mlflow")
    from ssd.errors import RegistryError
    from ssd.integrations.mlflow_model import log_detector_model
    from ssd.integrations.registry_load import resolve_detector

    monkeypatch.chdir(tmp_path)  # mlflow writes ./mlruns
    monkeypatch.setenv("SSD_PROJECT_ROOT", str(tmp_path))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="efficientnet_lite0", input_size=128, backbone_weights=None)
    det = save_detector(tmp_path / "best", build_model(cfg, 2), cfg, ["a", "b"])
    Image.new("RGB", (32, 24)).save(tmp_path / "example.png")

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("registry-test")
    with mlflow.start_run():
        model_uri = log_detector_model(det, tmp_path / "example.png")
    version = mlflow.register_model(model_uri, "ssd").version
    mlflow.MlflowClient().set_registered_model_alias("ssd", "champion", version)

    for i, ref in enumerate(["models:/ssd@champion", f"models:/ssd/{version}", model_uri]):
        local = resolve_detector(ref, uri, dst=tmp_path / f"download{i}")
        assert (local / "model.safetensors").read_bytes() == (
            det / "model.safetensors"
        ).read_bytes()
        assert load_model(local)[2] == ["a", "b"]
    assert resolve_detector(det, uri) == det  # a plain path is returned as is
    with pytest.raises(RegistryError, match="nope"):
        resolve_detector("models:/nope@champion", uri)
