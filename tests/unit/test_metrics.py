"""Metrics counted outside any HTTP request (the e2e counterpart is tests/e2e/test_metrics.py)."""

import asyncio
from typing import Any

from prometheus_client import REGISTRY

from laiwang_module.callbacks.events import register_on_new_event


class FakeApi:
    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def register_third_party_rules_callbacks(self, on_new_event: Any) -> None:
        self.callbacks.append(on_new_event)


class FakeServer:
    def __init__(self) -> None:
        self.api = FakeApi()


class FakeEvent:
    event_id = "$e"


def failures(feature: str) -> float:
    value = REGISTRY.get_sample_value("laiwang_update_failures_total", {"feature": feature})
    return value or 0.0


def test_a_failed_update_is_counted_per_feature_and_not_raised():
    server: Any = FakeServer()

    async def broken(event: Any, state: Any) -> None:
        raise RuntimeError("index write failed")

    async def fine(event: Any, state: Any) -> None:
        return None

    register_on_new_event(server, "aa", broken)
    register_on_new_event(server, "shares", fine)
    before_aa, before_shares = failures("aa"), failures("shares")
    for callback in server.api.callbacks:
        asyncio.run(callback(FakeEvent(), {}))  # Synapse's notifier never sees the error
    assert failures("aa") == before_aa + 1
    assert failures("shares") == before_shares
