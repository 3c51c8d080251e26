"""Disconnect FiftyOne in-process, caches included, between test modules that each point
it at their own database.

``fod._disconnect()`` closes the client, but FiftyOne's repository factory keeps the
database handle and the repositories it made from it (``fiftyone.factory.repo_factory``:
module-level ``_db`` and ``RepositoryFactory.repos``); the next dataset deletion would use
them ("Cannot use MongoClient after close"). Forget them too.
"""

from __future__ import annotations


def disconnect() -> None:
    import fiftyone.core.odm.database as fod
    import fiftyone.factory.repo_factory as repo_factory

    fod._disconnect()
    repo_factory._db = None
    repo_factory.RepositoryFactory.repos.clear()
