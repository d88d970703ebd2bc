"""SQL for contact-request rooms and the acquaintance index.

`laiwang_contact_rooms` holds one row per room carrying `org.laiwang.acquaintance` state that
this server has seen, with the request's state as last derived from membership.
`laiwang_acquaintances` holds each acquaintance twice (a→b and b→a), so every question about one
user is an index range scan on its primary key. Both tables are derived from room state: they can
be rebuilt from the rooms, and every write is idempotent, so any worker may apply an event.
"""

from __future__ import annotations

from typing import Any

import attr
from synapse.storage.database import LoggingTransaction

from laiwang_module.storage.base import StoreMixin, fetch_value


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ContactRoom:
    room_id: str
    requester: str
    target: str
    message: str | None
    source: str
    state: str
    created_ts: int
    updated_ts: int


@attr.s(frozen=True, slots=True, auto_attribs=True)
class AcquaintanceRow:
    other_id: str
    room_id: str
    source: str
    since_ts: int


_CONTACT_COLUMNS = "room_id, requester, target, message, source, state, created_ts, updated_ts"


def _contact_room(row: tuple[Any, ...]) -> ContactRoom:
    """A row of `SELECT {_CONTACT_COLUMNS}`."""
    room_id, requester, target, message, source, state, created_ts, updated_ts = row
    return ContactRoom(
        room_id=room_id,
        requester=requester,
        target=target,
        message=message,
        source=source,
        state=state,
        created_ts=created_ts,
        updated_ts=updated_ts,
    )


