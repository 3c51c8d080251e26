"""Tiny inputs that would take the machine's memory are refused with one short message:
sizes bounded in the config, YAML aliases bounded wherever user YAML is read, messages
bounded in length."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from data_builders import make_yolo

from ssd.config import DataConfig, load_config
from ssd.config.safe_yaml import MAX_EXPANDED, load_yaml
from ssd.data.prepare import prepare_dataset
from ssd.errors import MAX_MESSAGE, ConfigError, DataError, SSDError

# The "billion laughs" in YAML: 9 levels of 9 aliases, 10^9 strings from ~300 bytes.
BOMB = "\n".join(
    ["a: &a [" + ", ".join(["lol"] * 9) + "]"]
    + [
        f"{chr(ord('a') + i)}: &{chr(ord('a') + i)} ["
        + ", ".join([f"*{chr(ord('a') + i - 1)}"] * 9)
        + "]"
        for i in range(1, 9)
    ]
    + ["names: *i"]
)


def test_a_yaml_alias_bomb_is_refused_before_it_expands() -> None:
    assert len(BOMB) < 500
    start = time.monotonic()
    with pytest.raises(Exception, match="aliases") as err:
        load_yaml(BOMB)
    assert time.monotonic() - start < 5
    assert f"more than {MAX_EXPANDED:,} characters" in str(err.value)
    assert load_yaml("a: &x [1, 2]\nb: *x\n") == {"a": [1, 2], "b": [1, 2]}  # anchors still work


def test_a_yolo_data_yaml_alias_bomb_is_one_short_message(tmp_path: Path) -> None:
    src = make_yolo(tmp_path / "yolo", {f"im{i}": "0 0.5 0.5 0.2 0.2\n" for i in range(4)})
    (src / "data.yaml").write_text(BOMB + "\n")
    with pytest.raises(DataError) as err:
        prepare_dataset(
            DataConfig(source="yolo", path=str(src), prepared_root=str(tmp_path / "p"), name="y")
        )
    message = str(err.value)
    assert "data.yaml" in message and "aliases" in message and len(message) < 1000


def test_a_params_file_alias_bomb_is_a_config_error(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(BOMB.replace("names: *i", "train: {x: *i}") + "\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML.*aliases"):
        load_config(params)


@pytest.mark.parametrize(
    ("override", "bound"),
    [
        ("model.input_size=100000", "less than or equal to 2048"),
        ("model.num_classes=200000", "less than or equal to 2000"),
        ("train.batch_size=100000", "less than or equal to 1024"),
        ("model.priors.aspect_ratios=[[2,3,4,5,6,7,8,9,10]]", "at most 8 aspect ratios"),
    ],
)
def test_sizes_that_allocate_are_bounded_in_the_config(override: str, bound: str) -> None:
    with pytest.raises(ConfigError, match=bound):
        load_config(None, [override])


def test_ssd_info_with_a_huge_input_size_is_one_message_in_little_memory(tmp_path: Path) -> None:
    """The case that took 15 GB: now refused before anything is built, under a 3 GB cap."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    run = subprocess.run(
        [sys.executable, "-m", "ssd.cli", "info", "--set", "model.input_size=100000"],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=cap,
    )
    assert run.returncode != 0
    assert "Traceback" not in run.stderr and "MemoryError" not in run.stderr
    assert "model.input_size" in run.stderr and "2048" in run.stderr


def test_a_message_is_bounded_in_length() -> None:
    err = SSDError("x" * 10_000_000)
    assert len(str(err)) < MAX_MESSAGE + 100
    assert str(err).endswith("(9,996,000 more characters not shown)")
