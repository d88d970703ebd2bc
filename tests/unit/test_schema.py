"""storage/schema: the migrations on SQLite, and the renamed features' versions moving to their
new names in a database an earlier release created."""

from __future__ import annotations

import sqlite3
from typing import Any

from laiwang_module.storage.schema import VERSION_TABLE, apply_schema_txn, prepare_version_table_txn
from laiwang_module.storage.schema.migrations import SCHEMAS

# The features earlier releases recorded under other names: (old, new).
RENAMED = [("acquaintances", "contacts"), ("timeline", "shares")]


class Txn:
    """The part of Synapse's LoggingTransaction the migrations use, over sqlite3."""

    database_engine = None  # not PostgreSQL: no table lock

    def __init__(self, conn: sqlite3.Connection):
        self.cur = conn.cursor()

    def execute(self, sql: str, args: Any = ()) -> None:
        self.cur.execute(sql, args)

    def fetchone(self) -> Any:
        return self.cur.fetchone()


# The part of Synapse's own `events` table that migrations read (the module's tables live in
# Synapse's database).
SYNAPSE_EVENTS = (
    "CREATE TABLE IF NOT EXISTS events (event_id TEXT, room_id TEXT, received_ts BIGINT)"
)


def migrate(txn: Any) -> list[int]:
    txn.execute(SYNAPSE_EVENTS)
    prepare_version_table_txn(txn)
    return [apply_schema_txn(txn, schema) for schema in SCHEMAS]


def versions(txn: Txn) -> dict[str, int]:
    txn.execute(f"SELECT feature, version FROM {VERSION_TABLE}")
    return dict(txn.cur.fetchall())


def latest() -> dict[str, int]:
    return {schema.feature: len(schema.migrations) for schema in SCHEMAS}


def test_a_new_database_gets_every_table_under_the_feature_names():
    txn = Txn(sqlite3.connect(":memory:"))
    assert migrate(txn) == [len(schema.migrations) for schema in SCHEMAS]
    assert versions(txn) == latest()
    assert migrate(txn) == [0] * len(SCHEMAS)


def test_versions_an_earlier_release_recorded_move_to_the_new_names_once():
    txn = Txn(sqlite3.connect(":memory:"))
    migrate(txn)
    # The database as an earlier release left it: the same tables, the old feature names.
    for old, new in RENAMED:
        txn.execute(f"UPDATE {VERSION_TABLE} SET feature = ? WHERE feature = ?", (old, new))
    old_names = {new: old for old, new in RENAMED}
    assert set(versions(txn)) == {old_names.get(f, f) for f in latest()}
    assert migrate(txn) == [0] * len(SCHEMAS)  # renamed before migrating: nothing runs again
    assert versions(txn) == latest()
    assert migrate(txn) == [0] * len(SCHEMAS)
    assert versions(txn) == latest()


def test_both_names_recorded_leave_the_new_one_standing():
    txn = Txn(sqlite3.connect(":memory:"))
    migrate(txn)
    for old, _new in RENAMED:
        txn.execute(f"INSERT INTO {VERSION_TABLE} (feature, version) VALUES (?, 1)", (old,))
    assert migrate(txn) == [0] * len(SCHEMAS)
    assert {f: v for f, v in versions(txn).items() if f in latest()} == latest()
