"""Two projects never share a FiftyOne database: each process of a project attaches to the
database service on that project's own ``.fiftyone/db`` (or starts one), never to another
checkout's running service (FiftyOne alone attaches to any)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fiftyone")

# Connects FiftyOne as `ssd browse` does in project argv[1]; prints the port; holds the
# connection (and so the database service) until its stdin closes.
CLIENT = """
import sys
from pathlib import Path
from ssd.integrations.env import configure_offline_defaults
configure_offline_defaults(Path(sys.argv[1]))
import ssd.integrations.fiftyone
import fiftyone.core.odm.database as fod
fod.get_db_client().admin.command("ping")
print(fod._connection_kwargs["port"], flush=True)
sys.stdin.read()
"""


def _client(project: Path, home: Path) -> tuple[subprocess.Popen, int]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FIFTYONE_") or k == "FIFTYONE_DO_NOT_TRACK"
    }
    env |= {"HOME": str(home), "FIFTYONE_DATABASE_VALIDATION": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(project)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line.isdigit(), f"client of {project} printed {line!r}"
    return proc, int(line)


def _close(proc: subprocess.Popen) -> None:
    if proc.stdin:
        proc.stdin.close()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_two_projects_get_two_databases_and_one_project_shares_its_own(tmp_path: Path) -> None:
    a, b, home = tmp_path / "a", tmp_path / "b", tmp_path / "home"
    for folder in (a, b, home):
        folder.mkdir()
    first, port_a = _client(a, home)
    try:
        second, port_b = _client(b, home)  # project a's service runs: not attached to
        try:
            assert port_b != port_a
            assert (b / ".fiftyone" / "db" / "mongod.lock").is_file()
            again, port_a2 = _client(a, home)  # the same project shares its own service
            _close(again)
            assert port_a2 == port_a
        finally:
            _close(second)
    finally:
        _close(first)
