"""``python -m ssd.summary``: the headline figures of the last pipeline run, one screen."""

from __future__ import annotations

import json
import sys

from ssd.config import load_config

KEYS = (
    "map",
    "map50",
    "map75",
    "map_small",
    "map_medium",
    "map_large",
    "voc07_map50",
    "voc_map50",
    "f1",
    "f1_threshold",
)


def main() -> None:
    cfg = load_config(sys.argv[1] if len(sys.argv) > 1 else "params.yaml")
    reports = cfg.layout.reports
    metrics = json.loads(cfg.layout.evaluation.read_text())
    print(f"dataset {cfg.data.name}, split {metrics.get('split', cfg.evaluate.split)}:")
    print("  " + "  ".join(f"{k} {metrics[k]:.3f}" for k in KEYS if metrics.get(k) is not None))
    dap = metrics.get("errors", {}).get("dap", {})
    if dap:
        print("  TIDE dAP50: " + "  ".join(f"{k} {100 * v:.1f}" for k, v in dap.items()))
    registry = reports / "registry.json"
    if registry.is_file():
        r = json.loads(registry.read_text())
        print(f"  registry: {r['model_uri']} - {r['reason']}")
    if cfg.layout.audit.is_file():
        audit = json.loads(cfg.layout.audit.read_text())
        counts = ", ".join(f"{k} {n}" for k, n in audit["counts"].items())
        print(f"  label audit of {audit['split']}: {counts} ({reports / 'audit'})")
    print(
        f"  metrics {reports / 'metrics.json'}, plots {reports / 'plots'}, "
        f"error labels {reports / 'errors'}, detector {cfg.layout.detector}"
    )
    print("  next: make browse (FiftyOne), make mlflow-ui, dvc metrics show, dvc plots show")
    print(
        "  keep this run as the baseline of your experiments (DVC staged its files):\n"
        "    git commit -m 'pipeline run'    # then: dvc exp run -S train.lr=0.01; dvc exp show"
    )


if __name__ == "__main__":
    main()
