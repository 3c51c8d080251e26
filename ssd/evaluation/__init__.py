"""Evaluation of a detector on a prepared split: COCO and VOC metrics, TIDE error types,
default-box coverage, plots and per-object error labels.

Entry points: :func:`ssd.evaluation.run.evaluate_detections` (a COCO results list against a
split), :func:`ssd.evaluation.run.evaluate_model` (run a checkpoint first),
:func:`ssd.evaluation.suggest.suggest_priors` (default boxes fitted to the training boxes)
and :func:`ssd.audit.report.run_audit` / ``audit_model`` (the label audit: the
labels a detector says are probably wrong, :mod:`ssd.audit.rank`).
No MLOps tool is imported here.
"""

from ssd.errors import EvaluationError

__all__ = ["EvaluationError"]
