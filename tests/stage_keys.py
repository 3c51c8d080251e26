"""Run one ``ssd`` subcommand and record every config key it reads (for test_dvc_yaml.py).

``python tests/stage_keys.py OUT.json <ssd args...>``: the keys read (attribute access on
a config section, or a dump of a whole section) after the config is built are written to
OUT.json. Validators and path set-up reading the config are not the stage reading it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel

import ssd.config.load as config_load
from ssd.config import Config
from ssd.config.sections import _Section


def leaf_keys(model: type[BaseModel] = Config, prefix: str = "") -> set[str]:
    """Every leaf key of the config (or of one section), dotted."""
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys |= leaf_keys(ann, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


@contextmanager
def recording_keys() -> Iterator[set[str]]:
    """Record every config key read (attribute access or a dump of a whole section) after
    the config is built (validators and path set-up are not the stage reading)."""
    read: set[str] = set()
    active = [True]
    original_load = config_load.config_from_dict
    original_dump = _Section.model_dump

    # Sections built elsewhere (a model.json's model config, PostprocessConfig() defaults)
    # have no path: reading them is not reading params.yaml.
    def getattribute(self: _Section, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if active[0] and not name.startswith("_") and name in type(self).model_fields:
            path = self.__pydantic_private__["_path"]
            if path and not isinstance(value, _Section):
                read.add(path + name)
        return value

    def dump(self: _Section, **kw: Any) -> Any:
        path = self.__pydantic_private__["_path"]
        if active[0] and path:
            read.update(path + k for k in leaf_keys(type(self)))
        return original_dump(self, **kw)

    def load(raw: Any, source: str = "config") -> Config:
        active[0] = False
        try:
            return original_load(raw, source)
        finally:
            active[0] = True

    _Section.__getattribute__ = getattribute  # type: ignore[method-assign]
    _Section.model_dump = dump  # type: ignore[method-assign]
    config_load.config_from_dict = load
    try:
        yield read
    finally:
        del _Section.__getattribute__
        _Section.model_dump = original_dump  # type: ignore[method-assign]
        config_load.config_from_dict = original_load


def main() -> None:
    from ssd.cli import app

    out, args = sys.argv[1], sys.argv[2:]
    code = 0
    with recording_keys() as read:
        try:
            app(args)
        except SystemExit as exit_:
            code = int(exit_.code or 0)
    with open(out, "w") as fh:
        json.dump(sorted(read), fh)
    sys.exit(code)


if __name__ == "__main__":
    main()
