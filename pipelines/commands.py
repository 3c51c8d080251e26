"""Running the project's own tools (dvc, ssd) from a flow: the venv's programs, their output
streamed line by line. One place for what flows.py, launch.py and remote.py each need."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def venv_bin(name: str) -> str:
    """``name`` from the environment running this code (the project's .venv)."""
    return str(Path(sys.executable).with_name(name))


def venv_env() -> dict[str, str]:
    """This environment, with the venv's programs first on PATH (what a stage runs)."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path}


def stream(cmd: list[str], cwd: Path, log: Callable[[str], None]) -> tuple[int, list[str]]:
    """Run ``cmd`` in ``cwd``, each non-empty output line to ``log``; its exit code and lines."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=venv_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        if line.strip():
            log(line.rstrip())
            lines.append(line.rstrip())
    return proc.wait(), lines
