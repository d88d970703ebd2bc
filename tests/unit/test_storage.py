"""The store runs a transaction again when it keeps losing races on PostgreSQL.

Synapse retries a transaction up to 5 times back to back; the store adds rounds with growing
random pauses for a row that many processes write at once. Whether an error is such a lost race
is checked against a real PostgreSQL (two repeatable-read transactions updating one row); the
retry loop itself with a stand-in for ModuleApi, since a real homeserver cannot be made to lose
a race on cue.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from laiwang_module.storage import CONTENDED_RUNS, LaiwangStore, is_contended
from tests.conftest import skip_or_fail
from tests.harness.servers import postgres_available


class LostRace(Exception):
    pgcode = "40001"


class Broken(Exception):
    pgcode = "23505"  # a unique violation: a bug, not a race


class FakeApi:
    def __init__(self, failures: list[Exception]):
        self.failures = failures
        self.runs = 0
        self.pauses: list[float] = []

    async def run_db_interaction(self, desc: str, func: Any, *args: Any) -> Any:
        self.runs += 1
        if self.failures:
            raise self.failures.pop(0)
        return func(None, *args)

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)


def store_over(api: FakeApi) -> LaiwangStore:
    store = LaiwangStore(api)  # type: ignore[arg-type]
    store._schema_done = True
    return store


def test_lost_races_are_run_again_after_growing_pauses() -> None:
    api = FakeApi([LostRace(), LostRace()])
    assert asyncio.run(store_over(api).run("t", lambda txn, x: x * 2, 21)) == 42
    assert api.runs == 3
    assert len(api.pauses) == 2 and 0 < api.pauses[0] < api.pauses[1]


def test_a_race_lost_every_time_fails_in_the_end() -> None:
    api = FakeApi([LostRace() for _ in range(CONTENDED_RUNS)])
    with pytest.raises(LostRace):
        asyncio.run(store_over(api).run("t", lambda txn: 1))
    assert api.runs == CONTENDED_RUNS


def test_other_errors_are_not_run_again() -> None:
    api = FakeApi([Broken()])
    with pytest.raises(Broken):
        asyncio.run(store_over(api).run("t", lambda txn: 1))
    assert api.runs == 1 and api.pauses == []


def test_a_real_lost_race_on_postgresql_is_recognised() -> None:
    if not postgres_available():
        skip_or_fail("no PostgreSQL server at 127.0.0.1:5432")
    import psycopg2

    table = f"race_{uuid.uuid4().hex[:8]}"
    setup = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    setup.autocommit = True
    setup.cursor().execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, n INT)")
    setup.cursor().execute(f"INSERT INTO {table} VALUES (1, 0)")
    first, second = (
        psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres") for _ in "ab"
    )
    try:
        for conn in (first, second):
            conn.set_session(isolation_level="REPEATABLE READ")  # as Synapse runs them
            conn.cursor().execute(f"SELECT n FROM {table}")  # both take their snapshot
        first.cursor().execute(f"UPDATE {table} SET n = n + 1 WHERE id = 1")
        first.commit()
        with pytest.raises(psycopg2.Error) as lost:
            second.cursor().execute(f"UPDATE {table} SET n = n + 1 WHERE id = 1")
        assert is_contended(lost.value)
        second.rollback()
        with pytest.raises(psycopg2.Error) as duplicate:
            second.cursor().execute(f"INSERT INTO {table} VALUES (1, 0)")
        assert not is_contended(duplicate.value)
    finally:
        for conn in (first, second):
            conn.close()
        setup.cursor().execute(f"DROP TABLE {table}")
        setup.close()
