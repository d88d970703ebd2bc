"""SQL for phone-number discovery: the caller's address book, the pepper, the hash index and
the daily lookup budget.

No phone number is stored in the clear by any of these tables (docs/api/discovery.md says what
is stored and for how long; the msisdn validation sessions are in storage/msisdn.py). Synapse's own `user_threepids` table is the one source of numbers;
`laiwang_discovery_hashes` is only an index over it, rebuilt whenever the pepper rotates.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import attr
from synapse.storage.database import LoggingTransaction, make_in_list_sql_clause
from synapse.storage.engines import PostgresEngine

from laiwang_module.storage.base import StoreMixin, fetch_value

DAY_MS = 24 * 60 * 60 * 1000
DEFAULT_ADDRESS_BOOK_TTL_MS = 90 * DAY_MS


@attr.s(frozen=True, slots=True, auto_attribs=True)
class PepperState:
    gen: int
    pepper: str
    rotated_ts: int
    built: bool
    next_gen: int | None
    next_pepper: str | None

    def generations(self) -> list[tuple[int, str]]:
        """The peppers the index must be kept current for (the next one during a rotation)."""
        out = [(self.gen, self.pepper)]
        if self.next_gen is not None and self.next_pepper is not None:
            out.append((self.next_gen, self.next_pepper))
        return out


@attr.s(frozen=True, slots=True, auto_attribs=True)
class IndexRow:
    """One number of one user in the index of one pepper generation."""

    gen: int
    hkey: int  # rooms.discovery.hash_key(hash)
    hash: str
    user_id: str
    address: str  # as Synapse stores it: the write checks it is still there


class DiscoveryStore(StoreMixin):
    """Mixin of LaiwangStore."""

    # Set from the module config at start (callbacks.discovery.register).
    address_book_ttl_ms: int = DEFAULT_ADDRESS_BOOK_TTL_MS

    def configure_discovery(self, address_book_ttl_ms: int) -> None:
        self.address_book_ttl_ms = address_book_ttl_ms

    def _book_cutoff(self) -> int:
        return self._now() - self.address_book_ttl_ms

    # --- the address book (the API the contacts feature builds on) ---

    async def is_in_address_book(self, owner_id: str, contact_user_id: str) -> bool:
        """Whether `owner_id` has `contact_user_id`'s number in their (unexpired) book."""
        cutoff = self._book_cutoff()

        def is_in_address_book_txn(txn: LoggingTransaction) -> bool:
            txn.execute(
                "SELECT 1 FROM laiwang_address_book"
                " WHERE owner_id = ? AND contact_id = ? AND updated_ts >= ?",
                (owner_id, contact_user_id, cutoff),
            )
            return txn.fetchone() is not None

        return await self.run("is_in_address_book", is_in_address_book_txn)

    async def get_address_book_user_ids(self, owner_id: str) -> list[str]:
        """The active users whose numbers `owner_id` has in their book (sorted)."""
        cutoff = self._book_cutoff()

        def get_address_book_user_ids_txn(txn: LoggingTransaction) -> list[str]:
            txn.execute(
                "SELECT contact_id FROM laiwang_address_book"
                " WHERE owner_id = ? AND updated_ts >= ?"
                f" AND {_ACTIVE.format('contact_id')} ORDER BY contact_id",
                (owner_id, cutoff),
            )
            return [contact_id for (contact_id,) in txn.fetchall()]

        return await self.run("get_address_book_user_ids", get_address_book_user_ids_txn)

    async def get_address_book_owners_of(self, contact_user_id: str) -> list[str]:
        """The active users who have `contact_user_id`'s number in their book (sorted)."""
        cutoff = self._book_cutoff()

        def get_address_book_owners_of_txn(txn: LoggingTransaction) -> list[str]:
            txn.execute(
                "SELECT owner_id FROM laiwang_address_book"
                " WHERE contact_id = ? AND updated_ts >= ?"
                f" AND {_ACTIVE.format('owner_id')} ORDER BY owner_id",
                (contact_user_id, cutoff),
            )
            return [owner_id for (owner_id,) in txn.fetchall()]

        return await self.run("get_address_book_owners_of", get_address_book_owners_of_txn)

    async def forget_address_book_user(self, user_id: str) -> int:
        """Deactivation: every entry where `user_id` is the owner or the contact."""

        def forget_address_book_user_txn(txn: LoggingTransaction) -> int:
            txn.execute(
                "DELETE FROM laiwang_address_book WHERE owner_id = ? OR contact_id = ?",
                (user_id, user_id),
            )
            return int(txn.rowcount)

        return await self.run("forget_address_book_user", forget_address_book_user_txn)

    async def forget_address_book_contact(self, contact_user_id: str) -> int:
        """A number removed: every entry that names `contact_user_id` as the contact. Entries
        do not record which number matched, so all go; the owners' next lookups bring back
        those that still match a number the user keeps."""

        def forget_address_book_contact_txn(txn: LoggingTransaction) -> int:
            txn.execute("DELETE FROM laiwang_address_book WHERE contact_id = ?", (contact_user_id,))
            return int(txn.rowcount)

        return await self.run("forget_address_book_contact", forget_address_book_contact_txn)

    async def purge_expired_address_book(self) -> int:
        cutoff = self._book_cutoff()

        def purge_expired_address_book_txn(txn: LoggingTransaction) -> int:
            txn.execute("DELETE FROM laiwang_address_book WHERE updated_ts < ?", (cutoff,))
            return int(txn.rowcount)

        return await self.run("purge_expired_address_book", purge_expired_address_book_txn)

    # --- the pepper and the hash index ---

    async def get_pepper_state(self) -> PepperState | None:
        return await self.run("get_pepper_state", get_pepper_state_txn)

    async def create_pepper_state(self, pepper: str) -> PepperState:
        """The state, created with `pepper` (generation 1, index not yet built) if absent."""
        now = self._now()

        def create_pepper_state_txn(txn: LoggingTransaction) -> PepperState:
            txn.execute(
                "INSERT INTO laiwang_discovery_state"
                " (singleton, gen, pepper, rotated_ts, built) VALUES (1, 1, ?, ?, ?)"
                " ON CONFLICT (singleton) DO NOTHING",
                (pepper, now, False),
            )
            state = get_pepper_state_txn(txn)
            assert state is not None
            return state

        return await self.run("create_pepper_state", create_pepper_state_txn)

    async def begin_pepper_rotation(self, next_pepper: str) -> PepperState:
        """Announce the next pepper, so index updates cover it while it is being built."""

        def begin_pepper_rotation_txn(txn: LoggingTransaction) -> PepperState:
            txn.execute(
                "UPDATE laiwang_discovery_state SET next_gen = gen + 1, next_pepper = ?"
                " WHERE singleton = 1 AND next_gen IS NULL",
                (next_pepper,),
            )
            state = get_pepper_state_txn(txn)
            assert state is not None
            return state

        return await self.run("begin_pepper_rotation", begin_pepper_rotation_txn)

    async def finish_pepper_rotation(self, next_gen: int) -> None:
        """Make the next pepper current, then drop the old generation's index."""
        now = self._now()

        def finish_pepper_rotation_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "UPDATE laiwang_discovery_state SET gen = next_gen, pepper = next_pepper,"
                " rotated_ts = ?, built = ?, next_gen = NULL, next_pepper = NULL"
                " WHERE singleton = 1 AND next_gen = ?",
                (now, True, next_gen),
            )

        def drop_old_discovery_hashes_txn(txn: LoggingTransaction) -> None:
            txn.execute("DELETE FROM laiwang_discovery_hashes WHERE gen < ?", (next_gen,))

        # The switch is its own short transaction; the bulk delete follows it.
        await self.run("finish_pepper_rotation", finish_pepper_rotation_txn)
        await self.run("drop_old_discovery_hashes", drop_old_discovery_hashes_txn)

    async def analyze_discovery_hashes(self) -> None:
        """Fresh planner statistics after a bulk build (PostgreSQL; autovacuum may lag)."""

        def analyze_discovery_hashes_txn(txn: LoggingTransaction) -> None:
            if isinstance(txn.database_engine, PostgresEngine):
                txn.execute("ANALYZE laiwang_discovery_hashes")

        await self.run("analyze_discovery_hashes", analyze_discovery_hashes_txn)

    async def mark_pepper_index_built(self, gen: int) -> None:
        def mark_pepper_index_built_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "UPDATE laiwang_discovery_state SET built = ? WHERE singleton = 1 AND gen = ?",
                (True, gen),
            )

        await self.run("mark_pepper_index_built", mark_pepper_index_built_txn)

    async def get_msisdn_threepids_page(
        self, after: str | None, limit: int
    ) -> list[tuple[str, str]]:
        """(user_id, address) of Synapse's msisdn 3pids in address order, after `after`: a walk
        along Synapse's unique (medium, address) index, so each page costs its own size."""

        def get_msisdn_threepids_page_txn(txn: LoggingTransaction) -> list[tuple[str, str]]:
            txn.execute(
                "SELECT user_id, address FROM user_threepids"
                " WHERE medium = 'msisdn' AND address > ? ORDER BY address LIMIT ?",
                (after or "", limit),
            )
            return [(user_id, address) for user_id, address in txn.fetchall()]

        return await self.run("get_msisdn_threepids_page", get_msisdn_threepids_page_txn)

    async def add_discovery_hashes(self, rows: Collection[IndexRow]) -> None:
        """Index numbers. A row is written only while Synapse still holds that number for that
        user (checked in the same transaction), so a build page read before a removal cannot
        bring the number back; a number that moved to another user moves too."""
        if not rows:
            return

        def add_discovery_hashes_txn(txn: LoggingTransaction) -> None:
            conflict = (
                " ON CONFLICT (hkey, gen) DO UPDATE"
                " SET user_id = excluded.user_id, hash = excluded.hash"
            )
            exists = (
                " EXISTS (SELECT 1 FROM user_threepids AS t WHERE t.medium = 'msisdn'"
                " AND t.address = v.address AND t.user_id = v.user_id)"
            )
            if isinstance(txn.database_engine, PostgresEngine):
                txn.execute_values(
                    "INSERT INTO laiwang_discovery_hashes (gen, hkey, hash, user_id)"
                    " SELECT v.gen, v.hkey, v.hash, v.user_id"
                    " FROM (VALUES ?) AS v (gen, hkey, hash, user_id, address)"
                    f" WHERE {exists}" + conflict,
                    [attr.astuple(r) for r in rows],
                    template="(%s::bigint, %s::bigint, %s, %s, %s)",
                    fetch=False,
                )
            else:
                txn.execute_batch(
                    "INSERT INTO laiwang_discovery_hashes (gen, hkey, hash, user_id)"
                    " SELECT v.gen, v.hkey, v.hash, v.user_id FROM (SELECT ? AS gen,"
                    " ? AS hkey, ? AS hash, ? AS user_id, ? AS address) AS v"
                    f" WHERE {exists}" + conflict,
                    [attr.astuple(r) for r in rows],
                )

        await self.run("add_discovery_hashes", add_discovery_hashes_txn)

    async def get_discovery_owners(self, keys: Iterable[tuple[int, int]]) -> set[str]:
        """Who the index holds for these (gen, hkey) numbers now."""
        keys = list(keys)

        def get_discovery_owners_txn(txn: LoggingTransaction) -> set[str]:
            owners: set[str] = set()
            for gen, hkey in keys:
                txn.execute(
                    "SELECT user_id FROM laiwang_discovery_hashes WHERE gen = ? AND hkey = ?",
                    (gen, hkey),
                )
                owners.update(user_id for (user_id,) in txn.fetchall())
            return owners

        return await self.run("get_discovery_owners", get_discovery_owners_txn)

    async def remove_discovery_hashes(
        self, user_id: str, keys: Iterable[tuple[int, int]], log: bool
    ) -> None:
        """Unindex (gen, hkey) numbers of a user. With `log` (an index build is running), also
        record the removal, to be applied again when the build is done: a build write that
        raced this removal may land after it."""
        args = [(gen, hkey, user_id) for gen, hkey in keys]

        def remove_discovery_hashes_txn(txn: LoggingTransaction) -> None:
            txn.execute_batch(
                "DELETE FROM laiwang_discovery_hashes WHERE gen = ? AND hkey = ? AND user_id = ?",
                args,
            )
            if log:
                txn.execute_batch(
                    "INSERT INTO laiwang_discovery_removals (gen, hkey, user_id) VALUES (?, ?, ?)",
                    args,
                )

        await self.run("remove_discovery_hashes", remove_discovery_hashes_txn)

    async def replay_discovery_removals(self, gen: int) -> None:
        """After a build of `gen`: apply the removals logged meanwhile once more."""

        def replay_discovery_removals_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "DELETE FROM laiwang_discovery_hashes WHERE gen = ? AND EXISTS ("
                " SELECT 1 FROM laiwang_discovery_removals AS r WHERE r.gen = ?"
                " AND r.hkey = laiwang_discovery_hashes.hkey"
                " AND r.user_id = laiwang_discovery_hashes.user_id)",
                (gen, gen),
            )
            txn.execute("DELETE FROM laiwang_discovery_removals WHERE gen <= ?", (gen,))

        await self.run("replay_discovery_removals", replay_discovery_removals_txn)

    # --- a lookup ---

    async def find_discovery_hits(
        self, gen: int, keys: Collection[int]
    ) -> tuple[list[tuple[str, str]], dict[str, bool]]:
        """For the hash keys of one lookup: the (full hash, user) index hits, and the
        `discoverable` settings those users chose (absent: the default)."""

        def find_discovery_hits_txn(
            txn: LoggingTransaction,
        ) -> tuple[list[tuple[str, str]], dict[str, bool]]:
            clause, args = make_in_list_sql_clause(txn.database_engine, "h.hkey", keys)
            txn.execute(
                "SELECT h.hash, h.user_id, s.discoverable FROM laiwang_discovery_hashes AS h"
                " LEFT JOIN laiwang_user_settings AS s ON s.user_id = h.user_id"
                f" WHERE h.gen = ? AND {clause}",
                [gen, *args],
            )
            hits: list[tuple[str, str]] = []
            chosen: dict[str, bool] = {}
            for full_hash, user_id, discoverable in txn.fetchall():
                hits.append((full_hash, user_id))
                if discoverable is not None:
                    chosen[user_id] = bool(discoverable)
            return hits, chosen

        return await self.run("find_discovery_hits", find_discovery_hits_txn)

    async def charge_lookup_and_remember(
        self,
        owner_id: str,
        day: int,
        addresses: int,
        max_per_day: int,
        contacts: Collection[str],
    ) -> bool:
        """Charge `addresses` to the owner's budget for `day` and merge `contacts` into their
        address book, atomically; False (and nothing changed) when over the budget."""
        now = self._now()
        # Re-uploads of the same book do not rewrite fresh rows (expiry is coarse anyway).
        refresh_after = min(DAY_MS, self.address_book_ttl_ms // 10)

        def charge_lookup_and_remember_txn(txn: LoggingTransaction) -> bool:
            if isinstance(txn.database_engine, PostgresEngine):
                # Do not wait for the WAL flush: a crash may lose the last moment's budget
                # charges and book entries, which is harmless, and the lookup skips an fsync.
                txn.execute("SET LOCAL synchronous_commit TO OFF")
            txn.execute(
                "SELECT addresses FROM laiwang_discovery_usage WHERE user_id = ? AND day = ?",
                (owner_id, day),
            )
            used = int(fetch_value(txn) or 0)
            if used + addresses > max_per_day:
                return False
            txn.execute(
                "INSERT INTO laiwang_discovery_usage (user_id, day, addresses) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id, day) DO UPDATE SET addresses = excluded.addresses",
                (owner_id, day, used + addresses),
            )
            _remember_contacts(txn, owner_id, contacts, now, refresh_after)
            return True

        return await self.run("charge_lookup_and_remember", charge_lookup_and_remember_txn)

    async def get_lookup_usage(self, owner_id: str, day: int) -> int:
        def get_lookup_usage_txn(txn: LoggingTransaction) -> int:
            txn.execute(
                "SELECT addresses FROM laiwang_discovery_usage WHERE user_id = ? AND day = ?",
                (owner_id, day),
            )
            return int(fetch_value(txn) or 0)

        return await self.run("get_lookup_usage", get_lookup_usage_txn)

    # --- Identity Service API v2 tokens ---

    async def add_identity_token(self, token_hash: str, user_id: str) -> None:
        now = self._now()

        def add_identity_token_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "INSERT INTO laiwang_identity_tokens (token_hash, user_id, created_ts)"
                " VALUES (?, ?, ?)",
                (token_hash, user_id, now),
            )

        await self.run("add_identity_token", add_identity_token_txn)

    async def get_identity_token_user(self, token_hash: str) -> str | None:
        """The user an identity token was issued to, unless they are deactivated since."""

        def get_identity_token_user_txn(txn: LoggingTransaction) -> str | None:
            txn.execute(
                "SELECT user_id FROM laiwang_identity_tokens"
                f" WHERE token_hash = ? AND {_ACTIVE.format('user_id')}",
                (token_hash,),
            )
            value = fetch_value(txn)
            return None if value is None else str(value)

        return await self.run("get_identity_token_user", get_identity_token_user_txn)

    async def delete_identity_token(self, token_hash: str) -> None:
        def delete_identity_token_txn(txn: LoggingTransaction) -> None:
            txn.execute("DELETE FROM laiwang_identity_tokens WHERE token_hash = ?", (token_hash,))

        await self.run("delete_identity_token", delete_identity_token_txn)

    async def delete_identity_tokens_of(self, user_id: str) -> None:
        def delete_identity_tokens_of_txn(txn: LoggingTransaction) -> None:
            txn.execute("DELETE FROM laiwang_identity_tokens WHERE user_id = ?", (user_id,))

        await self.run("delete_identity_tokens_of", delete_identity_tokens_of_txn)

    async def purge_old_lookup_usage(self, before_day: int) -> None:
        def purge_old_lookup_usage_txn(txn: LoggingTransaction) -> None:
            txn.execute("DELETE FROM laiwang_discovery_usage WHERE day < ?", (before_day,))

        await self.run("purge_old_lookup_usage", purge_old_lookup_usage_txn)


