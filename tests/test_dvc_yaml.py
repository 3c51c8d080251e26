"""dvc.yaml cannot drift from the code: each stage lists exactly the code it runs and the
params.yaml keys it reads.

The code is derived statically (tests/stage_code.py: the import closure of the stage's
``ssd`` subcommand); the keys dynamically, by running every stage (a process each, as DVC
runs them; tests/stage_keys.py) on a tiny project (prepare on each input format) while
recording each config key read. A stage that reads a key dvc.yaml does not list, or lists
a key or file it does not use, fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from stage_code import REPO, command_code, dependency
from stage_keys import leaf_keys

sys.path.insert(0, str(Path(__file__).parent / "data"))
from data_builders import coco_boxes, coco_images, good_voc, make_coco, make_yolo

STAGES = {
    "prepare": "prepare",
    "train": "train",
    "evaluate": "evaluate",
    "register": "register",
    "audit": "audit",
}


def dvc_stages() -> dict[str, Any]:
    stages: dict[str, Any] = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return stages


def declared_keys(stage: str) -> set[str]:
    """The stage's ``params`` with whole sections expanded to their leaf keys."""
    every = leaf_keys()
    out: set[str] = set()
    for entry in dvc_stages()[stage].get("params", []):
        matched = {k for k in every if k == entry or k.startswith(entry + ".")}
        assert matched, f"dvc.yaml {stage}: params entry '{entry}' is no config key"
        out |= matched
    return out


def declared_code(stage: str) -> set[str]:
    """The stage's deps inside ssd/ (layers: folders; top-level modules: files)."""
    deps = set()
    for dep in dvc_stages()[stage]["deps"]:
        if dep.split("/")[0] != "ssd":
            continue
        assert (REPO / dep).exists(), f"dvc.yaml {stage}: dependency {dep} does not exist"
        deps.add(dep)
    return deps


@pytest.mark.parametrize("stage", list(STAGES))
def test_each_stage_lists_exactly_the_code_it_runs(stage: str) -> None:
    """At the level of the layers: a folder of ssd/ is listed when the stage runs any module
    in it, a top-level module when the stage imports it."""
    if stage == "register":  # the registered MLflow model carries the ssd package as code
        expected = {"ssd"}
    else:
        expected = {dependency(p) for p in command_code(STAGES[stage])}
    declared = declared_code(stage)
    missing = sorted(expected - declared)
    extra = sorted(declared - expected)
    assert not missing and not extra, (
        f"dvc.yaml stage '{stage}': runs but does not list {missing}; lists but does not run "
        f"{extra}"
    )


# ------------------------------------------------------------------ keys read, recorded


TINY = {
    "data": {"name": "tiny", "num_images": 12, "image_size": 128},
    "model": {"input_size": 128},
    "train": {"epochs": 1, "max_steps": 2, "batch_size": 2, "num_workers": 0, "eval_every": 0},
    "evaluate": {"sample_images": 1},
    "audit": {"thumbnails_per_kind": 2, "grid_per_kind": 2},
    "tracking": {"register_min": 0.0, "champion_min": 0.0},  # a 2-step model is weak
}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Run every stage in-process in a tiny project; the keys each one read."""
    root = tmp_path_factory.mktemp("project")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sources = root / "sources"
    good_voc(sources / "voc")
    (sources / "voc" / "names.txt").write_text("cat\ndog\n")
    make_coco(sources / "coco", coco_images(6), coco_boxes(6))
    make_yolo(sources / "yolo", {f"y{i}": "0 0.5 0.5 0.2 0.2\n" for i in range(6)}, ["a"])

    runs: dict[str, list[list[str]]] = {
        "prepare": [
            [],
            ["data.source=voc", f"data.path={sources / 'voc'}", "data.names_file=names.txt"],
            [
                "data.source=voc",
                f"data.path={sources / 'voc'}",
                "data.annotations_dir=Annotations",
                "data.images_dir=JPEGImages",
            ],
            ["data.source=coco", f"data.path={sources / 'coco'}", "data.images_dir=images"],
            [
                "data.source=coco",
                "data.coco_json=annotations/instances.json",
                f"data.path={sources / 'coco'}",
            ],
            ["data.source=yolo", f"data.path={sources / 'yolo'}"],
        ],
        "train": [["tracking.enabled=true"]],
        "evaluate": [[]],
        "register": [[]],
        "audit": [[]],
    }
    out: dict[str, set[str]] = {}
    for stage, variants in runs.items():
        keys: set[str] = set()
        for n, sets in enumerate(variants):
            name = ["--set", "data.name=tiny"] if stage == "prepare" else []
            args = [STAGES[stage], "--params", "params.yaml", *name]
            for s in sets:
                args += ["--set", s]
            if stage == "train":
                args.append("--no-progress")
            record = root / f"keys-{stage}-{n}.json"
            # a process per stage, as DVC runs them (MLflow & co. keep global state)
            p = subprocess.run(
                [
                    sys.executable,
                    str(Path(__file__).with_name("stage_keys.py")),
                    str(record),
                    *args,
                ],
                cwd=root,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert p.returncode == 0, f"{args}: {p.stdout}{p.stderr}"
            keys |= set(json.loads(record.read_text()))
        out[stage] = keys
    assert json.loads((root / "reports" / "tiny" / "registry.json").read_text())["version"] == 1
    return out


@pytest.mark.parametrize("stage", list(STAGES))
def test_each_stage_lists_exactly_the_keys_it_reads(
    stage: str, recorded: dict[str, set[str]]
) -> None:
    declared = declared_keys(stage)
    read = recorded[stage]
    assert not read - declared and not declared - read, (
        f"dvc.yaml stage '{stage}': reads but does not list {sorted(read - declared)}; "
        f"lists but does not read {sorted(declared - read)}"
    )
