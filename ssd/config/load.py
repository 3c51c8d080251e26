"""Loading the config once: ``params.yaml`` plus ``--set key=value`` overrides, validated
into :class:`~ssd.config.sections.Config`; every mistake is one :class:`ConfigError` that
names the key and the valid values (or a key's new place, for an older params.yaml)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ssd.config.safe_yaml import load_yaml
from ssd.config.sections import Config
from ssd.errors import ConfigError

# Keys that moved when each stage got its own section: old key -> new key (None: removed).
MOVED_KEYS: dict[str, str | None] = {
    "data.augment": "train.augment",
    "model.iou_threshold": "train.iou_threshold",
    "model.neg_pos_ratio": "train.neg_pos_ratio",
    "model.alpha": "train.alpha",
    "model.score_threshold": "postprocess.score_threshold",
    "model.nms_threshold": "postprocess.nms_threshold",
    "model.candidates_per_class": "postprocess.candidates_per_class",
    "model.detections_per_image": "postprocess.detections_per_image",
    "evaluate.box_tolerance_px": None,
}


def _valid_keys(model: type[BaseModel], path: Iterable[str | int]) -> list[str]:
    """Field names of the (nested) section that ``path`` points into."""
    current: Any = model
    for part in path:
        if not isinstance(part, str):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            break
        annotation = fields[part].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            current = annotation
        else:
            break
    return sorted(getattr(current, "model_fields", {}))


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"Invalid configuration ({source}):"]
    for e in err.errors():
        loc = [p for p in e["loc"] if isinstance(p, str | int)]
        key = ".".join(str(p) for p in loc) or "<root>"
        if e["type"] == "extra_forbidden":
            parent = [p for p in loc[:-1] if isinstance(p, str)]
            valid = _valid_keys(Config, parent)
            lines.append(f"  - unknown key '{key}'; valid keys here: {', '.join(valid)}")
        else:
            msg = e["msg"]
            if e["type"] == "literal_error" and "ctx" in e:
                msg = f"must be one of {e['ctx'].get('expected')}"
            shown = repr(e.get("input"))
            shown = shown if len(shown) <= 120 else shown[:117] + "..."
            lines.append(f"  - {key} = {shown}: {msg}")
    return "\n".join(lines)


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=VALUE``; the value is read as YAML (``0.01``, ``true``, ``[1, 2]``)."""
    if "=" not in item:
        raise ConfigError(f"--set expects KEY=VALUE with a dotted key, got '{item}'")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set key '{key}' is not a dotted key like train.lr")
    try:
        value = load_yaml(raw) if raw.strip() else None
    except (yaml.YAMLError, RecursionError):
        value = raw
    return parts, value


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return ``raw`` with each ``KEY=VALUE`` override written into the nested dicts."""
    out = yaml.safe_load(yaml.safe_dump(raw)) or {}
    for item in overrides:
        parts, value = parse_override(item)
        node = out
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {item}: '{p}' is a value, not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def _moved_keys(raw: Mapping[str, Any]) -> list[str]:
    """One line per key of an older params.yaml layout that is given, naming its new place."""
    lines = []
    for old, new in MOVED_KEYS.items():
        section, key = old.split(".")
        if isinstance(raw.get(section), Mapping) and key in raw[section]:
            where = (
                f"moved to '{new}'"
                if new
                else "was removed: boxes past the image border are kept and scored, "
                "as pycocotools does"
            )
            lines.append(f"  - '{old}' {where}")
    return lines


def config_from_dict(raw: Mapping[str, Any], source: str = "config") -> Config:
    moved = _moved_keys(raw)
    if moved:
        raise ConfigError(
            f"Invalid configuration ({source}): each stage now owns its section "
            "(docs/configuration.md):\n" + "\n".join(moved)
        )
    try:
        return Config.model_validate(dict(raw))
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def _read_params(path: Path) -> str | None:
    """The text of a params file; None when it does not exist. Anything else that makes it
    unusable (a folder, a binary file, a name too long) is a :class:`ConfigError`."""
    shown = str(path)[:200]
    if "\x00" in str(path):
        raise ConfigError(f"params file name {shown!r} contains a NUL character")
    try:
        if not path.exists():
            return None
        if path.is_dir():
            raise ConfigError(f"params file '{shown}' is a folder; give a YAML file (params.yaml)")
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"params file '{shown}' cannot be read: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"params file '{shown}' is not a text (YAML) file") from None
    if "\x00" in text:
        raise ConfigError(f"params file '{shown}' is not a text (YAML) file")
    return text


def load_config(path: str | Path | None = "params.yaml", overrides: Iterable[str] = ()) -> Config:
    """Load ``params.yaml`` (missing file = all defaults) and apply ``--set`` overrides."""
    raw: dict[str, Any] = {}
    source = "defaults"
    text = _read_params(Path(path)) if path is not None else None
    if path is not None and text is not None:
        source = str(path)
        try:
            loaded = load_yaml(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {err}") from None
        except RecursionError:
            raise ConfigError(f"{path} is not valid YAML: nested too deeply") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(
                f"{path} must hold a mapping of sections, got {type(loaded).__name__}"
            )
        raw = loaded or {}
    elif path is not None and Path(path) != Path("params.yaml"):
        raise ConfigError(f"params file '{str(path)[:200]}' does not exist")
    overrides = list(overrides)
    if overrides:
        source += " + --set " + " ".join(overrides)
    try:
        return config_from_dict(apply_overrides(raw, overrides), source)
    except RecursionError:
        raise ConfigError(
            f"Invalid configuration ({source}): a value is nested too deeply"
        ) from None


def flatten(cfg: BaseModel, prefix: str = "") -> dict[str, Any]:
    """``{"model.backbone": "vgg16", ...}``: the config as flat dotted keys (for logging)."""
    out: dict[str, Any] = {}
    for name in type(cfg).model_fields:
        value = getattr(cfg, name)
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            out.update(flatten(value, key + "."))
        else:
            out[key] = value
    return out
