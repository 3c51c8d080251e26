"""A tiny copy of this project driven with the real dvc, prefect and mlflow, as users do.

12 synthetic images and 2 training steps, built in a temp folder with this repo's dvc.yaml
and code (tests/test_pipeline.py, tests/test_dvc_s3_remote.py), plus the servers the tests
start on 127.0.0.1 and stop again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DVC = ".venv/bin/dvc"  # as the README writes it, run in the project
SHELL_PATH = "/usr/local/bin:/usr/bin:/bin"  # a login shell's PATH: no venv on it

TINY = {
    "data": {"num_images": 12, "image_size": 128},
    "model": {"input_size": 128},
    "train": {
        "epochs": 1,
        "max_steps": 2,
        "batch_size": 2,
        "num_workers": 0,
        "eval_every": 0,
        "warmup_steps": 1,
        "log_every": 1,  # a point per step on the training curves
    },
    "evaluate": {"sample_images": 2},
    "tracking": {"register_min": 0.0, "champion_min": 0.0},  # a 2-step model is weak
}
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


def env(project: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": SHELL_PATH,
        "OMP_NUM_THREADS": "1",
        "PREFECT_HOME": str(project / ".prefect"),
        "DO_NOT_TRACK": "true",
        "DVC_NO_ANALYTICS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "GIT_TERMINAL_PROMPT": "0",
    }


def run(
    cmd: list[str], project: Path, timeout: int = 600, extra: dict[str, str] | None = None
) -> str:
    p = subprocess.run(
        cmd,
        cwd=project,
        env=env(project) | (extra or {}),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert p.returncode == 0, f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}"
    return p.stdout + p.stderr


def make_project(root: Path) -> Path:
    """The tiny project in ``root``: a git repository with one commit, its .venv a link."""
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    (root / ".dvc").mkdir()
    shutil.copy(REPO / ".dvc" / "config", root / ".dvc" / "config")
    shutil.copytree(REPO / ".dvc" / "plots", root / ".dvc" / "plots")  # the offline page
    (root / ".gitignore").write_text((REPO / ".gitignore").read_text())
    shutil.copy(REPO / ".dvcignore", root / ".dvcignore")
    # a copy of the stages' code dependencies (the stages run the installed package), so
    # a test can edit a file and see which stages DVC reruns
    shutil.copytree(REPO / "ssd", root / "ssd", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "data", root / "data")  # data/raw/synthetic: prepare's source dep
    shutil.copytree(REPO / "bin", root / "bin")  # bin/ssd: what the stages run
    params = yaml.safe_load((REPO / "params.yaml").read_text())  # as a user edits it
    for section, values in TINY.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], root)
    # `dvc exp run` commits experiment refs: give the repo its own identity so the test
    # does not depend on the machine's global git config
    run(["git", "config", "user.name", "ssd tests"], root)
    run(["git", "config", "user.email", "tests@example.invalid"], root)
    run([*GIT, "add", "-A"], root)
    run([*GIT, "commit", "-qm", "tiny project"], root)
    link_venv(root)
    return root


def link_venv(root: Path) -> None:
    """What `make setup` makes (git-ignored): the project's .venv, here the tests' venv."""
    (root / ".venv").symlink_to(BIN.parent)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def server(
    cmd: list[str], cwd: Path, environ: dict[str, str], log: Path, health: str
) -> Iterator[None]:
    """``cmd`` running until the block ends, once ``health`` answers; its output in ``log``."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=environ, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_http(health, 120)
            yield
        finally:
            stop(proc)


@contextlib.contextmanager
def prefect_server(port: int, cwd: Path, environ: dict[str, str], log: Path) -> Iterator[None]:
    """A real Prefect server on 127.0.0.1:``port`` until the block ends."""
    cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with server(cmd, cwd, environ, log, f"http://127.0.0.1:{port}/api/health"):
        yield
