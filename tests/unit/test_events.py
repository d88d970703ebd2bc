"""The failed-update bookkeeping of handlers/events.py, with a fake store and API."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from laiwang_module import LaiwangModule
from laiwang_module.handlers.events import MAX_RETRY_INTERVAL_MS, EventsHandler
from laiwang_module.storage.events import FailedUpdate

NOW = 10**12


class Store:
    """The retry table in memory, as storage/events.py keeps it."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}

    async def record_failed_update(
        self, event_id: str, feature: str, room_id: str, next_try: int, error: str
    ) -> None:
        self.rows.setdefault(
            (event_id, feature),
            {"room_id": room_id, "attempts": 1, "next_try": next_try, "error": error},
        )

    async def get_due_updates(self, now: int, limit: int) -> list[FailedUpdate]:
        due = [(k, r) for k, r in self.rows.items() if r["next_try"] <= now]
        return [FailedUpdate(e, f, r["room_id"], r["attempts"]) for (e, f), r in due][:limit]

    async def update_done(self, event_id: str, feature: str) -> None:
        self.rows.pop((event_id, feature), None)

    async def update_failed_again(
        self, event_id: str, feature: str, next_try: int, error: str
    ) -> None:
        row = self.rows[(event_id, feature)]
        row.update(attempts=row["attempts"] + 1, next_try=next_try, error=error)


def make_handler(
    config: dict[str, Any], events: dict[str, Any]
) -> tuple[EventsHandler, Store, dict[str, int]]:
    """The handler, its store, and its clock (set `clock["now"]` to move time)."""
    store = Store()
    clock = {"now": NOW}

    async def get_events_as_list(event_ids: list[str]) -> list[Any]:
        return [events[e] for e in event_ids if e in events]

    async def get_events(event_ids: list[str]) -> dict[str, Any]:
        return {e: events[e] for e in event_ids if e in events}

    async def get_room_state(room_id: str) -> dict:
        return {}

    api = SimpleNamespace(
        get_current_time_msec=lambda: clock["now"],
        get_room_state=get_room_state,
        _store=SimpleNamespace(get_events=get_events),
    )
    server = SimpleNamespace(store=store, api=api, config=LaiwangModule.parse_config(config))
    return EventsHandler(server), store, clock  # type: ignore[arg-type]


def event(event_id: str) -> Any:
    return SimpleNamespace(event_id=event_id, room_id="!r:x")


def test_a_failed_update_is_recorded_and_retried_with_backoff_until_it_succeeds():
    ev = event("$1")
    handler, store, clock = make_handler({"upkeep": {"retry_interval": 1000}}, {"$1": ev})
    failures = [RuntimeError("db down"), RuntimeError("still down")]
    applied: list[str] = []

    async def work(e: Any, state: Any) -> None:
        if failures:
            raise failures.pop(0)
        applied.append(e.event_id)

    handler.add("aa", work)
    before = {name: counted(name) for name in ("update_failures", "update_retries")}
    asyncio.run(handler.on_new_event("aa", ev, {}))  # never raised into Synapse's notifier
    assert store.rows[("$1", "aa")]["next_try"] == NOW + 1000
    assert applied == []
    assert counted("update_failures") == before["update_failures"] + 1
    # Not due yet: nothing runs.
    asyncio.run(handler.retry_due())
    assert store.rows[("$1", "aa")]["attempts"] == 1
    # Due: the retry fails again and waits twice as long.
    clock["now"] = NOW + 1000
    asyncio.run(handler.retry_due())
    assert store.rows[("$1", "aa")]["attempts"] == 2
    assert store.rows[("$1", "aa")]["next_try"] == NOW + 1000 + 2000
    clock["now"] = NOW + 3000
    asyncio.run(handler.retry_due())
    assert applied == ["$1"] and store.rows == {}
    assert counted("update_retries") == before["update_retries"] + 2


def counted(metric: str) -> float:
    """laiwang_<metric>_total{feature="aa"} in this process's Prometheus registry."""
    value = REGISTRY.get_sample_value(f"laiwang_{metric}_total", {"feature": "aa"})
    return value or 0.0


def test_the_backoff_is_capped_at_an_hour():
    handler, _, _ = make_handler({"upkeep": {"retry_interval": "10m"}}, {})
    assert [handler._delay(n) for n in (1, 2, 3, 4)] == [600_000, 1_200_000, 2_400_000,
                                                         MAX_RETRY_INTERVAL_MS]  # fmt: skip
    assert handler._delay(500) == MAX_RETRY_INTERVAL_MS


def test_a_retry_of_an_event_this_server_no_longer_has_is_dropped():
    handler, store, clock = make_handler({}, {})

    async def fail(e: Any, state: Any) -> None:
        raise RuntimeError("boom")

    handler.add("shares", fail)
    asyncio.run(handler.on_new_event("shares", event("$gone"), {}))
    clock["now"] = NOW + 10**9
    asyncio.run(handler.retry_due())
    assert store.rows == {}


def test_fail_updates_breaks_every_nth_first_attempt_only():
    evs = {f"${i}": event(f"${i}") for i in range(1, 7)}
    handler, store, clock = make_handler(
        {"testing": {"fail_updates": {"contacts": 3}}, "upkeep": {"retry_interval": 1}}, evs
    )
    applied: list[str] = []

    async def work(e: Any, state: Any) -> None:
        applied.append(e.event_id)

    handler.add("contacts", work)
    for ev in evs.values():
        asyncio.run(handler.on_new_event("contacts", ev, {}))
    assert sorted(store.rows) == [("$3", "contacts"), ("$6", "contacts")]
    clock["now"] = NOW + 10
    asyncio.run(handler.retry_due())  # retries are never broken on purpose
    assert store.rows == {} and sorted(applied) == sorted(evs)


@pytest.mark.parametrize(
    "raw",
    [
        {"testing": {"fail_updates": {"discovery": 1}}},
        {"testing": {"fail_updates": {"aa": 0}}},
        {"testing": {"fail_updates": ["aa"]}},
        {"upkeep": {"retry_interval": 0}},
    ],
)
def test_bad_upkeep_and_testing_config_is_refused(raw):
    from synapse.config._base import ConfigError

    with pytest.raises(ConfigError):
        LaiwangModule.parse_config(raw)
