"""Keep every read inside the dataset root: one rule for every reader.

A file is read only if its real path (every symlink followed) lies inside the real path of
``data.path``. :class:`DatasetRoot` is that rule: the readers (VOC, COCO, YOLO) read their
annotation files through it, ``prepare`` checks every image with it before decoding, and
names taken from annotations (VOC ``<filename>``, COCO ``file_name``, YOLO list files) are
joined with :meth:`DatasetRoot.join`, which also refuses absolute paths, ``..``, NUL
characters and names too long for the file system. A symlink that stays inside the root
(``images -> raw/images``) is fine; one that leaves it is refused, as is a folder that is
such a link.

Reading is open-once (:meth:`DatasetRoot.read_file`): the file is opened, then the file
actually opened (its real path, from the handle: ``/proc/self/fd`` on Linux) is checked and
read from that same handle. Checking a name and then opening it again would let a file be
swapped for a link to one outside the root in between.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path, PurePosixPath, PureWindowsPath

NAME_MAX = 255  # bytes in one path component (ext4, xfs, btrfs, APFS, NTFS in UTF-16 units)
PATH_MAX = 4096
# Files over this size are not read (1 GiB: an uncompressed 16-bit RGBA TIFF at the image
# reader's 100-megapixel limit takes 800 MB; nothing larger is an image ssd reads).
MAX_FILE_BYTES = 1 << 30


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


def _opened_path(fd: int, path: Path) -> Path:
    """The real path of the file open as ``fd``: the handle's own (``/proc/self/fd`` on
    Linux, ``F_GETPATH`` on macOS); elsewhere ``path`` resolved, if it is the same file."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        pass
    if sys.platform == "darwin":  # pragma: no cover - macOS only
        import fcntl

        raw = fcntl.fcntl(fd, fcntl.F_GETPATH, bytes(PATH_MAX))  # type: ignore[attr-defined]
        return Path(os.fsdecode(raw.split(b"\0", 1)[0]))
    resolved = path.resolve()  # pragma: no cover - no /proc: check it is the same file
    opened, named = os.fstat(fd), os.stat(resolved)  # pragma: no cover
    if (opened.st_dev, opened.st_ino) != (named.st_dev, named.st_ino):  # pragma: no cover
        raise UnsafePath(f"{path} changed while it was opened; refused")
    return resolved  # pragma: no cover


def read_regular_file(
    path: Path, inside: Path | None = None, max_bytes: int = MAX_FILE_BYTES
) -> bytes:
    """The bytes of ``path``, opened once and read from that handle.

    With ``inside``: the path is resolved and must lie inside; the resolved path is opened
    without following a link (``O_NOFOLLOW``: a file swapped for a link meanwhile is
    refused), and the file actually opened is checked again (a folder on the way swapped for
    a link), before a byte is read.

    Raises:
        UnsafePath: the file lies, or was moved, outside ``inside``; the message says where.
        OSError: missing (``FileNotFoundError``), not a regular file (``EINVAL``: a folder, a
            FIFO, a device), over ``max_bytes`` (``EFBIG``), or unreadable.
    """
    # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below)
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    if inside is not None:
        resolved = path.resolve()
        if not resolved.is_relative_to(inside):
            raise UnsafePath(str(resolved))
        path, flags = resolved, flags | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno == errno.ELOOP and inside is not None:  # O_NOFOLLOW met a link
            raise UnsafePath(f"{path}, made a link while it was read,") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if inside is not None:
            real = _opened_path(fd, path)
            if not real.is_relative_to(inside):
                raise UnsafePath(str(real))
        with open(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)  # bounded, even if the file grows meanwhile
        if len(data) > max_bytes:
            raise OSError(errno.EFBIG, f"over the {max_bytes >> 20} MiB a file may have", str(path))
        return data
    finally:
        os.close(fd)


def relative_name(root: Path, path: Path) -> str:
    """``path`` relative to ``root`` with ``/`` separators (for reports and file names)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


class DatasetRoot:
    """The dataset folder (``data.path``) and the rule for reading below it; ``label``
    names the folder in messages (``data.path``, ``the prepared dataset``)."""

    def __init__(self, path: Path, label: str = "data.path") -> None:
        self.path = path
        self.real = path.resolve()
        self.label = label

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
                f"{self.name(path)} leads to {target}, outside {self.label} ({self.path}); refused"
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
            raise UnsafePath(f"path {text!r} resolves outside {self.label} (a symlink?); refused")
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

    def read_file(self, path: Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
        """The bytes of a regular file inside the root, opened once (see the module
        docstring): :class:`UnsafePath` naming where it leads when the file opened lies
        outside; ``OSError`` as :func:`read_regular_file` raises it."""
        try:
            return read_regular_file(path, self.real, max_bytes)
        except UnsafePath as err:
            raise UnsafePath(
                f"{self.name(path)} leads to {err}, outside {self.label} ({self.path}); refused"
            ) from None

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
