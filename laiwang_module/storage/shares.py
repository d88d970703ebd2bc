"""SQL for timelines and the feed index.

- `laiwang_timelines`: owner → room id of every timeline this server knows (its own users',
  created here, and remote users' it was invited to). The owner is the primary key and the room
  id unique, so two processes creating a user's first timeline at once cannot both win.
- `laiwang_timeline_posts`: the posts (top-level messages of the owner) of those timelines, by
  (owner, ts, event_id), so a feed page is one indexed query.
- `laiwang_timeline_relations`: reactions and comments keyed by their own event id, so that
  indexing an event twice (every worker notifies it) counts it once, with the room they were
  sent in: a relation counts only in its post's own room.
- `laiwang_timeline_accepts`: the joins to remote timelines this server made for its users on
  its own in the last window, one row each (the rate bound, shared by all workers).
- `laiwang_timeline_creations`: the journal of timelines being made (owner, started), from
  before the room exists until its members are added, so that a creation whose process died is
  finished by the job and never leaves a second room.

All of it is derived from events: every write is idempotent.
"""

from __future__ import annotations

from typing import Any

import attr
from synapse.storage.database import LoggingTransaction

from laiwang_module.storage.base import StoreMixin, fetch_value
from rooms import shares


@attr.s(frozen=True, slots=True, auto_attribs=True)
class FeedRow:
    event_id: str
    room_id: str
    ts: int
    reactions: int
    comments: int


_AUTHORS = """
SELECT other_id FROM laiwang_acquaintances WHERE user_id = ? UNION ALL SELECT ?
"""

# A lower bound of the page: each author's newest candidate post is a candidate, so the
# `limit`-th newest of those heads is no newer than the page's last post. With it the page query
# reads, per author, only posts at least that new: a few index probes per acquaintance instead of
# all their posts. (MAX over the (owner, ts) index is one probe on SQLite and PostgreSQL.)
_BOUND_SQL = """
SELECT head FROM (
  SELECT (SELECT MAX(p.ts) FROM laiwang_timeline_posts AS p
          WHERE p.owner = a.other_id {before}) AS head
  FROM ({authors}) AS a
  LIMIT 1000000000  -- a fence: PostgreSQL would otherwise probe twice (filter and sort)
) AS h
WHERE head IS NOT NULL
ORDER BY head DESC
LIMIT 1 OFFSET ?
"""

# The page of posts by the caller and their acquaintances (newest first, strictly after the
# cursor, no older than the bound), then the counts of only those rows.
_FEED_SQL = """
SELECT p.event_id, p.room_id, p.ts,
  (SELECT COUNT(*) FROM laiwang_timeline_relations AS r
    WHERE r.post_id = p.event_id AND r.kind = 'reaction' AND r.room_id = p.room_id),
  (SELECT COUNT(*) FROM laiwang_timeline_relations AS r
    WHERE r.post_id = p.event_id AND r.kind = 'comment' AND r.room_id = p.room_id)
FROM (
  SELECT event_id, room_id, ts FROM laiwang_timeline_posts
  WHERE owner IN ({authors}) {after}
  ORDER BY ts DESC, event_id DESC
  LIMIT ?
) AS p
ORDER BY p.ts DESC, p.event_id DESC
"""


def get_feed_txn(
    txn: Any, user_id: str, limit: int, before: tuple[int, str] | None
) -> list[FeedRow]:
    """The feed page; `txn` is a DB-API cursor taking `?` (Synapse's, or sqlite3's in tests)."""
    bound_before = ""
    bound_args: list[object] = []
    if before is not None:
        before_ts, before_id = before
        bound_before = "AND p.ts < ?"
        bound_args = [before_ts]
    txn.execute(
        _BOUND_SQL.format(before=bound_before, authors=_AUTHORS),
        [*bound_args, user_id, user_id, limit - 1],
    )
    head = fetch_value(txn)
    conditions: list[str] = []
    args: list[object] = []
    if head is not None:
        conditions.append("AND ts >= ?")
        args.append(int(head))
    if before is not None:
        conditions.append("AND (ts < ? OR (ts = ? AND event_id < ?))")
        args += [before_ts, before_ts, before_id]
    txn.execute(
        _FEED_SQL.format(authors=_AUTHORS, after=" ".join(conditions)),
        [user_id, user_id, *args, limit],
    )
    return [
        FeedRow(
            event_id=str(event_id),
            room_id=str(room_id),
            ts=int(ts),
            reactions=int(reactions),
            comments=int(comments),
        )
        for event_id, room_id, ts, reactions, comments in txn.fetchall()
    ]


