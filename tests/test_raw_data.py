"""The user's raw data is versioned by DVC and the pipeline sees it change (data/raw/<name>).

A small generated VOC folder is `dvc add`ed in a tiny project with this repo's dvc.yaml:
editing one XML makes `dvc status` report `prepare`, `dvc repro` reruns it and records the
new version; `dvc push`, deleting the folder and the cache, and `dvc pull` bring the source
back byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent / "data"))
from data_builders import good_voc

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(cmd: list[str], cwd: Path) -> str:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "OMP_NUM_THREADS": "1",
    }
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}"
    return p.stdout + p.stderr


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_raw_folder_change_reruns_prepare_and_push_pull_restores_it(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    for name in ("dvc.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    (root / ".dvc").mkdir()
    shutil.copy(REPO / ".dvc" / "config", root / ".dvc" / "config")
    shutil.copytree(REPO / "ssd", root / "ssd", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "data", root / "data")
    shutil.copytree(REPO / "bin", root / "bin")  # bin/ssd: what the stages run
    raw = good_voc(root / "data" / "raw" / "cells", n=8)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(name="cells", source="voc")
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run(["git", "init", "-q"], root)
    dvc = str(BIN / "dvc")

    run([dvc, "add", "data/raw/cells"], root)
    assert "/cells" in (root / "data" / "raw" / ".gitignore").read_text()  # git never holds it
    run([*git, "add", "-A"], root)
    run([*git, "commit", "-qm", "cells"], root)
    run([dvc, "repro", "prepare"], root)
    assert "prepare" not in json.loads(run([dvc, "status", "--json", "prepare"], root))

    xml = raw / "Annotations" / "im3.xml"
    xml.write_text(xml.read_text().replace("<name>cat</name>", "<name>dog</name>"))
    status = json.loads(run([dvc, "status", "--json"], root))
    assert {"changed deps": {"data/raw/cells": "modified"}} in status["prepare"]
    assert "data/raw/cells.dvc" in status  # the tracked source itself is modified
    before = (root / "data" / "raw" / "cells.dvc").read_text()
    out = run([dvc, "repro", "prepare"], root)
    assert "Running stage 'prepare'" in out
    assert (root / "data" / "raw" / "cells.dvc").read_text() != before  # new version recorded
    prepared = json.loads((root / "data/prepared/cells/report.json").read_text())
    assert prepared["counts"]["images_kept"] == 8
    after = json.loads(run([dvc, "status", "--json"], root))
    assert "prepare" not in after and "data/raw/cells.dvc" not in after

    expected = digest(raw)
    run([dvc, "push"], root)
    shutil.rmtree(raw)
    shutil.rmtree(root / ".dvc" / "cache")
    run([dvc, "pull", "data/raw/cells.dvc"], root)
    assert digest(raw) == expected
