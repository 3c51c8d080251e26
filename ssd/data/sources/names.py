"""Class-name files: a YAML with ``names`` (a list, or a mapping id → name, as Ultralytics
writes it) or plain text with one name a line. Used by the VOC (optional) and YOLO readers.
Files are read through the dataset root (:class:`~ssd.data.safety.DatasetRoot`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ssd.config.safe_yaml import load_yaml
from ssd.errors import DataError
from ssd.data.safety import DatasetRoot, UnsafePath

YAML_SUFFIXES = (".yaml", ".yml")


def read_yaml(root: DatasetRoot, path: Path) -> Any:
    """A YAML file inside the root, parsed safely; :class:`DataError` says what is wrong."""
    try:
        text = root.read_text(path)
    except UnsafePath as err:
        raise DataError(str(err)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {root.name(path)}: {err}") from None
    try:
        return load_yaml(text)  # safe, and bounded against alias bombs
    except RecursionError:
        raise DataError(f"{root.name(path)} is not usable YAML: nested too deeply") from None
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0][:200]
        raise DataError(f"{root.name(path)} is not valid YAML: {first}") from None


def names_from(value: Any, where: str) -> list[str]:
    """Class names from a YAML ``names`` value: a list, or a mapping ``{0: a, 1: b}``."""
    if isinstance(value, dict):
        try:
            ids = sorted(int(k) for k in value)
        except (TypeError, ValueError):
            raise DataError(f"{where}: 'names' keys must be class ids 0..C-1") from None
        if ids != list(range(len(ids))):
            raise DataError(f"{where}: 'names' ids must be 0..{len(ids) - 1}, got {ids}")
        lookup = {int(k): v for k, v in value.items()}
        names = [str(lookup[i]) for i in ids]
    elif isinstance(value, list):
        names = [str(n) for n in value]
    else:
        raise DataError(
            f"{where} has no 'names' list; write e.g. 'names: [cat, dog]' or one name a line"
        )
    return _checked([n.strip() for n in names], where)


def _checked(names: list[str], where: str) -> list[str]:
    if not names:
        raise DataError(f"class names file {where} lists no classes; add one name a line")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates or any(not n for n in names):
        raise DataError(f"class names in {where} must be unique and non-empty: {duplicates}")
    return names


def read_names(root: DatasetRoot, path: Path) -> list[str]:
    """Class names in label order (index 0 = first class). Raises :class:`DataError`."""
    where = root.name(path)
    if path.suffix.lower() in YAML_SUFFIXES:
        data = read_yaml(root, path)
        return names_from(data.get("names") if isinstance(data, dict) else data, where)
    try:
        text = root.read_text(path)
    except UnsafePath as err:
        raise DataError(str(err)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read class names from {where}: {err}") from None
    return _checked([line.strip() for line in text.splitlines() if line.strip()], where)


def names_path(root: DatasetRoot, names_file: str) -> Path:
    """``data.names_file`` relative to the dataset root (absolute: as given, inside the root)."""
    path = root.option(names_file, "names_file")
    if not root.is_file(path):
        raise DataError(f"data.names_file '{names_file}' not found (looked at {path})")
    return path
