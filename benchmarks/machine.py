"""Machine description and report writing shared by the benchmarks."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

REPORT_DIR = Path(os.environ.get("SSD_BENCH_DIR", "reports/bench"))


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def write_report(name: str, figures: dict[str, Any], ratio: dict[str, Any]) -> Path:
    """Write ``reports/bench/<name>.json`` with the figures, the machine and the ratio."""
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    path = REPORT_DIR / f"{name}.json"
    payload = {"benchmark": name, "machine": machine(), "figures": figures, "ratio": ratio}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
