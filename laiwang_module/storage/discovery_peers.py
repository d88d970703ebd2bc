"""SQL for discovery across servers: the sets of OPRF values this server publishes to its peers,
and the budgets of the peers' evaluations (in `laiwang_discovery_usage`, keyed by the remote
user's id and by the peer's server name, which never collide with a local user's id).

No phone number is stored: `laiwang_discovery_peer_prfs` holds values of a PRF keyed with a
secret derived from this server's key, which a peer can compute only through this server.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

import attr
from synapse.storage.database import LoggingTransaction, make_in_list_sql_clause
from synapse.storage.engines import PostgresEngine

from laiwang_module.storage.base import StoreMixin, fetch_value
from laiwang_module.storage.discovery import _ACTIVE, DAY_MS, _remember_contacts
from rooms.discovery_peers import published_key, unb64


@attr.s(frozen=True, slots=True, auto_attribs=True)
class PeerState:
    peer: str
    pepper: str
    built: bool
    requested_ts: int


@attr.s(frozen=True, slots=True, auto_attribs=True)
class PeerPrfRow:
    peer: str
    pepper: str
    pkey: int
    prf: str
    user_id: str
    address: str  # as Synapse stores it: the write checks it is still there; not stored


class DiscoveryPeersStore(StoreMixin):
    """Mixin of LaiwangStore."""

    if TYPE_CHECKING:  # DiscoveryStore's
        address_book_ttl_ms: int

    async def get_peer_states(self) -> list[PeerState]:
        def get_peer_states_txn(txn: LoggingTransaction) -> list[PeerState]:
            txn.execute(
                "SELECT peer, pepper, built, requested_ts FROM laiwang_discovery_peer_state"
            )
            return [
                PeerState(peer, pepper, bool(built), requested_ts)
                for peer, pepper, built, requested_ts in txn.fetchall()
            ]

        return await self.run("get_peer_states", get_peer_states_txn)

    async def claim_peer_build(
        self, peer: str, pepper: str, min_interval_ms: int
    ) -> tuple[PeerState | None, bool]:
        """The peer's state, and whether this process should now build its set for `pepper`:
        yes for a new peer; for a new pepper, or a build of this one that has not finished,
        only when the last build started `min_interval_ms` ago or more (a peer cannot make
        this server rebuild more often)."""
        now = self._now()

        def claim_peer_build_txn(txn: LoggingTransaction) -> tuple[PeerState | None, bool]:
            txn.execute(
                "SELECT pepper, built, requested_ts FROM laiwang_discovery_peer_state"
                " WHERE peer = ?",
                (peer,),
            )
            row = txn.fetchone()
            if row is not None:
                state = PeerState(peer, row[0], bool(row[1]), row[2])
                if (state.pepper == pepper and state.built) or (
                    now - state.requested_ts < min_interval_ms
                ):
                    return state, False
            txn.execute(
                "INSERT INTO laiwang_discovery_peer_state (peer, pepper, built, requested_ts)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (peer) DO UPDATE SET pepper = excluded.pepper,"
                " built = excluded.built, requested_ts = excluded.requested_ts",
                (peer, pepper, False, now),
            )
            return PeerState(peer, pepper, False, now), True

        return await self.run("claim_peer_build", claim_peer_build_txn)

    async def finish_peer_build(self, peer: str, pepper: str) -> None:
        """The set for (peer, pepper) is complete: publish it, drop older peppers' rows."""

        def finish_peer_build_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "UPDATE laiwang_discovery_peer_state SET built = ? WHERE peer = ? AND pepper = ?",
                (True, peer, pepper),
            )
            txn.execute(
                "DELETE FROM laiwang_discovery_peer_prfs WHERE peer = ? AND pepper <> ?",
                (peer, pepper),
            )
            # A number removed while the build ran may have been written back by a page read
            # before the removal: drop rows of users who no longer have any number (one pass;
            # `NOT IN` lets the database hash the subquery once).
            txn.execute(
                "DELETE FROM laiwang_discovery_peer_prfs WHERE peer = ? AND pepper = ?"
                " AND user_id NOT IN (SELECT user_id FROM user_threepids WHERE medium = 'msisdn')",
                (peer, pepper),
            )

        await self.run("finish_peer_build", finish_peer_build_txn)

    async def forget_peer(self, peer: str) -> None:
        """A server no longer in `discovery.peers`: its set goes."""

        def forget_peer_txn(txn: LoggingTransaction) -> None:
            txn.execute("DELETE FROM laiwang_discovery_peer_prfs WHERE peer = ?", (peer,))
            txn.execute("DELETE FROM laiwang_discovery_peer_state WHERE peer = ?", (peer,))

        await self.run("forget_peer", forget_peer_txn)

    async def add_peer_prfs(self, rows: Collection[PeerPrfRow]) -> None:
        """Add numbers to peers' sets, each only while Synapse still holds that number for that
        user (checked in the same transaction, as add_discovery_hashes)."""
        if not rows:
            return

        def add_peer_prfs_txn(txn: LoggingTransaction) -> None:
            conflict = (
                " ON CONFLICT (peer, pepper, pkey) DO UPDATE"
                " SET prf = excluded.prf, user_id = excluded.user_id"
            )
            exists = (
                " EXISTS (SELECT 1 FROM user_threepids AS t WHERE t.medium = 'msisdn'"
                " AND t.address = v.address AND t.user_id = v.user_id)"
            )
            if isinstance(txn.database_engine, PostgresEngine):
                txn.execute_values(
                    "INSERT INTO laiwang_discovery_peer_prfs (peer, pepper, pkey, prf, user_id)"
                    " SELECT v.peer, v.pepper, v.pkey, v.prf, v.user_id"
                    " FROM (VALUES ?) AS v (peer, pepper, pkey, prf, user_id, address)"
                    f" WHERE {exists}" + conflict,
                    [attr.astuple(r) for r in rows],
                    template="(%s, %s, %s::bigint, %s, %s, %s)",
                    fetch=False,
                )
            else:
                txn.execute_batch(
                    "INSERT INTO laiwang_discovery_peer_prfs (peer, pepper, pkey, prf, user_id)"
                    " SELECT v.peer, v.pepper, v.pkey, v.prf, v.user_id FROM (SELECT ? AS peer,"
                    " ? AS pepper, ? AS pkey, ? AS prf, ? AS user_id, ? AS address) AS v"
                    f" WHERE {exists}" + conflict,
                    [attr.astuple(r) for r in rows],
                )

        await self.run("add_peer_prfs", add_peer_prfs_txn)

    async def remove_peer_prfs(self, user_id: str, keys: Collection[tuple[str, str, int]]) -> None:
        """Drop (peer, pepper, pkey) numbers of a user from the peers' sets."""
        args = [(peer, pepper, pkey, user_id) for peer, pepper, pkey in keys]

        def remove_peer_prfs_txn(txn: LoggingTransaction) -> None:
            txn.execute_batch(
                "DELETE FROM laiwang_discovery_peer_prfs"
                " WHERE peer = ? AND pepper = ? AND pkey = ? AND user_id = ?",
                args,
            )

        await self.run("remove_peer_prfs", remove_peer_prfs_txn)

    async def get_peer_published_keys(
        self, peer: str, pepper: str, default_discoverable: bool
    ) -> list[int]:
        """The published part of the set for (peer, pepper): discoverable, active users only."""

        def get_peer_published_keys_txn(txn: LoggingTransaction) -> list[int]:
            txn.execute(
                "SELECT p.pkey FROM laiwang_discovery_peer_prfs AS p"
                " LEFT JOIN laiwang_user_settings AS s ON s.user_id = p.user_id"
                " WHERE p.peer = ? AND p.pepper = ? AND COALESCE(s.discoverable, ?)"
                f" AND {_ACTIVE.format('p.user_id')}",
                (peer, pepper, default_discoverable),
            )
            return [pkey for (pkey,) in txn.fetchall()]

        return await self.run("get_peer_published_keys", get_peer_published_keys_txn)

    async def resolve_peer_prfs(
        self, peer: str, pepper: str, prfs: Collection[str], default_discoverable: bool
    ) -> dict[str, str]:
        """prf -> user id for the given whole PRF values (base64) that name a discoverable,
        active user (a removed number's rows are deleted by the 3pid callback)."""
        keys = {published_key(unb64(p)) for p in prfs}
        wanted = set(prfs)

        def resolve_peer_prfs_txn(txn: LoggingTransaction) -> dict[str, str]:
            clause, args = make_in_list_sql_clause(txn.database_engine, "p.pkey", keys)
            txn.execute(
                "SELECT p.prf, p.user_id FROM laiwang_discovery_peer_prfs AS p"
                " LEFT JOIN laiwang_user_settings AS s ON s.user_id = p.user_id"
                f" WHERE p.peer = ? AND p.pepper = ? AND {clause}"
                " AND COALESCE(s.discoverable, ?)"
                f" AND {_ACTIVE.format('p.user_id')}",
                [peer, pepper, *args, default_discoverable],
            )
            return {prf: user_id for prf, user_id in txn.fetchall() if prf in wanted}

        if not keys:
            return {}
        return await self.run("resolve_peer_prfs", resolve_peer_prfs_txn)

    async def charge_peer_evaluation(
        self, user_id: str, server: str, day: int, count: int, max_user: int, max_server: int
    ) -> bool:
        """Charge `count` evaluations to a remote user's and their server's budgets for `day`,
        atomically; False (and nothing charged) when either would go over."""

        def charge_peer_evaluation_txn(txn: LoggingTransaction) -> bool:
            used = {}
            for key in (user_id, server):
                txn.execute(
                    "SELECT addresses FROM laiwang_discovery_usage WHERE user_id = ? AND day = ?",
                    (key, day),
                )
                used[key] = int(fetch_value(txn) or 0)
            if used[user_id] + count > max_user or used[server] + count > max_server:
                return False
            for key in (user_id, server):
                txn.execute(
                    "INSERT INTO laiwang_discovery_usage (user_id, day, addresses)"
                    " VALUES (?, ?, ?) ON CONFLICT (user_id, day)"
                    " DO UPDATE SET addresses = excluded.addresses",
                    (key, day, used[key] + count),
                )
            return True

        return await self.run("charge_peer_evaluation", charge_peer_evaluation_txn)

    async def remember_remote_contacts(self, owner_id: str, contacts: Collection[str]) -> None:
        """Merge users found on peers into a local owner's address book (as a local lookup)."""
        now = self._now()
        refresh_after = min(DAY_MS, self.address_book_ttl_ms // 10)

        def remember_remote_contacts_txn(txn: LoggingTransaction) -> None:
            _remember_contacts(txn, owner_id, contacts, now, refresh_after)

        await self.run("remember_remote_contacts", remember_remote_contacts_txn)
