"""SQL for binding a phone number: the validation sessions of the msisdn identity endpoints
(Synapse's `account_threepid_delegates.msisdn`) and the daily count of SMS sent per number.

A session's number is sealed with a key derived from the client secret and its code is kept as a
hash; the SMS counters are keyed by an HMAC of the number (rooms.msisdn.sms_number_key), by
"country:<calling code>" and by "total".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attr
from synapse.storage.database import LoggingTransaction

from laiwang_module.storage.base import StoreMixin, fetch_value


@attr.s(frozen=True, slots=True, auto_attribs=True)
class MsisdnSession:
    sid: str
    lookup_key: str
    sealed_address: str
    code_hash: str
    send_attempt: int
    attempts: int  # codes submitted so far
    created_ts: int
    expires_ts: int
    validated_ts: int | None


_SESSION_COLUMNS = (
    "sid, lookup_key, sealed_address, code_hash, send_attempt, attempts,"
    " created_ts, expires_ts, validated_ts"
)


def _msisdn_session(row: tuple[Any, ...]) -> MsisdnSession:
    """A row of `SELECT {_SESSION_COLUMNS}`."""
    (
        sid,
        lookup_key,
        sealed_address,
        code_hash,
        send_attempt,
        attempts,
        created_ts,
        expires_ts,
        validated_ts,
    ) = row
    return MsisdnSession(
        sid=sid,
        lookup_key=lookup_key,
        sealed_address=sealed_address,
        code_hash=code_hash,
        send_attempt=send_attempt,
        attempts=attempts,
        created_ts=created_ts,
        expires_ts=expires_ts,
        validated_ts=validated_ts,
    )


class MsisdnStore(StoreMixin):
    """Mixin of LaiwangStore."""

    async def get_msisdn_session(
        self, *, sid: str | None = None, lookup_key: str | None = None
    ) -> MsisdnSession | None:
        column, value = ("sid", sid) if sid is not None else ("lookup_key", lookup_key)

        def get_msisdn_session_txn(txn: LoggingTransaction) -> MsisdnSession | None:
            txn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM laiwang_msisdn_sessions WHERE {column} = ?",
                (value,),
            )
            row = txn.fetchone()
            return _msisdn_session(row) if row else None

        return await self.run("get_msisdn_session", get_msisdn_session_txn)

    async def insert_msisdn_session(self, session: MsisdnSession) -> None:
        """Store a new session, replacing an expired one of the same client and number."""

        def insert_msisdn_session_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "DELETE FROM laiwang_msisdn_sessions WHERE lookup_key = ?", (session.lookup_key,)
            )
            txn.execute(
                f"INSERT INTO laiwang_msisdn_sessions ({_SESSION_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                attr.astuple(session),
            )

        await self.run("insert_msisdn_session", insert_msisdn_session_txn)

    async def resend_msisdn_session(
        self, sid: str, send_attempt: int, code_hash: str, expires_ts: int
    ) -> None:
        def resend_msisdn_session_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "UPDATE laiwang_msisdn_sessions SET send_attempt = ?, code_hash = ?,"
                " expires_ts = ? WHERE sid = ? AND validated_ts IS NULL",
                (send_attempt, code_hash, expires_ts, sid),
            )

        await self.run("resend_msisdn_session", resend_msisdn_session_txn)

    async def claim_code_attempt(self, sid: str, max_attempts: int) -> bool:
        """Count one code submission; False when the session has no attempts left. Counting
        before checking the code means concurrent guesses cannot exceed the limit."""

        def claim_code_attempt_txn(txn: LoggingTransaction) -> bool:
            txn.execute(
                "UPDATE laiwang_msisdn_sessions SET attempts = attempts + 1"
                " WHERE sid = ? AND attempts < ?",
                (sid, max_attempts),
            )
            return bool(txn.rowcount == 1)

        return await self.run("claim_code_attempt", claim_code_attempt_txn)

    async def mark_msisdn_session_validated(self, sid: str, expires_ts: int) -> None:
        now = self._now()

        def mark_msisdn_session_validated_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "UPDATE laiwang_msisdn_sessions SET validated_ts = ?, expires_ts = ?"
                " WHERE sid = ? AND validated_ts IS NULL",
                (now, expires_ts, sid),
            )

        await self.run("mark_msisdn_session_validated", mark_msisdn_session_validated_txn)

    async def count_sms_send(self, caps: Sequence[tuple[str, int]], day: int) -> str | None:
        """Count one SMS today against every `(key, cap)`; when one is reached, count nothing
        and return its key. One transaction, so workers cannot overshoot together."""

        def count_sms_send_txn(txn: LoggingTransaction) -> str | None:
            counts = []
            for key, cap in caps:
                txn.execute(
                    "SELECT sends FROM laiwang_sms_sends WHERE number_key = ? AND day = ?",
                    (key, day),
                )
                sent = int(fetch_value(txn) or 0)
                if sent >= cap:
                    return key
                counts.append((key, sent + 1))
            for key, sends in counts:
                txn.execute(
                    "INSERT INTO laiwang_sms_sends (number_key, day, sends) VALUES (?, ?, ?)"
                    " ON CONFLICT (number_key, day) DO UPDATE SET sends = excluded.sends",
                    (key, day, sends),
                )
            return None

        return await self.run("count_sms_send", count_sms_send_txn)

    async def purge_old_sms_sends(self, before_day: int) -> None:
        def purge_old_sms_sends_txn(txn: LoggingTransaction) -> None:
            txn.execute("DELETE FROM laiwang_sms_sends WHERE day < ?", (before_day,))

        await self.run("purge_old_sms_sends", purge_old_sms_sends_txn)

    async def purge_expired_msisdn_sessions(self) -> None:
        now = self._now()

        def purge_expired_msisdn_sessions_txn(txn: LoggingTransaction) -> None:
            txn.execute("DELETE FROM laiwang_msisdn_sessions WHERE expires_ts < ?", (now,))

        await self.run("purge_expired_msisdn_sessions", purge_expired_msisdn_sessions_txn)
