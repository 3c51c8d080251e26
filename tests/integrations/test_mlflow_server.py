"""The project against a real `mlflow server` on 127.0.0.1 with proxied artifacts: train,
register with the champion alias, and load the champion from another process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ssd.config import load_config
from ssd.data.prepare import prepare_dataset
from ssd.data.prepared import PreparedSplit
from ssd.integrations.registry import Policy, register_detector


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}"]
    cmd += ["--serve-artifacts", "--artifacts-destination", str(tmp_path / "artifacts")]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                assert p.poll() is None and time.time() < deadline, "mlflow server did not start"
                time.sleep(0.3)
        yield url, tmp_path / "artifacts"
    finally:
        p.terminate()
        p.wait(timeout=30)


def test_train_register_and_load_the_champion_through_a_tracking_server(
    server: tuple[str, Path], tmp_path: Path
) -> None:
    url, artifacts = server
    root = tmp_path / "prepared"
    sets = [f"data.prepared_root={root}", "data.name=tiny", "data.num_images=12"]
    data = prepare_dataset(load_config(None, [*sets, "data.image_size=128"]).data).out_dir
    train = [
        *sets,
        "model.input_size=128",
        "train.batch_size=2",
        "train.num_workers=0",
        "train.num_threads=1",
        "train.epochs=1",
        "train.max_steps=2",
        "train.eval_every=0",
        "train.warmup_steps=1",
        f"train.out_dir={tmp_path / 'models'}",
        "tracking.dvclive=false",
        f"tracking.tracking_uri={url}",
    ]
    args = [sys.executable, "-m", "ssd.cli", "train", "--no-progress"]
    args += [a for s in train for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "unreachable" not in p.stderr
    # the artifacts went through the server into its destination, not into the project
    assert any(artifacts.rglob("model.safetensors")), p.stderr[-3000:]

    model_dir = tmp_path / "models" / "tiny" / "ssd"
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"map": 0.3, "map50": 0.3}))
    result = register_detector(
        model_dir,
        metrics,
        PreparedSplit.load(data, "test"),
        tmp_path / "registry.json",
        tracking_uri=url,
        model_name="ssd-tiny",
        policy=Policy(metric="map", min_delta=0.001, register_min=0.01),
    )
    assert (result["version"], result["champion"]) == (1, True)

    image = data / json.loads((data / "test.json").read_text())["images"][0]["file_name"]
    load = (
        "import sys, mlflow, pandas as pd\n"
        "from ssd.integrations.mlflow_model import image_data_uri\n"
        f"mlflow.set_tracking_uri({url!r})\n"
        "m = mlflow.pyfunc.load_model('models:/ssd-tiny@champion')\n"
        f"f = m.predict(pd.DataFrame({{'image': [image_data_uri({str(image)!r})]}}), "
        "params={'score_threshold': 0.0})\n"
        "print(list(f.columns))\n"
    )
    q = subprocess.run(
        [sys.executable, "-c", load],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert q.returncode == 0, q.stderr
    assert "['image', 'label', 'score', 'x1', 'y1', 'x2', 'y2']" in q.stdout
