"""Where a result came from: dataset fingerprint, code version, machine."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch


def dataset_fingerprint(prepared_dir: str | Path) -> str:
    """SHA-256 over a prepared dataset's split files, classes and image bytes (first 16 hex).

    Two prepared datasets with the same fingerprint hold the same images and labels.
    """
    root = Path(prepared_dir)
    h = hashlib.sha256()
    for name in ("classes.json", "train.json", "val.json", "test.json"):
        p = root / name
        h.update(name.encode())
        h.update(p.read_bytes() if p.is_file() else b"-")
    images = root / "images"
    if images.is_dir():
        for p in sorted(images.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(root)).encode())
                with open(p, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
    return h.hexdigest()[:16]


def git_commit(cwd: str | Path = ".") -> str | None:
    """The checked-out commit (with ``-dirty`` if there are uncommitted changes), or None."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def system_info() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def describe_run(prepared_dir: str | Path) -> dict[str, Any]:
    return {
        "dataset_fingerprint": dataset_fingerprint(prepared_dir),
        "git_commit": git_commit(),
        "system": json.dumps(system_info()),
    }
