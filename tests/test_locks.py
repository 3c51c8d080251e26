"""One run per output folder (ssd.locks): a second run on the same outputs stops at once with
one message naming the first; a lock left by a killed run is taken over. Each test starts real
processes: one that holds the lock, one that runs the ``ssd`` command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ssd.locks import lock_path, output_lock

SSD = [sys.executable, "-m", "ssd.cli"]
# A process that takes the lock of argv[1] through the library, says so, and holds it.
HOLDER = (
    "import sys, time\n"
    "from ssd.locks import output_lock\n"
    "with output_lock(sys.argv[1]):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(120)\n"
)


def hold(folder: Path, **env: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder), "--holder-of-the-lock"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def ssd(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SSD, *args],
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


PREPARE = ("data.name=tiny", "data.num_images=12", "data.image_size=64")


@pytest.mark.parametrize(
    ("command", "folder"),
    [
        (["prepare", *sets(*PREPARE)], "data/prepared/tiny"),
        (["train", "--no-progress", *sets("data.name=tiny")], "models/tiny"),
        (["register", *sets("data.name=tiny")], "reports/tiny"),
    ],
)
def test_a_second_run_on_the_same_outputs_stops_naming_the_first(
    tmp_path: Path, command: list[str], folder: str
) -> None:
    holder = hold(tmp_path / folder)
    try:
        run = ssd(*command, cwd=tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert run.returncode != 0
    message = run.stderr.strip()
    assert "Traceback" not in message, message
    assert f"is being written by another run, pid {holder.pid}" in message
    assert "--holder-of-the-lock" in message  # the other run's command line
    assert f"kill {holder.pid}" in message
    assert not (tmp_path / folder).exists()  # nothing written, nothing deleted


def test_a_lock_left_by_a_killed_run_is_taken_over_and_the_dead_run_named(
    tmp_path: Path,
) -> None:
    holder = hold(tmp_path / "data/prepared/tiny")
    holder.send_signal(signal.SIGKILL)  # the kernel releases the flock; the record stays
    holder.wait()
    assert str(holder.pid) in lock_path(tmp_path / "data/prepared/tiny").read_text()
    run = ssd("prepare", *sets(*PREPARE), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert f"pid {holder.pid}" in run.stderr and "no longer runs" in run.stderr
    assert (tmp_path / "data/prepared/tiny/report.json").is_file()
    assert lock_path(tmp_path / "data/prepared/tiny").read_text() == ""  # released


def test_torchrun_ranks_other_than_0_do_not_take_the_lock(tmp_path: Path) -> None:
    """All ranks of one run call the stage: only rank 0 (which writes) holds the lock, so
    rank 1 neither waits for it nor fails on it."""
    holder = hold(tmp_path / "models/tiny")  # rank 0 of the run
    try:
        start = time.monotonic()
        ranked = subprocess.run(
            [sys.executable, "-c", HOLDER.replace("120", "0"), str(tmp_path / "models/tiny")],
            env={**os.environ, "RANK": "1"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ranked.returncode == 0, ranked.stderr
        assert time.monotonic() - start < 30
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_is_released_at_the_end_of_the_block(tmp_path: Path) -> None:
    with output_lock(tmp_path / "out"):
        pass
    with output_lock(tmp_path / "out"):  # the same process again: free
        pass
    assert lock_path(tmp_path / "out") == tmp_path / ".out.lock"
