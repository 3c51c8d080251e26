"""The errors a user sees: one family, one message each, never a traceback.

Every error the library raises for a user to act on is an :class:`SSDError`; its message
names what is wrong and how to fix it. The command line catches the base class once
(``ssd/cli.py``) and prints the message. Each class also keeps the builtin base it had
before the family existed (``ValueError``, ``RuntimeError``, ``FileNotFoundError``), so
code that caught those still does.

Errors that never reach a user (an unreadable image that is skipped and listed, a path
outside a dataset root that is refused and listed) stay in their modules.
"""

from __future__ import annotations

# A message is read by a person: past this many characters it is cut (with a note). A value
# quoted from a hostile file must not make a 200 MB error line.
MAX_MESSAGE = 4000


def bounded(message: str, limit: int = MAX_MESSAGE) -> str:
    """``message``, or its first ``limit`` characters and how many more there were."""
    if len(message) <= limit:
        return message
    return f"{message[:limit]}... ({len(message) - limit:,} more characters not shown)"


class SSDError(Exception):
    """The base of every user-facing error; the message is the whole explanation (at most
    :data:`MAX_MESSAGE` characters: a longer one is cut)."""

    def __init__(self, *args: object) -> None:
        if args and isinstance(args[0], str):
            args = (bounded(args[0]), *args[1:])
        super().__init__(*args)


class ConfigError(SSDError, ValueError):
    """A configuration value is wrong; the message names the key and the valid values."""


class DataError(SSDError, ValueError):
    """The input data cannot be used; the message says which file and why."""


class ModelError(SSDError, ValueError):
    """The model cannot be built from this configuration; the message says which key."""


class WeightsError(SSDError, FileNotFoundError):
    """A detector file is missing or unreadable; the message says which and what to do."""


class TrainingError(SSDError, RuntimeError):
    """Training cannot go on; the message names the likely causes."""


class TrainingStopped(TrainingError):
    """A signal stopped training; :attr:`signum` is the signal (exit status 128 + signum)."""

    def __init__(self, signum: int, message: str) -> None:
        self.signum = signum
        super().__init__(message)


class CheckpointError(SSDError, RuntimeError):
    """A checkpoint cannot be used; the message names the file and why."""


class EvaluationError(SSDError, ValueError):
    """Detections or a detector cannot be evaluated; the message says which and why."""


class DetectError(SSDError, ValueError):
    """Nothing to detect on (no input files at all); the message says what was given."""


class ExportError(SSDError, ValueError):
    """The detector cannot be exported in the requested format."""


class RegistryError(SSDError, RuntimeError):
    """Registering or loading a registered model cannot proceed; the message says why."""


class BusyError(SSDError, RuntimeError):
    """Another run is writing the same outputs; the message names it (pid, host, command)."""


class BrowseError(SSDError, ValueError):
    """The FiftyOne dataset cannot be built or found; the message says what to run."""


class LaunchError(SSDError, RuntimeError):
    """``ssd launch``: torchrun could not form the group of nodes, or its workers failed."""
