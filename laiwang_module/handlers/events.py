"""No silent drift: the features' updates from room events, their retries and the reconcile.

Each feature's `on_new_event` work (callbacks/events.py) runs here. A failure is recorded in the
database (`laiwang_event_retries`) before it is logged, and the background-tasks process runs
the work again from that record, with backoff, until it succeeds: a federated event has no
other path into the tables, so a dropped failure would leave them wrong for good. Every update
is idempotent (keyed by event id, or re-derived from the room's current state), so a retry that
races a late success, or runs on another worker, changes nothing twice.

The reconcile pass covers what no failure record names (a process killed between persisting an
event and notifying it): each feature re-derives its index from the rooms it indexes, through
the same code as its updates (`reconcile` on each handler).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from synapse.events import EventBase
from synapse.types import StateMap

from laiwang_module import metrics
from laiwang_module.synapse_compat import get_events

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer

logger = logging.getLogger(__name__)

EventWork = Callable[[EventBase, StateMap[EventBase]], Awaitable[object]]

MAX_RETRY_INTERVAL_MS = 3600 * 1000
RETRY_BATCH = 100


class InjectedFailure(Exception):
    """An update failed on purpose (`testing.fail_updates`)."""


class EventsHandler:
    def __init__(self, server: LaiwangServer):
        self._server = server
        self._api = server.api
        self._store = server.store
        self._config = server.config
        self._works: dict[str, EventWork] = {}
        self._counts: dict[str, int] = {}
        self._retrying = False
        self._reconciling = False

    def add(self, feature: str, work: EventWork) -> None:
        self._works[feature] = work

    def _delay(self, attempts: int) -> int:
        """How long to wait before the next try, after `attempts` failed ones."""
        base = self._config.upkeep.retry_interval_ms
        return int(min(MAX_RETRY_INTERVAL_MS, base * 2 ** min(attempts - 1, 20)))

    def _inject(self, feature: str) -> None:
        every = self._config.testing.fail_updates.get(feature)
        if every is None:
            return
        self._counts[feature] = count = self._counts.get(feature, 0) + 1
        if count % every == 0:
            raise InjectedFailure(f"testing.fail_updates: update {count} of {feature}")

    async def on_new_event(
        self, feature: str, event: EventBase, state: StateMap[EventBase]
    ) -> None:
        """Run a feature's update; never raises into Synapse's notifier."""
        try:
            self._inject(feature)
            await self._works[feature](event, state)
        except Exception as e:
            metrics.update_failures.labels(feature).inc()
            logger.warning(
                "laiwang %s: update from %s failed (%r); recorded for a retry",
                feature,
                event.event_id,
                e,
                exc_info=not isinstance(e, InjectedFailure),
            )
            try:
                now = self._api.get_current_time_msec()
                await self._store.record_failed_update(
                    event.event_id, feature, event.room_id, now + self._delay(1), repr(e)
                )
            except Exception:
                # Nothing names this event now; the reconcile pass is what repairs it.
                logger.exception("laiwang %s: could not record the failed update", feature)

    async def retry_due(self) -> None:
        """Run the failed updates whose time has come (the background-tasks process only)."""
        if self._retrying:
            return
        self._retrying = True
        try:
            while True:
                due = await self._store.get_due_updates(
                    self._api.get_current_time_msec(), RETRY_BATCH
                )
                for failed in due:
                    await self._retry(failed.event_id, failed.feature, failed.room_id,
                                      failed.attempts)  # fmt: skip
                if len(due) < RETRY_BATCH:
                    return
        finally:
            self._retrying = False

    async def _retry(self, event_id: str, feature: str, room_id: str, attempts: int) -> None:
        work = self._works.get(feature)
        event = (await get_events(self._api, [event_id])).get(event_id)
        if work is None or event is None:
            # A feature this version no longer has, or an event purged since: nothing to do.
            logger.info("laiwang %s: dropping the retry of %s", feature, event_id)
            await self._store.update_done(event_id, feature)
            return
        metrics.update_retries.labels(feature).inc()
        try:
            # The updates read the room's current state, as `on_new_event` hands it over.
            state = await self._api.get_room_state(room_id)
            await work(event, state)
        except Exception as e:
            delay = self._delay(attempts + 1)
            logger.warning(
                "laiwang %s: retry %d of %s failed (%r); next in %d ms",
                feature, attempts, event_id, e, delay, exc_info=True,
            )  # fmt: skip
            await self._store.update_failed_again(
                event_id, feature, self._api.get_current_time_msec() + delay, repr(e)
            )
            return
        await self._store.update_done(event_id, feature)
        logger.info("laiwang %s: update from %s applied on retry %d", feature, event_id, attempts)

    async def reconcile(self) -> None:
        """Re-derive every feature's index from the rooms (the background-tasks process only)."""
        if self._reconciling:
            return
        self._reconciling = True
        try:
            server = self._server
            passes: list[tuple[str, Callable[[], Awaitable[int]]]] = [
                ("contacts", server.contacts_handler.rebuild),
                ("clusters", server.clusters_handler.reconcile),
                ("shares", server.shares_handler.reconcile),
                ("aa", server.aa_handler.reconcile),
            ]
            for feature, run in passes:
                try:
                    rooms = await run()
                    metrics.reconcile_repairs.labels(feature).inc(rooms)
                    logger.info("laiwang %s: reconciled %d rooms", feature, rooms)
                except Exception:
                    logger.exception("laiwang %s: reconcile failed", feature)
        finally:
            self._reconciling = False