class ContactsStore(StoreMixin):
    """Mixin of LaiwangStore."""

    async def record_contact_room(
        self,
        room_id: str,
        requester: str,
        target: str,
        message: str | None,
        source: str,
        state: str,
        now: int,
    ) -> None:
        """Insert the room, or update its request state (the pair never changes)."""

        def record_contact_room_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                f"INSERT INTO laiwang_contact_rooms ({_CONTACT_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (room_id) DO UPDATE SET state = excluded.state,"
                " updated_ts = excluded.updated_ts"
                " WHERE laiwang_contact_rooms.state <> excluded.state",
                (room_id, requester, target, message, source, state, now, now),
            )

        await self.run("record_contact_room", record_contact_room_txn)

    async def get_contact_room(self, room_id: str) -> ContactRoom | None:
        def get_contact_room_txn(txn: LoggingTransaction) -> ContactRoom | None:
            txn.execute(
                f"SELECT {_CONTACT_COLUMNS} FROM laiwang_contact_rooms WHERE room_id = ?",
                (room_id,),
            )
            row = txn.fetchone()
            return _contact_room(row) if row else None

        return await self.run("get_contact_room", get_contact_room_txn)

    async def get_contact_rooms_between(self, a: str, b: str) -> list[ContactRoom]:
        """Rooms of requests between a and b in either direction, newest first."""

        def get_contact_rooms_between_txn(txn: LoggingTransaction) -> list[ContactRoom]:
            txn.execute(
                f"SELECT {_CONTACT_COLUMNS} FROM laiwang_contact_rooms"
                " WHERE (requester = ? AND target = ?) OR (requester = ? AND target = ?)"
                " ORDER BY created_ts DESC",
                (a, b, b, a),
            )
            return [_contact_room(row) for row in txn.fetchall()]

        return await self.run("get_contact_rooms_between", get_contact_rooms_between_txn)

    async def get_pending_requests(
        self, user_id: str
    ) -> tuple[list[ContactRoom], list[ContactRoom]]:
        """(incoming, outgoing) pending requests of a user, newest first."""

        def get_pending_requests_txn(
            txn: LoggingTransaction,
        ) -> tuple[list[ContactRoom], list[ContactRoom]]:
            pending: dict[str, list[ContactRoom]] = {}
            for column in ("target", "requester"):
                txn.execute(
                    f"SELECT {_CONTACT_COLUMNS} FROM laiwang_contact_rooms"
                    f" WHERE {column} = ? AND state = 'pending' ORDER BY created_ts DESC",
                    (user_id,),
                )
                pending[column] = [_contact_room(row) for row in txn.fetchall()]
            return pending["target"], pending["requester"]

        return await self.run("get_pending_requests", get_pending_requests_txn)

    async def get_all_contact_room_ids(self) -> list[str]:
        """Every room that is or may be a contact room: our own records, the rooms the index
        rests on, and (should those be lost) every room whose current state in Synapse's own
        table carries the request."""

        def get_all_contact_room_ids_txn(txn: LoggingTransaction) -> list[str]:
            txn.execute(
                "SELECT room_id FROM laiwang_contact_rooms UNION"
                " SELECT room_id FROM laiwang_acquaintances UNION"
                " SELECT room_id FROM current_state_events WHERE type = ? AND state_key = ''",
                ("org.laiwang.acquaintance",),
            )
            return sorted(room_id for (room_id,) in txn.fetchall())

        return await self.run("get_all_contact_room_ids", get_all_contact_room_ids_txn)

    async def get_invite_event_ids(self, room_id: str, limit: int) -> list[str]:
        """Every invite this server has of the room, oldest first, at most `limit`: Synapse's
        `room_memberships` also holds out-of-band invites, and never rejected events."""

        def get_invite_event_ids_txn(txn: LoggingTransaction) -> list[str]:
            txn.execute(
                "SELECT event_id FROM room_memberships WHERE room_id = ? AND membership = ?"
                " ORDER BY event_stream_ordering LIMIT ?",
                (room_id, "invite", limit),
            )
            return [event_id for (event_id,) in txn.fetchall()]

        return await self.run("get_invite_event_ids", get_invite_event_ids_txn)

    async def prune_contact_room(
        self, room_id: str, keep: tuple[str, str] | None
    ) -> list[tuple[str, str]]:
        """Forget what the room does not make: every acquaintance through it but the pair `keep`
        (None: all of them), and its request row unless it names that pair. Returns the pairs
        removed (each once), so that their caches and listeners can follow."""

        def prune_contact_room_txn(txn: LoggingTransaction) -> list[tuple[str, str]]:
            txn.execute(
                "SELECT user_id, other_id FROM laiwang_acquaintances WHERE room_id = ?",
                (room_id,),
            )
            kept = set(keep) if keep is not None else set()
            removed = sorted(
                {
                    (min(user_id, other_id), max(user_id, other_id))
                    for user_id, other_id in txn.fetchall()
                    if {user_id, other_id} != kept
                }
            )
            for a, b in removed:
                txn.execute(
                    "DELETE FROM laiwang_acquaintances WHERE room_id = ?"
                    " AND ((user_id = ? AND other_id = ?) OR (user_id = ? AND other_id = ?))",
                    (room_id, a, b, b, a),
                )
            txn.execute(
                "SELECT requester, target FROM laiwang_contact_rooms WHERE room_id = ?",
                (room_id,),
            )
            row = txn.fetchone()
            if row is not None and {row[0], row[1]} != kept:
                txn.execute("DELETE FROM laiwang_contact_rooms WHERE room_id = ?", (room_id,))
            return removed

        return await self.run("prune_contact_room", prune_contact_room_txn)

    async def add_acquaintance(self, a: str, b: str, room_id: str, source: str, now: int) -> bool:
        """Record a and b as acquainted through room_id; True if they were not before."""

        def add_acquaintance_txn(txn: LoggingTransaction) -> bool:
            added = False
            for user_id, other_id in ((a, b), (b, a)):
                txn.execute(
                    "INSERT INTO laiwang_acquaintances (user_id, other_id, room_id, source, since_ts)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, other_id) DO NOTHING",
                    (user_id, other_id, room_id, source, now),
                )
                added = added or txn.rowcount > 0
            return added

        return await self.run("add_acquaintance", add_acquaintance_txn)

    async def remove_acquaintance_via(self, a: str, b: str, room_id: str) -> bool:
        """End a and b's acquaintance if it rests on room_id (another room may carry it).

        Returns True if a row was removed."""

        def remove_acquaintance_via_txn(txn: LoggingTransaction) -> bool:
            txn.execute(
                "DELETE FROM laiwang_acquaintances WHERE room_id = ?"
                " AND ((user_id = ? AND other_id = ?) OR (user_id = ? AND other_id = ?))",
                (room_id, a, b, b, a),
            )
            return txn.rowcount > 0

        return await self.run("remove_acquaintance_via", remove_acquaintance_via_txn)

    async def get_acquaintance_room(self, a: str, b: str) -> str | None:
        """The contact room a and b's acquaintance rests on, or None if they are not."""

        def get_acquaintance_room_txn(txn: LoggingTransaction) -> str | None:
            txn.execute(
                "SELECT room_id FROM laiwang_acquaintances WHERE user_id = ? AND other_id = ?",
                (a, b),
            )
            return fetch_value(txn)

        return await self.run("get_acquaintance_room", get_acquaintance_room_txn)

    async def are_acquainted(self, a: str, b: str) -> bool:
        return await self.get_acquaintance_room(a, b) is not None

    async def get_acquaintances(self, user_id: str) -> list[AcquaintanceRow]:
        def get_acquaintances_txn(txn: LoggingTransaction) -> list[AcquaintanceRow]:
            txn.execute(
                "SELECT other_id, room_id, source, since_ts FROM laiwang_acquaintances"
                " WHERE user_id = ? ORDER BY since_ts DESC, other_id",
                (user_id,),
            )
            return [
                AcquaintanceRow(
                    other_id=other_id, room_id=room_id, source=source, since_ts=since_ts
                )
                for other_id, room_id, source, since_ts in txn.fetchall()
            ]

        return await self.run("get_acquaintances", get_acquaintances_txn)

    async def get_acquaintance_ids(self, user_id: str) -> set[str]:
        return {row.other_id for row in await self.get_acquaintances(user_id)}

    async def count_mutual_acquaintances(self, user_id: str, others: list[str]) -> dict[str, int]:
        """For each of `others`, how many acquaintances they share with user_id."""
        if not others:
            return {}

        def count_mutual_acquaintances_txn(txn: LoggingTransaction) -> dict[str, int]:
            counts = dict.fromkeys(others, 0)
            # Chunked so that a large book never exceeds SQLite's parameter limit.
            for i in range(0, len(others), 500):
                chunk = others[i : i + 500]
                marks = ",".join("?" * len(chunk))
                txn.execute(
                    "SELECT theirs.user_id, COUNT(*) FROM laiwang_acquaintances AS mine"
                    " JOIN laiwang_acquaintances AS theirs ON theirs.other_id = mine.other_id"
                    f" WHERE mine.user_id = ? AND theirs.user_id IN ({marks})"
                    " GROUP BY theirs.user_id",
                    (user_id, *chunk),
                )
                for other, n in txn.fetchall():
                    counts[other] = int(n)
            return counts

        return await self.run("count_mutual_acquaintances", count_mutual_acquaintances_txn)
