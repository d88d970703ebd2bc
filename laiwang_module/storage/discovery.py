"""SQL for phone-number discovery: the caller's address book, the pepper, the hash index, the
daily lookup budget, and the msisdn validation sessions of the identity endpoints.

No phone number is stored in the clear by any of these tables (docs/api/discovery.md says what
is stored and for how long). Synapse's own `user_threepids` table is the one source of numbers;
`laiwang_discovery_hashes` is only an index over it, rebuilt whenever the pepper rotates.
"""

from __future__ import annotations

import attr
from synapse.storage.database import LoggingTransaction

from laiwang_module.storage.schema import Schema

SCHEMA = Schema(
    "discovery",
    [
        (
            1,
            [
                # Who has whom in their address book: users found by the owner's lookups.
                # `updated_ts` is the last lookup that matched; entries expire after the
                # configured address_book_ttl (reads filter on it, a job purges).
                "CREATE TABLE IF NOT EXISTS laiwang_address_book ("
                " owner_id TEXT NOT NULL,"
                " contact_id TEXT NOT NULL,"
                " updated_ts BIGINT NOT NULL,"
                " PRIMARY KEY (owner_id, contact_id))",
                "CREATE INDEX IF NOT EXISTS laiwang_address_book_contact"
                " ON laiwang_address_book (contact_id)",
                "CREATE INDEX IF NOT EXISTS laiwang_address_book_ts"
                " ON laiwang_address_book (updated_ts)",
                # One row: the public lookup pepper. `gen` numbers peppers so the hash index
                # need not repeat the pepper on every row. While a rotation builds the index
                # for the next pepper, `next_gen`/`next_pepper` are set.
                "CREATE TABLE IF NOT EXISTS laiwang_discovery_state ("
                " singleton INTEGER NOT NULL PRIMARY KEY,"
                " gen BIGINT NOT NULL,"
                " pepper TEXT NOT NULL,"
                " rotated_ts BIGINT NOT NULL,"
                " built BOOLEAN NOT NULL,"
                " next_gen BIGINT,"
                " next_pepper TEXT)",
                # hash(msisdn, pepper of gen) -> user, for every local user with an msisdn.
                "CREATE TABLE IF NOT EXISTS laiwang_discovery_hashes ("
                " gen BIGINT NOT NULL,"
                " hash TEXT NOT NULL,"
                " user_id TEXT NOT NULL,"
                " PRIMARY KEY (gen, hash))",
                # Addresses looked up per user per UTC day (the enumeration budget).
                "CREATE TABLE IF NOT EXISTS laiwang_discovery_usage ("
                " user_id TEXT NOT NULL,"
                " day BIGINT NOT NULL,"
                " addresses BIGINT NOT NULL,"
                " PRIMARY KEY (user_id, day))",
                # Validation sessions of the msisdn identity endpoints. The number is sealed
                # with a key derived from the client secret; the code is kept as a hash.
                "CREATE TABLE IF NOT EXISTS laiwang_msisdn_sessions ("
                " sid TEXT NOT NULL PRIMARY KEY,"
                " lookup_key TEXT NOT NULL,"
                " sealed_address TEXT NOT NULL,"
                " code_hash TEXT NOT NULL,"
                " send_attempt BIGINT NOT NULL,"
                " failed_attempts INTEGER NOT NULL,"
                " created_ts BIGINT NOT NULL,"
                " expires_ts BIGINT NOT NULL,"
                " validated_ts BIGINT)",
                "CREATE UNIQUE INDEX IF NOT EXISTS laiwang_msisdn_sessions_lookup"
                " ON laiwang_msisdn_sessions (lookup_key)",
                "CREATE INDEX IF NOT EXISTS laiwang_msisdn_sessions_expiry"
                " ON laiwang_msisdn_sessions (expires_ts)",
            ],
        )
    ],
)

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
class MsisdnSession:
    sid: str
    lookup_key: str
    sealed_address: str
    code_hash: str
    send_attempt: int
    failed_attempts: int
    created_ts: int
    expires_ts: int
    validated_ts: int | None


_SESSION_COLUMNS = (
    "sid, lookup_key, sealed_address, code_hash, send_attempt, failed_attempts,"
    " created_ts, expires_ts, validated_ts"
)


class DiscoveryStore:
    """Mixin of LaiwangStore."""

    # Set from the module config at start (callbacks.discovery.register).
    address_book_ttl_ms: int = DEFAULT_ADDRESS_BOOK_TTL_MS

    def configure_discovery(self, address_book_ttl_ms: int) -> None:
        self.address_book_ttl_ms = address_book_ttl_ms

    def _now(self) -> int:
        return int(self._api.get_current_time_msec())  # type: ignore[attr-defined]

    def _book_cutoff(self) -> int:
        return self._now() - self.address_book_ttl_ms

    # --- the address book (the API the contacts feature builds on) ---

    async def is_in_address_book(self, owner_id: str, contact_user_id: str) -> bool:
        """Whether `owner_id` has `contact_user_id`'s number in their (unexpired) book."""
        cutoff = self._book_cutoff()

        def txn_fn(txn: LoggingTransaction) -> bool:
            txn.execute(
                "SELECT 1 FROM laiwang_address_book"
                " WHERE owner_id = ? AND contact_id = ? AND updated_ts >= ?",
                (owner_id, contact_user_id, cutoff),
            )
            return txn.fetchone() is not None

        return await self.run("is_in_address_book", txn_fn)  # type: ignore[attr-defined]

    async def get_address_book_user_ids(self, owner_id: str) -> list[str]:
        """The users whose numbers `owner_id` has in their book (sorted)."""
        cutoff = self._book_cutoff()

        def txn_fn(txn: LoggingTransaction) -> list[str]:
            txn.execute(
                "SELECT contact_id FROM laiwang_address_book"
                " WHERE owner_id = ? AND updated_ts >= ? ORDER BY contact_id",
                (owner_id, cutoff),
            )
            return [row[0] for row in txn.fetchall()]

        return await self.run("get_address_book_user_ids", txn_fn)  # type: ignore[attr-defined]

    async def get_address_book_owners_of(self, contact_user_id: str) -> list[str]:
        """The users who have `contact_user_id`'s number in their book (sorted)."""
        cutoff = self._book_cutoff()

        def txn_fn(txn: LoggingTransaction) -> list[str]:
            txn.execute(
                "SELECT owner_id FROM laiwang_address_book"
                " WHERE contact_id = ? AND updated_ts >= ? ORDER BY owner_id",
                (contact_user_id, cutoff),
            )
            return [row[0] for row in txn.fetchall()]

        return await self.run("get_address_book_owners_of", txn_fn)  # type: ignore[attr-defined]

    async def purge_expired_address_book(self) -> int:
        cutoff = self._book_cutoff()

        def txn_fn(txn: LoggingTransaction) -> int:
            txn.execute("DELETE FROM laiwang_address_book WHERE updated_ts < ?", (cutoff,))
            return int(txn.rowcount)

        return await self.run("purge_expired_address_book", txn_fn)  # type: ignore[attr-defined]
