"""Keep every read inside the dataset root: one rule for every reader.

A file is read only if its real path (every symlink followed) lies inside the real path of
``data.path``. :class:`DatasetRoot` is that rule: the readers (VOC, COCO, YOLO) read their
annotation files through it, ``prepare`` checks every image with it before decoding, and
names taken from annotations (VOC ``<filename>``, COCO ``file_name``, YOLO list files) are
joined with :meth:`DatasetRoot.join`, which also refuses absolute paths, ``..``, NUL
characters and names too long for the file system. A symlink that stays inside the root
(``images -> raw/images``) is fine; one that leaves it is refused, as is a folder that is
such a link.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

NAME_MAX = 255  # bytes in one path component (ext4, xfs, btrfs, APFS, NTFS in UTF-16 units)
PATH_MAX = 4096


class UnsafePath(Exception):
    """A path that may not be read: outside the dataset root, or not a usable name."""


def check_name(text: str) -> None:
    """Refuse names no file system accepts (NUL, over-long) with a message, not an OSError."""
    if "\x00" in text:
        raise UnsafePath(f"name {text[:60]!r} contains a NUL character; refused")
    if len(os.fsencode(text)) > PATH_MAX:
        raise UnsafePath(f"name of {len(os.fsencode(text))} bytes is too long; refused")
    long = [p for p in PureWindowsPath(text).parts if len(os.fsencode(p)) > NAME_MAX]
    if long:
        raise UnsafePath(
            f"name {long[0][:40]!r}... has {len(os.fsencode(long[0]))} bytes, more than the "
            f"{NAME_MAX} a file name may have; refused"
        )


def relative_name(root: Path, path: Path) -> str:
    """``path`` relative to ``root`` with ``/`` separators (for reports and file names)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


class DatasetRoot:
    """The dataset folder (``data.path``) and the rule for reading below it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.real = path.resolve()

    def name(self, path: Path) -> str:
        """``path`` as reports show it: relative to the root, ``/`` separators."""
        return relative_name(self.path, path)

    def contains(self, path: Path) -> bool:
        """Whether ``path``, every symlink followed, lies inside the root."""
        try:
            return path.resolve().is_relative_to(self.real)
        except (OSError, ValueError):  # a loop of links, a NUL: not a file we read
            return False

    def check(self, path: Path) -> Path:
        """``path`` if it may be read; :class:`UnsafePath` naming where it leads otherwise."""
        if not self.contains(path):
            try:
                target = str(path.resolve())
            except (OSError, ValueError):
                target = "an unresolvable place"
            raise UnsafePath(
                f"{self.name(path)} leads to {target}, outside data.path ({self.path}); refused"
            )
        return path

    def join(self, base: Path, relative: str) -> Path:
        """``base / relative`` for a name taken from an annotation (``base`` inside the root).

        Absolute paths, ``..`` and anything that resolves outside the root are refused with
        :class:`UnsafePath`; both ``/`` and ``\\`` separators are understood; the result may
        not exist.
        """
        text = relative.strip()
        if not text:
            raise UnsafePath("empty path")
        check_name(text)
        posix, windows = PurePosixPath(text), PureWindowsPath(text)
        if posix.is_absolute() or windows.is_absolute() or windows.drive or text.startswith("~"):
            raise UnsafePath(f"absolute path {text!r} refused; annotations must use relative paths")
        parts = windows.parts  # splits on both separators
        if ".." in parts:
            raise UnsafePath(f"path {text!r} climbs out with '..'; refused")
        candidate = base.joinpath(*parts)
        if not self.contains(candidate):
            raise UnsafePath(f"path {text!r} resolves outside data.path (a symlink?); refused")
        return candidate

    def option(self, value: str, key: str) -> Path:
        """A path given in ``data.*`` (``names_file``, ``coco_json``, ...): relative to the root,
        or absolute; either way it must lie inside the root."""
        try:
            check_name(value)
        except UnsafePath as err:
            raise UnsafePath(f"data.{key}: {err}") from None
        path = Path(value).expanduser()
        path = path if path.is_absolute() else self.path / path
        if not self.contains(path):
            raise UnsafePath(
                f"data.{key} '{value}' lies outside data.path ({self.path}); only files inside "
                "the dataset folder are read: move it there"
            )
        return path

    def read_bytes(self, path: Path) -> bytes:
        """The bytes of a file inside the root (:class:`UnsafePath` otherwise)."""
        return self.check(path).read_bytes()

    def read_text(self, path: Path) -> str:
        """The UTF-8 text of a file inside the root (:class:`UnsafePath` otherwise).

        ``OSError`` / ``UnicodeDecodeError`` are the caller's to report.
        """
        return self.check(path).read_text(encoding="utf-8")

    def is_dir(self, path: Path) -> bool:
        """Whether ``path`` is an existing folder; :class:`UnsafePath` when it is one but a
        link that leaves the root (a whole folder outside is refused, not skipped)."""
        try:
            exists = path.is_dir()
        except OSError:  # a name too long, a loop of links
            return False
        if exists:
            self.check(path)
        return exists

    def is_file(self, path: Path) -> bool:
        """An existing file (anywhere: call :meth:`check` before reading it)."""
        try:
            return path.is_file()
        except OSError:  # a name too long, a loop of links
            return False
