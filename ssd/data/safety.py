"""Keep every read inside the dataset root: paths named by annotations are checked here.

Absolute paths and paths that climb out (``../``), directly or through a symlink, are
refused with :class:`UnsafePath`; the caller reports the file and goes on.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath


class UnsafePath(Exception):
    """A path from an annotation points outside the dataset root."""


def resolve_inside(root: Path, relative: str) -> Path:
    """``root / relative``, refusing absolute paths and anything that resolves outside ``root``.

    ``relative`` comes from an annotation (VOC ``<filename>``, COCO ``file_name``).
    Both ``/`` and ``\\`` separators are understood; the result may not exist.
    """
    text = relative.strip()
    if not text:
        raise UnsafePath("empty path")
    posix, windows = PurePosixPath(text), PureWindowsPath(text)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or text.startswith("~"):
        raise UnsafePath(f"absolute path {text!r} refused; annotations must use relative paths")
    parts = windows.parts  # splits on both separators
    if ".." in parts:
        raise UnsafePath(f"path {text!r} climbs out with '..'; refused")
    candidate = root.joinpath(*parts)
    root_real = root.resolve()
    real = candidate.resolve()
    if not real.is_relative_to(root_real):
        raise UnsafePath(f"path {text!r} resolves outside the dataset root (symlink?); refused")
    return candidate


def is_inside(root: Path, path: Path) -> bool:
    """Whether ``path`` (following symlinks) lies inside ``root``."""
    return path.resolve().is_relative_to(root.resolve())


def relative_name(root: Path, path: Path) -> str:
    """``path`` relative to ``root`` with ``/`` separators (for reports and file names)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
