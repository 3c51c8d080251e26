"""Typed configuration, loaded once from ``params.yaml`` plus ``--set key=value`` overrides.

One pydantic model per ``params.yaml`` section (:mod:`ssd.config.sections`). Unknown keys
are errors that name the valid ones; values that follow from others (input size and aspect
ratios from the backbone) are derived, not repeated in the file. :mod:`ssd.stages` is the
one place a whole :class:`Config` meets the library; components take explicit arguments.
:class:`Layout` names every file a stage reads or writes.
"""

from ssd.config.layout import Layout
from ssd.config.load import (
    MOVED_KEYS,
    apply_overrides,
    config_from_dict,
    flatten,
    load_config,
    parse_override,
)
from ssd.config.sections import (
    MAX_CLASSES,
    MAX_INPUT_SIZE,
    RAW_ROOT,
    AuditConfig,
    AugmentConfig,
    Config,
    DataConfig,
    EvaluateConfig,
    ModelConfig,
    PostprocessConfig,
    PriorConfig,
    TrackingConfig,
    TrainConfig,
)

__all__ = [
    "MAX_CLASSES",
    "MAX_INPUT_SIZE",
    "MOVED_KEYS",
    "RAW_ROOT",
    "AuditConfig",
    "AugmentConfig",
    "Config",
    "DataConfig",
    "EvaluateConfig",
    "Layout",
    "ModelConfig",
    "PostprocessConfig",
    "PriorConfig",
    "TrackingConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "flatten",
    "load_config",
    "parse_override",
]
