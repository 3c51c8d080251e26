"""Every benchmark of ``make bench`` runs end to end on a tiny budget and writes its report
with its ratio against the reference: benchmarks use the library's APIs and would
otherwise only break when someone next measures. The figures themselves are not checked
here (speed is measured in benchmarks, not in tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BCCD = REPO.parent / "shared" / "datasets" / "bccd"


def _tiny(tmp: Path) -> list[str]:
    sets = [
        f"data.prepared_root={tmp / 'prepared'}",
        "data.name=tiny",
        "data.num_images=24",
        "data.image_size=128",
        "model.input_size=128",
        "train.epochs=1",
        "train.batch_size=4",
        "train.num_workers=0",
        "train.warmup_steps=1",
    ]
    return [a for s in sets for a in ("--set", s)]


CASES = {
    "bench_core": (["--batch", "1", "--iters", "1"], "core"),
    "bench_eval": (["--images", "20", "--repeats", "1", "--model-images", "0"], "eval"),
    "bench_data": (
        [
            "--data",
            str(BCCD),
            "--workers",
            "0",
            "--batch-size",
            "2",
            "--batches",
            "1",
            "--steps",
            "1",
        ],
        "data",
    ),
    "bench_inference": (
        ["--batches", "1", "--iters-lite", "1", "--pairs", "lite0", "--threads", "1"],
        "inference",
    ),
    "bench_train": (
        ["--iters", "1", "--iters-infer", "1", "--pairs", "train_frozen", "infer_b1"],
        "train",
    ),
    "bench_time_to_accuracy": (["--threads", "1", "--ema-spans", "0.5"], "time_to_accuracy-tiny"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_benchmark_runs_and_reports_its_ratio(name: str, tmp_path: Path) -> None:
    if name == "bench_data" and not BCCD.is_dir():
        pytest.skip(f"{BCCD} is not on this machine")
    args, report = CASES[name]
    if name == "bench_time_to_accuracy":
        args = [*args, *_tiny(tmp_path)]
    env = {**os.environ, "SSD_BENCH_DIR": str(tmp_path / "bench"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / f"{name}.py"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    payload = json.loads((tmp_path / "bench" / f"{report}.json").read_text())
    assert payload["machine"]["cpu_count"] and payload["figures"]
    assert payload["ratio"], f"{name} reports no ratio against its reference"
