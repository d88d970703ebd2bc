"""SQL of the failed updates: which feature could not apply which event, and when to retry."""

from __future__ import annotations

import attr
from synapse.storage.database import LoggingTransaction

from laiwang_module.storage.base import StoreMixin


@attr.s(frozen=True, slots=True, auto_attribs=True)
class FailedUpdate:
    event_id: str
    feature: str
    room_id: str
    attempts: int


class EventsStore(StoreMixin):
    """Mixin of LaiwangStore."""

    async def record_failed_update(
        self, event_id: str, feature: str, room_id: str, next_try: int, error: str
    ) -> None:
        """Note a first failure; a row already there (a second worker, a redelivery) stays as
        it is, attempts and schedule included."""

        def record_failed_update_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "INSERT INTO laiwang_event_retries"
                " (event_id, feature, room_id, attempts, next_try, last_error)"
                " VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT (event_id, feature) DO NOTHING",
                (event_id, feature, room_id, next_try, error[:1000]),
            )

        await self.run("record_failed_update", record_failed_update_txn)

    async def get_due_updates(self, now: int, limit: int) -> list[FailedUpdate]:
        """The failed updates whose retry is due, oldest schedule first."""

        def get_due_updates_txn(txn: LoggingTransaction) -> list[FailedUpdate]:
            txn.execute(
                "SELECT event_id, feature, room_id, attempts FROM laiwang_event_retries"
                " WHERE next_try <= ? ORDER BY next_try LIMIT ?",
                (now, limit),
            )
            return [
                FailedUpdate(event_id, feature, room_id, int(attempts))
                for event_id, feature, room_id, attempts in txn.fetchall()
            ]

        return await self.run("get_due_updates", get_due_updates_txn)

    async def update_done(self, event_id: str, feature: str) -> None:
        def update_done_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "DELETE FROM laiwang_event_retries WHERE event_id = ? AND feature = ?",
                (event_id, feature),
            )

        await self.run("update_done", update_done_txn)

    async def update_failed_again(
        self, event_id: str, feature: str, next_try: int, error: str
    ) -> None:
        def update_failed_again_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "UPDATE laiwang_event_retries SET attempts = attempts + 1, next_try = ?,"
                " last_error = ? WHERE event_id = ? AND feature = ?",
                (next_try, error[:1000], event_id, feature),
            )

        await self.run("update_failed_again", update_failed_again_txn)
