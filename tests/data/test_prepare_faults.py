"""`ssd prepare` on a folder built by each fault of issue 13 ends with exit 0 and a report,
or exit 2 and one line: never a traceback, never a read outside the dataset root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_builders import reads_inside
from faults import FAULTS
from typer.testing import CliRunner

from ssd.cli import app


def run_prepare(tmp_path: Path, overrides: list[str]) -> tuple[int, str]:
    params = tmp_path / "params.yaml"
    params.write_text("{}\n")
    args = ["prepare", "--params", str(params)]
    args += ["--set", "data.name=ds", "--set", f"data.prepared_root={tmp_path / 'prepared'}"]
    for item in overrides:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback: the test shows it
    return result.exit_code, result.output


@pytest.mark.parametrize("fault", list(FAULTS))
def test_prepare_reports_or_stops_with_one_line(tmp_path: Path, fault: str) -> None:
    built = FAULTS[fault](tmp_path)
    with reads_inside(built.outside) as reads:
        code, output = run_prepare(tmp_path, built.overrides())
    assert reads == [], f"read outside data.path: {reads}"
    assert "Traceback" not in output
    assert (code, built.expect[1] in output) == (built.expect[0], True), output
    if code == 2:
        lines = [line for line in output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), output
    else:
        report = json.loads((tmp_path / "prepared" / "ds" / "report.json").read_text())
        assert report["counts"]["images_kept"] > 0
        prepared = (tmp_path / "prepared" / "ds").rglob("*")
        secret = (built.outside / "secret.jpg").read_bytes()
        assert not any(p.is_file() and p.read_bytes() == secret for p in prepared)