def claim_accept_txn(
    txn: Any, invitee: str, owner: str, room_id: str, now: int, window_start: int
) -> bool:
    """`SharesStore.claim_accept`; `txn` is a DB-API cursor taking `?`."""
    txn.execute(
        "DELETE FROM laiwang_timeline_accepts WHERE invitee = ? AND ts <= ?",
        (invitee, min(window_start, now - shares.REACCEPT_AFTER_MS)),
    )
    txn.execute(
        "SELECT MAX(ts) FROM laiwang_timeline_accepts WHERE invitee = ? AND room_id = ?",
        (invitee, room_id),
    )
    previous = fetch_value(txn)
    txn.execute(
        "SELECT COUNT(*) FROM laiwang_timeline_accepts WHERE invitee = ? AND ts > ?",
        (invitee, window_start),
    )
    recent = int(fetch_value(txn) or 0)
    if not shares.accept_allowed(None if previous is None else int(previous), recent, now):
        return False
    txn.execute(
        "INSERT INTO laiwang_timeline_accepts (invitee, room_id, owner, ts) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (invitee, room_id, ts) DO NOTHING",
        (invitee, room_id, owner, now),
    )
    return True


class SharesStore(StoreMixin):
    """Mixin of LaiwangStore."""

    async def get_timeline(self, owner: str) -> str | None:
        def get_timeline_txn(txn: LoggingTransaction) -> str | None:
            txn.execute("SELECT room_id FROM laiwang_timelines WHERE owner = ?", (owner,))
            room_id = fetch_value(txn)
            return None if room_id is None else str(room_id)

        return await self.run("get_timeline", get_timeline_txn)

    async def get_all_timelines(self) -> list[tuple[str, str]]:
        """(owner, room_id) of every recorded timeline."""

        def get_all_timelines_txn(txn: LoggingTransaction) -> list[tuple[str, str]]:
            txn.execute("SELECT owner, room_id FROM laiwang_timelines ORDER BY owner")
            return [(owner, room_id) for owner, room_id in txn.fetchall()]

        return await self.run("get_all_timelines", get_all_timelines_txn)

    async def get_timeline_owner(self, room_id: str) -> str | None:
        def get_timeline_owner_txn(txn: LoggingTransaction) -> str | None:
            txn.execute("SELECT owner FROM laiwang_timelines WHERE room_id = ?", (room_id,))
            owner = fetch_value(txn)
            return None if owner is None else str(owner)

        return await self.run("get_timeline_owner", get_timeline_owner_txn)

    async def start_timeline_creation(self, owner: str, now: int) -> None:
        def start_timeline_creation_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "INSERT INTO laiwang_timeline_creations (owner, started_ts) VALUES (?, ?)"
                " ON CONFLICT (owner) DO UPDATE SET started_ts = excluded.started_ts",
                (owner, now),
            )

        await self.run("start_timeline_creation", start_timeline_creation_txn)

    async def is_creating_timeline(self, owner: str) -> bool:
        def is_creating_timeline_txn(txn: LoggingTransaction) -> bool:
            txn.execute("SELECT 1 FROM laiwang_timeline_creations WHERE owner = ?", (owner,))
            return txn.fetchone() is not None

        return await self.run("is_creating_timeline", is_creating_timeline_txn)

    async def get_unfinished_timeline_creations(self, started_before: int) -> list[str]:
        def get_unfinished_timeline_creations_txn(txn: LoggingTransaction) -> list[str]:
            txn.execute(
                "SELECT owner FROM laiwang_timeline_creations WHERE started_ts < ?"
                " ORDER BY started_ts LIMIT 100",
                (started_before,),
            )
            return [str(owner) for (owner,) in txn.fetchall()]

        return await self.run(
            "get_unfinished_timeline_creations", get_unfinished_timeline_creations_txn
        )

    async def retake_timeline_creation(self, owner: str, started_before: int, now: int) -> bool:
        """Take over a creation started before `started_before`: True for one process."""

        def retake_timeline_creation_txn(txn: LoggingTransaction) -> bool:
            txn.execute(
                "UPDATE laiwang_timeline_creations SET started_ts = ?"
                " WHERE owner = ? AND started_ts < ?",
                (now, owner, started_before),
            )
            return txn.rowcount > 0

        return await self.run("retake_timeline_creation", retake_timeline_creation_txn)

    async def finish_timeline_creation(self, owner: str) -> None:
        def finish_timeline_creation_txn(txn: LoggingTransaction) -> None:
            txn.execute("DELETE FROM laiwang_timeline_creations WHERE owner = ?", (owner,))

        await self.run("finish_timeline_creation", finish_timeline_creation_txn)

    async def claim_timeline(self, owner: str, room_id: str, now: int) -> str:
        """Record room_id as owner's timeline unless one is recorded already; returns the
        room id that is recorded (ours, or the one another process recorded first)."""

        def claim_timeline_txn(txn: LoggingTransaction) -> str:
            txn.execute(
                "INSERT INTO laiwang_timelines (owner, room_id, created_ts) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (owner, room_id, now),
            )
            txn.execute("SELECT room_id FROM laiwang_timelines WHERE owner = ?", (owner,))
            recorded = fetch_value(txn)
            return room_id if recorded is None else str(recorded)

        return await self.run("claim_timeline", claim_timeline_txn)

    async def unclaim_timeline(self, owner: str, room_id: str) -> None:
        """Forget room_id as owner's timeline (it turned out not to be one), and whatever of it
        was indexed meanwhile."""

        def unclaim_timeline_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "DELETE FROM laiwang_timelines WHERE owner = ? AND room_id = ?", (owner, room_id)
            )
            txn.execute("DELETE FROM laiwang_timeline_posts WHERE room_id = ?", (room_id,))
            txn.execute("DELETE FROM laiwang_timeline_relations WHERE room_id = ?", (room_id,))

        await self.run("unclaim_timeline", unclaim_timeline_txn)

    async def claim_accept(
        self, invitee: str, owner: str, room_id: str, now: int, window_start: int
    ) -> bool:
        """Record that this server joins invitee to owner's timeline room_id on its own, if
        `rooms.shares.accept_allowed` lets it (one transaction, so workers share the bound)."""
        return await self.run(
            "claim_accept", claim_accept_txn, invitee, owner, room_id, now, window_start
        )

    async def index_post(self, event_id: str, room_id: str, owner: str, ts: int) -> None:
        def index_post_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "INSERT INTO laiwang_timeline_posts (event_id, room_id, owner, ts)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                (event_id, room_id, owner, ts),
            )

        await self.run("index_post", index_post_txn)

    async def index_relation(self, event_id: str, room_id: str, post_id: str, kind: str) -> None:
        def index_relation_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "INSERT INTO laiwang_timeline_relations (event_id, post_id, kind, room_id)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                (event_id, post_id, kind, room_id),
            )

        await self.run("index_relation", index_relation_txn)

    async def unindex_event(self, event_id: str) -> None:
        """A redacted post, reaction or comment leaves the feed and the counts."""

        def unindex_event_txn(txn: LoggingTransaction) -> None:
            txn.execute("DELETE FROM laiwang_timeline_posts WHERE event_id = ?", (event_id,))
            txn.execute("DELETE FROM laiwang_timeline_relations WHERE event_id = ?", (event_id,))

        await self.run("unindex_event", unindex_event_txn)

    async def get_feed(
        self, user_id: str, limit: int, before: tuple[int, str] | None
    ) -> list[FeedRow]:
        """Posts of user_id's and their acquaintances' timelines, newest first, strictly older
        than `before` = (ts, event_id)."""
        return await self.run("get_feed", get_feed_txn, user_id, limit, before)
