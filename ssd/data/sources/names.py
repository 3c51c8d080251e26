"""Class-name files: a YAML with ``names`` (list, or mapping id → name) or plain text
with one name a line. Used by the VOC (optional) and YOLO readers."""

from __future__ import annotations

from pathlib import Path

import yaml

from ssd.data.errors import DataError

YAML_SUFFIXES = (".yaml", ".yml")


def read_names(path: Path) -> list[str]:
    """Class names in label order (index 0 = first class). Raises :class:`DataError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read class names from {path}: {err}") from None
    if path.suffix.lower() in YAML_SUFFIXES:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise DataError(f"class names file {path} is not valid YAML: {err}") from None
        raw = data.get("names") if isinstance(data, dict) else data
        if isinstance(raw, dict):
            try:
                ids = sorted(int(k) for k in raw)
            except (TypeError, ValueError):
                raise DataError(f"{path}: 'names' keys must be class ids 0..C-1") from None
            if ids != list(range(len(ids))):
                raise DataError(f"{path}: 'names' ids must be 0..{len(ids) - 1}, got {ids}")
            lookup = {int(k): v for k, v in raw.items()}
            names = [str(lookup[i]) for i in ids]
        elif isinstance(raw, list):
            names = [str(n) for n in raw]
        else:
            raise DataError(
                f"{path} has no 'names' list; write e.g. 'names: [cat, dog]' or one name a line"
            )
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    names = [n.strip() for n in names]
    if not names:
        raise DataError(f"class names file {path} lists no classes; add one name a line")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates or any(not n for n in names):
        raise DataError(f"class names in {path} must be unique and non-empty: {duplicates}")
    return names


def names_path(root: Path, names_file: str) -> Path:
    """``data.names_file`` relative to the dataset root (absolute: as given)."""
    path = Path(names_file).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise DataError(f"data.names_file '{names_file}' not found (looked at {path})")
    return path
