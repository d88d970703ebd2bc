"""Ordered, idempotent schema migrations for the module's own tables in Synapse's database.

Each feature owns a `Schema`: a name and a list of `(version, statements)`; all of them are in
`migrations.py`, so that every table is in one place. The table `laiwang_schema_versions`
records the version each feature has reached. Migrations run in one transaction per feature; on
PostgreSQL the version table is locked first so that several Synapse workers starting at once
apply each migration exactly once (SQLite serialises writers anyway). The SQL must run on both
engines: `BIGINT`, `TEXT`, `BOOLEAN`, `ON CONFLICT … DO …`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import attr
from synapse.storage.database import LoggingTransaction
from synapse.storage.engines import PostgresEngine

from laiwang_module.storage.base import fetch_value

logger = logging.getLogger(__name__)

VERSION_TABLE = "laiwang_schema_versions"

# (old, new) names of features whose versions earlier releases recorded under the old name.
RENAMED_FEATURES = (("acquaintances", "contacts"), ("timeline", "shares"))


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Schema:
    feature: str
    migrations: Sequence[tuple[int, Sequence[str]]]

    def __attrs_post_init__(self) -> None:
        versions = [v for v, _ in self.migrations]
        if versions != list(range(1, len(versions) + 1)):
            raise ValueError(f"{self.feature}: migrations must be numbered 1, 2, 3, …")


def _lock_version_table(txn: LoggingTransaction) -> None:
    if isinstance(txn.database_engine, PostgresEngine):
        txn.execute(f"LOCK TABLE {VERSION_TABLE} IN EXCLUSIVE MODE")


def prepare_version_table_txn(txn: LoggingTransaction) -> None:
    """Create the version table, and move the versions recorded under a renamed feature's old
    name to its new one, under the lock, before any feature is migrated. Idempotent: on a new
    or already renamed database it changes nothing."""
    txn.execute(
        f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} ("
        " feature TEXT NOT NULL PRIMARY KEY,"
        " version INTEGER NOT NULL)"
    )
    _lock_version_table(txn)
    for old, new in RENAMED_FEATURES:
        # Should both names be recorded (a process of an earlier release started after the
        # rename, and recreated its tables with IF NOT EXISTS), the new name's version stands.
        txn.execute(
            f"UPDATE {VERSION_TABLE} SET feature = ? WHERE feature = ?"
            f" AND NOT EXISTS (SELECT 1 FROM {VERSION_TABLE} WHERE feature = ?)",
            (new, old, new),
        )


def apply_schema_txn(txn: LoggingTransaction, schema: Schema) -> int:
    """Bring one feature's tables up to date; returns how many migrations ran."""
    _lock_version_table(txn)
    txn.execute(f"SELECT version FROM {VERSION_TABLE} WHERE feature = ?", (schema.feature,))
    current = fetch_value(txn) or 0
    ran = 0
    for version, statements in schema.migrations:
        if version <= current:
            continue
        logger.info("laiwang: applying %s schema migration %d", schema.feature, version)
        for statement in statements:
            txn.execute(statement)
        ran += 1
        current = version
    if ran:
        txn.execute(
            f"INSERT INTO {VERSION_TABLE} (feature, version) VALUES (?, ?)"
            " ON CONFLICT (feature) DO UPDATE SET version = excluded.version",
            (schema.feature, current),
        )
    return ran
