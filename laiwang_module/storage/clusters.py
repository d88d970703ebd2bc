"""SQL for clusters: the clusters this server knows, their members and knock approvals.

`laiwang_cluster_members` has one row per (room, user) this server has seen a membership of,
kept after the user leaves (membership `leave`/`ban`) so that the invitation chain stays whole.
Its primary key (room_id, user_id) makes the join decision a lookup per acquaintance of the
caller; the (user_id, room_id) index serves "the caller's clusters" and discovery. Every write is
derived from room state and idempotent, so any worker may apply an event.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import attr
from synapse.storage.database import LoggingTransaction

from laiwang_module.storage.base import StoreMixin, fetch_value
from rooms.clusters import CLUSTER_STATE, MemberRow, discovery_key, member_count_delta


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ClusterRow:
    room_id: str
    topic: str
    creator: str
    created_ts: int
    member_count: int
    last_active_ts: int

    def to_json(self) -> dict[str, Any]:
        return {
            "room_id": self.room_id,
            "topic": self.topic,
            "creator": self.creator,
            "member_count": self.member_count,
            "last_active_ts": self.last_active_ts,
        }


@attr.s(frozen=True, slots=True, auto_attribs=True)
class MemberUpdate:
    """A user's current membership in a cluster, as derived from the room's state."""

    user_id: str
    membership: str
    invited_by: str | None
    joined_ts: int
    event_id: str


@attr.s(frozen=True, slots=True, auto_attribs=True)
class MemberRecord:
    """What the index holds of one user in a cluster."""

    membership: str
    invited_by: str | None
    event_id: str


SYNC_CLAIM_TTL_MS = 10 * 60 * 1000

_CLUSTER_COLUMNS = "room_id, topic, creator, created_ts, member_count, last_active_ts"


def _cluster_row(row: tuple[Any, ...]) -> ClusterRow:
    """A row of `SELECT {_CLUSTER_COLUMNS}`."""
    room_id, topic, creator, created_ts, member_count, last_active_ts = row
    return ClusterRow(
        room_id=room_id,
        topic=topic,
        creator=creator,
        created_ts=created_ts,
        member_count=member_count,
        last_active_ts=last_active_ts,
    )


# Ids per `IN (…)` list: far below SQLite's parameter limit.
CHUNK = 500


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def _acquaintance_ids(txn: Any, user_id: str) -> list[str]:
    txn.execute("SELECT other_id FROM laiwang_acquaintances WHERE user_id = ?", (user_id,))
    return [other_id for (other_id,) in txn.fetchall()]


def get_acquainted_members_txn(txn: Any, room_id: str, user_id: str) -> list[tuple[str, int]]:
    """(member, joined_ts) of the joined members of room_id who are acquaintances of user_id,
    earliest first.

    A correlated subquery on the full (room_id, user_id) key: one index-only probe per
    acquaintance of the caller, whatever the cluster's size. (A join let PostgreSQL merge-join
    against a range scan of the whole cluster, and an `IN (…)` list let it filter such a scan.)
    A module-level function so that bench/clusters_bench.py times this very SQL."""
    txn.execute(
        "SELECT a.other_id, (SELECT m.joined_ts FROM laiwang_cluster_members AS m"
        "  WHERE m.room_id = ? AND m.user_id = a.other_id AND m.membership = 'join')"
        " FROM laiwang_acquaintances AS a WHERE a.user_id = ?",
        (room_id, user_id),
    )
    joined = sorted(
        (int(joined_ts), member) for member, joined_ts in txn.fetchall() if joined_ts is not None
    )
    return [(member, joined_ts) for joined_ts, member in joined]


# Discovery first reads the caller's acquaintances (a range of a primary key), then their
# memberships by index with explicit `IN (…)` lists: a join let PostgreSQL's planner hash a scan
# of the whole members table (bench/clusters_bench.py: 300 ms); a list of ids leaves it index
# reads. A module-level function so that the benchmark times this very SQL.


def discover_clusters_txn(txn: Any, user_id: str, limit: int) -> list[tuple[ClusterRow, list[str]]]:
    """Clusters with joined acquaintances of user_id that user_id is not in (nor banned from),
    most acquaintances first, then most recently active; with those acquaintances.

    The acquaintances' memberships come from index-only reads of (user_id, membership,
    room_id); activity is then read (by a covering index) only for the clusters that compete for
    the last places, and details only for the chosen ones."""
    txn.execute(
        "SELECT room_id FROM laiwang_cluster_members"
        " WHERE user_id = ? AND membership IN ('join', 'ban')",
        (user_id,),
    )
    own = {room_id for (room_id,) in txn.fetchall()}
    friends: dict[str, list[str]] = {}
    for chunk in _chunks(_acquaintance_ids(txn, user_id)):
        marks = ",".join("?" * len(chunk))
        txn.execute(
            "SELECT room_id, user_id FROM laiwang_cluster_members"
            f" WHERE user_id IN ({marks}) AND membership = 'join'",
            chunk,
        )
        for room_id, other in txn.fetchall():
            if room_id not in own:
                friends.setdefault(room_id, []).append(other)
    # Whole groups of equal count, most first, until `limit` clusters are in: only the last
    # group's clusters need their activity compared.
    by_count: dict[int, list[str]] = {}
    for room_id, others in friends.items():
        by_count.setdefault(len(others), []).append(room_id)
    candidates: list[str] = []
    for count in sorted(by_count, reverse=True):
        if len(candidates) >= limit:
            break
        candidates.extend(by_count[count])
    clusters: dict[str, ClusterRow] = {}
    for chunk in _chunks(candidates):
        marks = ",".join("?" * len(chunk))
        txn.execute(
            f"SELECT room_id, last_active_ts FROM laiwang_clusters WHERE room_id IN ({marks})",
            chunk,
        )
        active = {room_id: last_active_ts for room_id, last_active_ts in txn.fetchall()}
        ranked = [r for r in chunk if r in active]
        for room_id in ranked:
            clusters[room_id] = ClusterRow(
                room_id=room_id,
                topic="",
                creator="",
                created_ts=0,
                member_count=0,
                last_active_ts=int(active[room_id]),
            )
    chosen = sorted(
        clusters.values(),
        key=lambda c: discovery_key(len(friends[c.room_id]), c.last_active_ts, c.room_id),
    )[:limit]
    if not chosen:
        return []
    marks = ",".join("?" * len(chosen))
    txn.execute(
        f"SELECT {_CLUSTER_COLUMNS} FROM laiwang_clusters WHERE room_id IN ({marks})",
        [c.room_id for c in chosen],
    )
    rows = {row.room_id: row for row in map(_cluster_row, txn.fetchall())}
    return [(rows[c.room_id], friends[c.room_id]) for c in chosen if c.room_id in rows]


def update_cluster_members_txn(
    txn: LoggingTransaction, room_id: str, updates: list[MemberUpdate], only_missing: bool
) -> None:
    """Write each membership and keep `member_count` in step, one transition at a time.

    The count moves by the transition of the very row the upsert changed, so it costs O(1) per
    event whatever the cluster's size (a `COUNT(*)` per event made n joins cost O(n²):
    bench/clusters_bench.py). The upsert changes nothing for an event already applied (same
    event id: a re-delivery, or another worker), so nothing is counted twice; on PostgreSQL two
    workers writing the same row at once conflict under Synapse's repeatable-read isolation and
    the loser retries, then sees the row written. A module-level function so that the benchmark
    times this very SQL."""
    if only_missing:
        conflict = "DO NOTHING"
    else:
        conflict = (
            "DO UPDATE SET membership = excluded.membership,"
            " invited_by = excluded.invited_by, joined_ts = excluded.joined_ts,"
            " event_id = excluded.event_id"
            " WHERE laiwang_cluster_members.event_id <> excluded.event_id"
        )
    delta = 0
    for u in updates:
        txn.execute(
            "SELECT membership FROM laiwang_cluster_members WHERE room_id = ? AND user_id = ?",
            (room_id, u.user_id),
        )
        previous = fetch_value(txn)
        txn.execute(
            "INSERT INTO laiwang_cluster_members"
            " (room_id, user_id, membership, invited_by, joined_ts, event_id)"
            f" VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (room_id, user_id) {conflict}",
            (room_id, u.user_id, u.membership, u.invited_by, u.joined_ts, u.event_id),
        )
        if txn.rowcount == 1:
            delta += member_count_delta(None if previous is None else str(previous), u.membership)
    if delta:
        txn.execute(
            "UPDATE laiwang_clusters SET member_count = member_count + ? WHERE room_id = ?",
            (delta, room_id),
        )


class ClustersStore(StoreMixin):
    """Mixin of LaiwangStore."""

    async def record_cluster(
        self, room_id: str, topic: str, creator: str, created_ts: int, now: int
    ) -> bool:
        """Insert the cluster, or update its topic and note activity at `now` (an event's
        timestamp: discovery ranks recent clusters first). True while its members have not
        been read from the room's full state yet (`claim_member_sync`)."""

        def record_cluster_txn(txn: LoggingTransaction) -> bool:
            txn.execute(
                "SELECT topic, last_active_ts, members_synced FROM laiwang_clusters"
                " WHERE room_id = ?",
                (room_id,),
            )
            row = txn.fetchone()
            if row is None:
                txn.execute(
                    f"INSERT INTO laiwang_clusters ({_CLUSTER_COLUMNS})"
                    " VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT (room_id) DO NOTHING",
                    (room_id, topic, creator, created_ts, now),
                )
                return True
            recorded_topic, last_active_ts, members_synced = row
            if recorded_topic != topic or last_active_ts < now:
                txn.execute(
                    "UPDATE laiwang_clusters SET topic = ?,"
                    " last_active_ts = CASE WHEN last_active_ts < ? THEN ? ELSE last_active_ts END"
                    " WHERE room_id = ?",
                    (topic, now, now, room_id),
                )
            return not members_synced

        return await self.run("record_cluster", record_cluster_txn)

    async def get_all_cluster_room_ids(self) -> list[str]:
        """Every room that is or may be a cluster: the index's, and every room whose current
        state in Synapse's own table carries the cluster state (should the index miss it)."""

        def get_all_cluster_room_ids_txn(txn: LoggingTransaction) -> list[str]:
            txn.execute(
                "SELECT room_id FROM laiwang_clusters UNION"
                " SELECT room_id FROM current_state_events WHERE type = ? AND state_key = ''",
                (CLUSTER_STATE,),
            )
            return sorted(room_id for (room_id,) in txn.fetchall())

        return await self.run("get_all_cluster_room_ids", get_all_cluster_room_ids_txn)

    async def get_unindexed_cluster_joins(self, user_id: str) -> list[str]:
        """Rooms with cluster state that a local user is joined to (Synapse's own tables) where
        the index does not hold that join yet: its update has not run."""

        def get_unindexed_cluster_joins_txn(txn: LoggingTransaction) -> list[str]:
            txn.execute(
                "SELECT l.room_id FROM local_current_membership AS l"
                " JOIN current_state_events AS c"
                " ON c.room_id = l.room_id AND c.type = ? AND c.state_key = ''"
                " LEFT JOIN laiwang_cluster_members AS m"
                " ON m.room_id = l.room_id AND m.user_id = l.user_id AND m.event_id = l.event_id"
                " WHERE l.user_id = ? AND l.membership = ? AND m.room_id IS NULL",
                (CLUSTER_STATE, user_id, "join"),
            )
            return [room_id for (room_id,) in txn.fetchall()]

        return await self.run("get_unindexed_cluster_joins", get_unindexed_cluster_joins_txn)

    async def get_cluster(self, room_id: str) -> ClusterRow | None:
        def get_cluster_txn(txn: LoggingTransaction) -> ClusterRow | None:
            txn.execute(
                f"SELECT {_CLUSTER_COLUMNS} FROM laiwang_clusters WHERE room_id = ?", (room_id,)
            )
            row = txn.fetchone()
            return _cluster_row(row) if row else None

        return await self.run("get_cluster", get_cluster_txn)

    async def claim_member_sync(self, room_id: str, now: int) -> bool:
        """True for the one process that should read the cluster's members from full state
        now: none has, and no other process claimed it in the last 10 minutes."""

        def claim_member_sync_txn(txn: LoggingTransaction) -> bool:
            txn.execute(
                "UPDATE laiwang_clusters SET sync_claimed_ts = ?"
                " WHERE room_id = ? AND members_synced = 0"
                " AND (sync_claimed_ts IS NULL OR sync_claimed_ts < ?)",
                (now, room_id, now - SYNC_CLAIM_TTL_MS),
            )
            return txn.rowcount > 0

        return await self.run("claim_member_sync", claim_member_sync_txn)

    async def end_member_sync(self, room_id: str, done: bool) -> None:
        def end_member_sync_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "UPDATE laiwang_clusters SET members_synced = ?, sync_claimed_ts = NULL"
                " WHERE room_id = ?",
                (1 if done else 0, room_id),
            )

        await self.run("end_member_sync", end_member_sync_txn)

    async def update_cluster_members(
        self, room_id: str, updates: Iterable[MemberUpdate], *, only_missing: bool = False
    ) -> None:
        """Apply current memberships. `only_missing` fills gaps only (a sync from a state
        snapshot must not overwrite what a newer event already wrote)."""
        await self.run(
            "update_cluster_members", update_cluster_members_txn, room_id, list(updates),
            only_missing,
        )  # fmt: skip

    async def get_member_row(self, room_id: str, user_id: str) -> MemberRecord | None:
        """What the index holds of one user in a cluster, or None."""

        def get_member_row_txn(txn: LoggingTransaction) -> MemberRecord | None:
            txn.execute(
                "SELECT membership, invited_by, event_id FROM laiwang_cluster_members"
                " WHERE room_id = ? AND user_id = ?",
                (room_id, user_id),
            )
            row = txn.fetchone()
            if row is None:
                return None
            membership, invited_by, event_id = row
            return MemberRecord(membership=membership, invited_by=invited_by, event_id=event_id)

        return await self.run("get_member_row", get_member_row_txn)

    async def forget_cluster(self, room_id: str) -> None:
        """Drop a room from the index: its state no longer makes it a genuine cluster (or an
        older version of the module indexed a forged one)."""

        def forget_cluster_txn(txn: LoggingTransaction) -> None:
            txn.execute("DELETE FROM laiwang_cluster_members WHERE room_id = ?", (room_id,))
            txn.execute("DELETE FROM laiwang_clusters WHERE room_id = ?", (room_id,))

        await self.run("forget_cluster", forget_cluster_txn)

    async def get_member_event_ids(self, room_id: str, user_ids: list[str]) -> dict[str, str]:
        def get_member_event_ids_txn(txn: LoggingTransaction) -> dict[str, str]:
            out: dict[str, str] = {}
            for i in range(0, len(user_ids), 500):
                chunk = user_ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                txn.execute(
                    "SELECT user_id, event_id FROM laiwang_cluster_members"
                    f" WHERE room_id = ? AND user_id IN ({marks})",
                    (room_id, *chunk),
                )
                out.update({user_id: event_id for user_id, event_id in txn.fetchall()})
            return out

        return await self.run("get_member_event_ids", get_member_event_ids_txn)

    async def get_cluster_member_rows(self, room_id: str) -> list[MemberRow]:
        """Every user this server has seen in the cluster, joined or not (for the tree)."""

        def get_cluster_member_rows_txn(txn: LoggingTransaction) -> list[MemberRow]:
            txn.execute(
                "SELECT user_id, invited_by, joined_ts, membership FROM laiwang_cluster_members"
                " WHERE room_id = ?",
                (room_id,),
            )
            return [
                MemberRow(
                    user_id=user_id,
                    invited_by=invited_by,
                    joined_ts=int(joined_ts),
                    joined=membership == "join",
                )
                for user_id, invited_by, joined_ts, membership in txn.fetchall()
            ]

        return await self.run("get_cluster_member_rows", get_cluster_member_rows_txn)

    async def get_cluster_membership(self, room_id: str, user_id: str) -> str | None:
        def get_cluster_membership_txn(txn: LoggingTransaction) -> str | None:
            txn.execute(
                "SELECT membership FROM laiwang_cluster_members WHERE room_id = ? AND user_id = ?",
                (room_id, user_id),
            )
            membership = fetch_value(txn)
            return None if membership is None else str(membership)

        return await self.run("get_cluster_membership", get_cluster_membership_txn)

    async def get_acquainted_members(self, room_id: str, user_id: str) -> list[str]:
        """Joined members of the cluster who are acquaintances of user_id, earliest first."""

        found = await self.run(
            "get_acquainted_members", get_acquainted_members_txn, room_id, user_id
        )
        return [member for member, _ in found]

    async def get_user_clusters(self, user_id: str) -> list[ClusterRow]:
        def get_user_clusters_txn(txn: LoggingTransaction) -> list[ClusterRow]:
            txn.execute(
                f"SELECT {', '.join('c.' + c for c in _CLUSTER_COLUMNS.split(', '))}"
                " FROM laiwang_cluster_members AS m"
                " CROSS JOIN laiwang_clusters AS c"
                " WHERE m.user_id = ? AND m.membership = 'join' AND c.room_id = m.room_id"
                " ORDER BY c.last_active_ts DESC, c.room_id",
                (user_id,),
            )
            return [_cluster_row(row) for row in txn.fetchall()]

        return await self.run("get_user_clusters", get_user_clusters_txn)

    async def discover_clusters(
        self, user_id: str, limit: int
    ) -> list[tuple[ClusterRow, list[str]]]:
        return await self.run("discover_clusters", discover_clusters_txn, user_id, limit)

    async def claim_knock(self, event_id: str, room_id: str, knocker: str, now: int) -> bool:
        """True for the one process (of several workers) that decides on this knock."""

        def claim_knock_txn(txn: LoggingTransaction) -> bool:
            txn.execute(
                "INSERT INTO laiwang_cluster_knocks (event_id, room_id, knocker, ts)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                (event_id, room_id, knocker, now),
            )
            return txn.rowcount > 0

        return await self.run("claim_knock", claim_knock_txn)

    async def decide_knock(self, event_id: str, approver: str | None, now: int) -> None:
        """The knock's decision is carried out: `approver` invited the knocker, or nobody
        could (None)."""

        def decide_knock_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "UPDATE laiwang_cluster_knocks SET approver = ?, decided_ts = ? WHERE event_id = ?",
                (approver, now, event_id),
            )

        await self.run("decide_knock", decide_knock_txn)

    async def get_undecided_knocks(self, claimed_before: int) -> list[tuple[str, str, str]]:
        """(event_id, room_id, knocker) of claims not carried out since `claimed_before`: their
        process died between the claim and the invite."""

        def get_undecided_knocks_txn(txn: LoggingTransaction) -> list[tuple[str, str, str]]:
            txn.execute(
                "SELECT event_id, room_id, knocker FROM laiwang_cluster_knocks"
                " WHERE decided_ts IS NULL AND ts < ? ORDER BY ts LIMIT 100",
                (claimed_before,),
            )
            return [(str(e), str(r), str(k)) for e, r, k in txn.fetchall()]

        return await self.run("get_undecided_knocks", get_undecided_knocks_txn)

    async def retake_knock(self, event_id: str, claimed_before: int, now: int) -> bool:
        """Take over an undecided claim older than `claimed_before`: True for one process."""

        def retake_knock_txn(txn: LoggingTransaction) -> bool:
            txn.execute(
                "UPDATE laiwang_cluster_knocks SET ts = ?"
                " WHERE event_id = ? AND decided_ts IS NULL AND ts < ?",
                (now, event_id, claimed_before),
            )
            return txn.rowcount > 0

        return await self.run("retake_knock", retake_knock_txn)