# Not deactivated in Synapse's `users` table (the entry's user may be anyone local).
_ACTIVE = "NOT EXISTS (SELECT 1 FROM users AS u WHERE u.name = {} AND u.deactivated <> 0)"


def get_pepper_state_txn(txn: LoggingTransaction) -> PepperState | None:
    txn.execute(
        "SELECT gen, pepper, rotated_ts, built, next_gen, next_pepper"
        " FROM laiwang_discovery_state WHERE singleton = 1"
    )
    row = txn.fetchone()
    if row is None:
        return None
    gen, pepper, rotated_ts, built, next_gen, next_pepper = row
    return PepperState(
        gen=gen,
        pepper=pepper,
        rotated_ts=rotated_ts,
        built=bool(built),
        next_gen=next_gen,
        next_pepper=next_pepper,
    )


def _remember_contacts(
    txn: LoggingTransaction,
    owner_id: str,
    contacts: Collection[str],
    now: int,
    refresh_after: int,
) -> None:
    if not contacts:
        return
    conflict = (
        " ON CONFLICT (owner_id, contact_id) DO UPDATE SET updated_ts = excluded.updated_ts"
        " WHERE laiwang_address_book.updated_ts < ?"
    )
    if isinstance(txn.database_engine, PostgresEngine):
        # One statement for the whole list (execute_values would send pages of 100).
        txn.execute(
            "INSERT INTO laiwang_address_book (owner_id, contact_id, updated_ts)"
            " SELECT ?, c, ? FROM unnest(?::text[]) AS c" + conflict,
            (owner_id, now, list(contacts), now - refresh_after),
        )
    else:
        txn.execute_batch(
            "INSERT INTO laiwang_address_book (owner_id, contact_id, updated_ts)"
            " VALUES (?, ?, ?)" + conflict,
            [(owner_id, c, now, now - refresh_after) for c in contacts],
        )
