"""``ssd audit`` from the command line and the stage's wiring: the ``audit`` config section
becomes the audit's thresholds in one place, the trained detector is the default, errors
are one message with exit code 2, and the Prefect task runs the same stage."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
import torch
from audit_cases import CLASSES, planted_case, write_prepared_case
from typer.testing import CliRunner

from ssd.audit.rank import KINDS, AuditOptions
from ssd.audit.report import audit_options
from ssd.cli import app
from ssd.config import AuditConfig, load_config
from ssd.errors import ConfigError

runner = CliRunner()


@dataclass
class Project:
    tmp: Path
    detections: Path
    overrides: list[str]  # --set values pointing every path into tmp

    @property
    def sets(self) -> list[str]:
        return [arg for o in self.overrides for arg in ("--set", o)]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A prepared dataset ``planted`` (test split: 12 images with planted label mistakes),
    the detections of a decent detector on it, and an untrained detector saved where
    ``ssd train`` puts it."""
    from ssd.config import ModelConfig
    from ssd.model.builder import build_model
    from ssd.model.weights import save_detector

    tmp = tmp_path_factory.mktemp("audit-cli")
    case = planted_case(seed=0, num_images=12, per_kind=3)
    write_prepared_case(tmp / "prepared" / "planted", case)
    detections = tmp / "detections.json"
    detections.write_text(json.dumps(case.detections))
    torch.manual_seed(0)
    cfg = ModelConfig(input_size=128, backbone_weights=None)
    save_detector(tmp / "models" / "planted" / "ssd", build_model(cfg, 3), cfg, CLASSES)
    overrides = [
        "data.name=planted",
        f"data.prepared_root={tmp / 'prepared'}",
        f"train.out_dir={tmp / 'models'}",
        f"evaluate.out_dir={tmp / 'reports'}",
        "audit.thumbnails_per_kind=2",
        "audit.grid_per_kind=2",
        "audit.device=cpu",
    ]
    return Project(tmp, detections, overrides)


def test_audit_of_a_detection_file_prints_the_summary(project: Project) -> None:
    tmp = project.tmp
    args = ["audit", "--detections", str(project.detections), *project.sets]
    res = runner.invoke(app, [*args, "--set", "audit.min_score=0.6"])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp / "reports" / "planted" / "audit.json").read_text())
    assert data["split"] == "test" and data["num_images"] == 12
    assert data["options"]["min_score"] == 0.6  # the config section reached the audit
    assert data["postprocess"] is None  # detections from elsewhere
    assert data["model_ap50"] >= 0.1 and data["note"] is None and "too weak" not in res.output
    assert f"-> {data['num_suspects']} suspects" in res.output
    for kind in KINDS:
        assert f"  {kind:<12} {data['counts'][kind]:>6}" in res.output
    assert "next: ssd browse --split test" in res.output
    crops = list((tmp / "reports" / "planted" / "audit" / "crops").rglob("*.png"))
    assert 0 < len(crops) <= 2 * len(KINDS)


def test_audit_runs_the_trained_detector_with_the_postprocess_section(project: Project) -> None:
    tmp, sets = project.tmp, project.sets
    out = tmp / "model-audit"
    res = runner.invoke(app, ["audit", *sets, "--out", str(out), "--split", "test"])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "audit.json").read_text())
    assert data["postprocess"]["score_threshold"] == 0.01 and data["num_detections"] > 0
    # an untrained detector: its suspects are its own mistakes, and the audit says so
    assert data["model_ap50"] < 0.1 and "too weak" in data["note"]
    assert "note: AP50 0.0" in res.output and "not the labels'" in res.output
    # Weak detections are the evidence against a spurious label: a higher threshold is
    # refused, with the key to change.
    res = runner.invoke(app, ["audit", *sets, "--set", "postprocess.score_threshold=0.3"])
    assert res.exit_code == 2
    assert "postprocess.score_threshold (0.3) is above audit.background_score (0.1)" in res.output


def test_audit_errors_are_one_message(project: Project, tmp_path: Path) -> None:
    sets = project.sets
    cases = [
        (["--model", "m", "--detections", "d.json"], "not both"),
        (["--split", "holdout"], "--split must be one of train, val, test"),
        (["--split", "train"], "split 'train' not found"),
        (["--detections", str(tmp_path / "none.json")], "none.json' does not exist"),
        (["--set", f"train.out_dir={tmp_path}"], "does not exist; train first"),
        (["--set", "audit.near_iou=0.6"], "near_iou <= match_iou <= loose_iou"),
        (["--set", "audit.min_score=2"], "audit.min_score = 2"),
    ]
    for args, message in cases:
        res = runner.invoke(app, ["audit", *sets, *args])
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output, (args, res.output)
        assert "Traceback" not in res.output


def test_the_audit_section_builds_the_options_in_one_place() -> None:
    # Every threshold of the audit is a key of the section, with the same default.
    thresholds = {f.name for f in fields(AuditOptions)}
    assert thresholds <= set(AuditConfig.model_fields)
    assert audit_options(AuditConfig()) == AuditOptions()
    cfg = AuditConfig(min_score=0.7, near_iou=0.2, match_iou=0.4, loose_iou=0.8)
    built = audit_options(cfg)
    assert all(getattr(built, name) == getattr(cfg, name) for name in thresholds)
    # Old params files without an audit section load with the defaults.
    assert load_config(None).audit.model_dump() == AuditConfig().model_dump()
    with pytest.raises(ConfigError, match=r"unknown key 'audit\.export'; valid keys here: "):
        load_config(None, ["audit.export=voc"])


def test_prefect_runs_the_audit_stage_after_evaluate() -> None:
    """Each Prefect task runs one DVC stage: the audit is one of them, after evaluate, and
    has its own flow and deployment."""
    import yaml

    from pipelines.flows import STAGE_TASKS, STAGES, audit_flow
    from pipelines.serve import DEPLOYMENTS

    dvc_stages = yaml.safe_load((Path(__file__).parents[2] / "dvc.yaml").read_text())["stages"]
    assert set(STAGES) == set(dvc_stages)
    assert STAGES.index("audit") > STAGES.index("evaluate") and "audit" in STAGE_TASKS
    assert audit_flow.name == "audit" and DEPLOYMENTS["audit-labels"] is audit_flow
