"""One run per output folder: an advisory lock beside every folder a stage writes.

``ssd prepare`` (``data/prepared/<name>``), ``ssd train`` (``models/<name>``), ``ssd
evaluate``, ``ssd audit`` and ``ssd register`` (``reports/<name>``, or ``--out``) hold
:func:`output_lock` on their folder for the whole run, so two runs started on the same outputs
cannot mix their files: the second stops at once with one message naming the first (its pid,
host, command and start time). DVC's own lock does the same for two ``dvc repro``; this
makes the command line as safe.

The lock is ``fcntl.flock`` on ``<parent>/.<folder>.lock`` (beside the folder, which
``ssd prepare`` replaces as a whole). The kernel releases it when its process ends, however
it ends, so a run that was killed leaves no lock to clear by hand: the next run takes it
over and says which process had held it. The file stays (deleting a lock file races with a
run opening it); it is empty between runs. Under ``torchrun`` only the process that writes
(global rank 0) takes it: the other ranks of the same run write nothing.

flock works on local file systems; on NFS it is emulated with POSIX locks (Linux >= 2.6.12),
which still keeps two runs on different hosts apart.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ssd.errors import BusyError, SSDError

log = logging.getLogger(__name__)


def lock_path(folder: Path) -> Path:
    """``<parent>/.<name>.lock`` for ``folder`` (made absolute, so ``.`` has a name too)."""
    folder = Path(os.path.abspath(folder))
    return folder.parent / f".{folder.name or 'root'}.lock"


def writes_outputs() -> bool:
    """Whether this process writes the run's outputs: not a torchrun rank other than 0."""
    return os.environ.get("RANK", "0") in ("", "0")


def _this_run() -> dict[str, Any]:
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else ["python"]
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": shlex.join(argv),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _read_record(fd: int) -> dict[str, Any] | None:
    try:
        raw = os.pread(fd, 4096, 0)
        record = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _alive(pid: Any, host: Any) -> bool | None:
    """Whether process ``pid`` runs (None: on another host, or cannot tell)."""
    if host != socket.gethostname() or not isinstance(pid, int):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, owned by another user
        return True
    return True


def _describe(record: dict[str, Any]) -> str:
    return (
        f"pid {record.get('pid', '?')} on {record.get('host', '?')}, started "
        f"{record.get('started', '?')}: `{str(record.get('command', '?'))[:300]}`"
    )


def _busy(folder: Path, lock: Path, fd: int) -> BusyError:
    record = None
    for _ in range(20):  # the holder writes its record right after taking the lock
        record = _read_record(fd)
        if record:
            break
        time.sleep(0.05)
    holder = _describe(record) if record else f"a process (it holds {lock})"
    stop = f" (kill {record['pid']})" if record and "pid" in record else ""
    if record and _alive(record.get("pid"), record.get("host")) is False:
        holder += (
            ", which has ended, but processes it started still hold the lock (they end "
            f"within seconds; `fuser {lock}` lists them)"
        )
        stop = ""
    return BusyError(
        f"{folder} is being written by another run, {holder}; wait for it to end or stop "
        f"it{stop}, then run this again (two runs on the same outputs would mix their files)"
    )


@contextmanager
def output_lock(folder: str | Path) -> Iterator[None]:
    """Hold the lock of ``folder`` (which need not exist yet) for the ``with`` block.

    Raises:
        BusyError: another live process holds it; the message names that process.
        SSDError: the lock file cannot be created (a read-only or full file system).
    """
    folder = Path(folder)
    if not writes_outputs():
        yield
        return
    lock = lock_path(folder)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as err:
        raise SSDError(
            f"cannot write in {lock.parent} ({err.strerror or err}), where {folder.name} "
            "goes: give a writable folder (a read-only file system or a full disk?)"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise SSDError(f"cannot lock {lock}: {err.strerror or err}") from None
            raise _busy(folder, lock, fd) from None
        left = _read_record(fd)  # a record no one holds: its run ended without releasing
        if left and left.get("pid") != os.getpid():
            state = {False: "no longer runs", None: "no longer holds it"}.get(
                _alive(left.get("pid"), left.get("host")), "no longer holds it"
            )
            log.warning(
                "%s was left locked by %s, which %s (killed?); taken over",
                folder,
                _describe(left),
                state,
            )
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(_this_run()) + "\n").encode("utf-8"), 0)
        except OSError:
            pass  # the lock holds without the record; a second run names the lock file
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # released cleanly: nothing left to report
            # LOCK_UN, not only close: processes forked meanwhile (DataLoader workers) share
            # the lock, and would otherwise hold it until they exit
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
