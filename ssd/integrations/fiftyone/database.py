"""FiftyOne's database, pinned to the project's own.

With no ``database_uri``, FiftyOne (``fiftyone.core.service.MultiClientService.start``,
1.x) attaches to *any* running database service of the same user: it searches processes
for the arguments ``--51-service db --multi`` alone, so ``ssd browse`` in one checkout
wrote its dataset into another checkout's running mongod, whatever
``FIFTYONE_DATABASE_DIR`` said. :class:`ProjectDatabaseService` searches for those
arguments followed by the start of the mongod command, ``mongod --dbpath <this project's
database_dir>``, so it attaches only to a service on the project's own folder and starts
one otherwise (mongod's own lock on ``--dbpath`` keeps one server per folder). The command
line FiftyOne runs is unchanged: the first three words of the mongod command move from
``command`` to ``_service_args``. A ``database_uri`` the user set (``FIFTYONE_DATABASE_URI``)
is used as is: that is a database chosen by name.
"""

from __future__ import annotations

from typing import Any

import fiftyone.core.odm.database as fod
import fiftyone.core.service as fos

# --51-service db --multi, then: mongod --dbpath <database_dir>
_PINNED = 3


class ProjectDatabaseService(fos.DatabaseService):  # type: ignore[misc]
    """FiftyOne's database service, attaching only to one on this project's folder."""

    @property
    def _service_args(self) -> list[str]:
        return list(super()._service_args) + list(super().command[:_PINNED])

    @property
    def command(self) -> list[str]:
        return list(super().command[_PINNED:])


def pin_database() -> None:
    """Make FiftyOne start or attach to the database service of this project only (before
    its first connection; FiftyOne looks the class up when it connects)."""
    if fos.DatabaseService is not ProjectDatabaseService:
        fos.DatabaseService = ProjectDatabaseService


def connected_port() -> Any:
    """The port FiftyOne is connected to (for messages and tests)."""
    return fod._connection_kwargs.get("port")
