"""Spaces: each local user's Laiwang space and the rooms the module listed in it."""

from __future__ import annotations

from synapse.storage.database import LoggingTransaction

from laiwang_module.storage.base import StoreMixin, fetch_value


class SpacesStore(StoreMixin):
    async def get_space(self, user_id: str) -> str | None:
        def get_space_txn(txn: LoggingTransaction) -> str | None:
            txn.execute("SELECT room_id FROM laiwang_spaces WHERE user_id = ?", (user_id,))
            room_id = fetch_value(txn)
            return None if room_id is None else str(room_id)

        return await self.run("get_space", get_space_txn)

    async def claim_space(self, user_id: str, room_id: str, now: int) -> str:
        """Record room_id as the user's space unless one is recorded already; returns the room
        id that is recorded (ours, or the one another process recorded first)."""

        def claim_space_txn(txn: LoggingTransaction) -> str:
            txn.execute(
                "INSERT INTO laiwang_spaces (user_id, room_id, created_ts) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (user_id, room_id, now),
            )
            txn.execute("SELECT room_id FROM laiwang_spaces WHERE user_id = ?", (user_id,))
            recorded = fetch_value(txn)
            return room_id if recorded is None else str(recorded)

        return await self.run("claim_space", claim_space_txn)

    async def claim_space_child(self, user_id: str, room_id: str, now: int) -> bool:
        """Record that room_id is listed in the user's space; False when it already was (so
        that of several workers handling the same join, one sends the `m.space.child`)."""

        def claim_space_child_txn(txn: LoggingTransaction) -> bool:
            txn.execute(
                "INSERT INTO laiwang_space_children (user_id, room_id, added_ts) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (user_id, room_id, now),
            )
            return bool(txn.rowcount == 1)

        return await self.run("claim_space_child", claim_space_child_txn)

    async def unclaim_space_child(self, user_id: str, room_id: str) -> bool:
        """Forget that room_id is listed in the user's space; False when it was not."""

        def unclaim_space_child_txn(txn: LoggingTransaction) -> bool:
            txn.execute(
                "DELETE FROM laiwang_space_children WHERE user_id = ? AND room_id = ?",
                (user_id, room_id),
            )
            return bool(txn.rowcount == 1)

        return await self.run("unclaim_space_child", unclaim_space_child_txn)
