"""SQL of the AA ledger: requests, shares, payments, used receipts, reminders and balances.

The ledger is derived from room events (see callbacks/aa.py): every change is keyed by the event
that causes it (`laiwang_aa_events`, `laiwang_aa_redactions`), so applying the same event twice,
on two workers or after a restart, changes nothing. Balances are kept incrementally per user,
counterparty and currency in the same transaction as the share they come from, so that
`GET /aa/balances` is one indexed read however many bills a user has.
"""

from __future__ import annotations

from typing import Any

import attr
from synapse.storage.database import LoggingTransaction

from laiwang_module.storage.base import StoreMixin, fetch_value
from rooms.aa import (
    CLOSED,
    OPEN,
    SETTLED,
    VOID,
    AAPayment,
    AARequest,
    RequestView,
    redaction_voids,
)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class LedgerChange:
    """What applying an event did: the request whose status changed, for cache invalidation
    and for the redaction notice."""

    request_event_id: str
    kind: str
    applied: bool
    detail: dict[str, Any] = attr.Factory(dict)


def _add_debt(
    txn: LoggingTransaction, creditor: str, debtor: str, currency: str, amount: int
) -> None:
    """`debtor` owes `creditor` `amount` more (negative: less), seen from both sides."""
    for user_id, counterparty, net in ((creditor, debtor, amount), (debtor, creditor, -amount)):
        txn.execute(
            "INSERT INTO laiwang_aa_balances (user_id, counterparty, currency, net)"
            " VALUES (?, ?, ?, ?)"
            " ON CONFLICT (user_id, counterparty, currency)"
            " DO UPDATE SET net = laiwang_aa_balances.net + excluded.net",
            (user_id, counterparty, currency, net),
        )


def _claim_event(txn: LoggingTransaction, event_id: str, kind: str, request_event_id: str) -> bool:
    txn.execute(
        "INSERT INTO laiwang_aa_events (event_id, kind, request_event_id, outcome)"
        " VALUES (?, ?, ?, 'applied') ON CONFLICT (event_id) DO NOTHING",
        (event_id, kind, request_event_id),
    )
    return txn.rowcount == 1


def _ignore(txn: LoggingTransaction, event_id: str, reason: str) -> None:
    txn.execute(
        "UPDATE laiwang_aa_events SET outcome = 'ignored', reason = ? WHERE event_id = ?",
        (reason, event_id),
    )


@attr.s(frozen=True, slots=True, auto_attribs=True)
class _RequestRow:
    room_id: str
    payee: str
    title: str
    currency: str
    total: int
    state: str


def _request_row(txn: LoggingTransaction, event_id: str) -> _RequestRow | None:
    txn.execute(
        "SELECT room_id, payee, title, currency, total, state FROM laiwang_aa_requests"
        " WHERE event_id = ?",
        (event_id,),
    )
    row = txn.fetchone()
    if row is None:
        return None
    room_id, payee, title, currency, total, state = row
    return _RequestRow(
        room_id=room_id,
        payee=payee,
        title=title,
        currency=currency,
        total=int(total),
        state=state,
    )


def _unpaid(txn: LoggingTransaction, request_event_id: str) -> list[tuple[str, int]]:
    txn.execute(
        "SELECT user_id, amount FROM laiwang_aa_shares"
        " WHERE request_event_id = ? AND paid = ? ORDER BY position",
        (request_event_id, False),
    )
    return [(user_id, int(amount)) for user_id, amount in txn.fetchall()]


def _set_debts(txn: LoggingTransaction, request_event_id: str, sign: int) -> None:
    """Add (+1) or remove (-1) the debts of every unpaid share of a request."""
    request = _request_row(txn, request_event_id)
    assert request is not None
    for user_id, amount in _unpaid(txn, request_event_id):
        _add_debt(txn, request.payee, user_id, request.currency, sign * amount)


def apply_aa_request_txn(
    txn: LoggingTransaction, event_id: str, room_id: str, req: AARequest, ts: int
) -> LedgerChange | None:
    if not _claim_event(txn, event_id, "request", event_id):
        return None
    unpaid = [p for p in req.participants if p != req.payee]
    txn.execute(
        "INSERT INTO laiwang_aa_requests"
        " (event_id, room_id, payee, title, currency, total, state, ts)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (event_id, room_id, req.payee, req.title, req.currency, req.total,
         OPEN if unpaid else SETTLED, ts),
    )  # fmt: skip
    txn.execute_batch(
        "INSERT INTO laiwang_aa_shares"
        " (request_event_id, user_id, position, amount, paid) VALUES (?, ?, ?, ?, ?)",
        [
            (event_id, user_id, i, amount, user_id == req.payee)
            for i, (user_id, amount) in enumerate(req.shares.items())
        ],
    )
    for user_id in unpaid:
        _add_debt(txn, req.payee, user_id, req.currency, req.shares[user_id])
    return LedgerChange(event_id, "request", True)


def apply_aa_payment_txn(
    txn: LoggingTransaction,
    event_id: str,
    room_id: str,
    sender: str,
    payment: AAPayment,
    ts: int,
    refusal: str | None = None,
) -> LedgerChange | None:
    """Record a payment; it settles the payer's share only if that share is still unpaid in an
    open request of the payment's room and its receipt id is new. Otherwise it is kept as
    "ignored" with the reason (a payment that lost a race with another, on this server), as it
    is when the caller found it breaks a rule (`refusal`)."""
    request_id = payment.request_event_id
    if not _claim_event(txn, event_id, "payment", request_id):
        return None
    receipt = payment.receipt_key
    provider, receipt_id = receipt if receipt is not None else (None, None)
    txn.execute(
        "INSERT INTO laiwang_aa_payments (event_id, request_event_id, payer, sender, amount,"
        " currency, method, provider, receipt_id, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (event_id, request_id, payment.payer, sender, payment.amount, payment.currency,
         payment.method, provider, receipt_id, ts),
    )  # fmt: skip
    if refusal is not None:
        _ignore(txn, event_id, refusal)
        return LedgerChange(request_id, "payment", False)
    request = _request_row(txn, request_id)
    if request is None or request.room_id != room_id:
        _ignore(txn, event_id, "unknown request in this room")
        return LedgerChange(request_id, "payment", False)
    if request.state != OPEN:
        _ignore(txn, event_id, "request is not open")
        return LedgerChange(request_id, "payment", False)
    payee, currency = request.payee, request.currency
    txn.execute(
        "SELECT amount, paid FROM laiwang_aa_shares WHERE request_event_id = ? AND user_id = ?",
        (request_id, payment.payer),
    )
    share = txn.fetchone()
    matches = False
    if share is not None:
        share_amount, share_paid = share
        matches = not share_paid and share_amount == payment.amount and currency == payment.currency
    if not matches:
        _ignore(txn, event_id, "no matching unpaid share")
        return LedgerChange(request_id, "payment", False)
    if receipt is not None:
        txn.execute(
            "INSERT INTO laiwang_aa_receipts (provider, receipt_id, payment_event_id)"
            " VALUES (?, ?, ?) ON CONFLICT (provider, receipt_id) DO NOTHING",
            (provider, receipt_id, event_id),
        )
        if txn.rowcount != 1:
            _ignore(txn, event_id, "receipt id already used")
            return LedgerChange(request_id, "payment", False)
    txn.execute(
        "UPDATE laiwang_aa_shares SET paid = ?, payment_event_id = ?"
        " WHERE request_event_id = ? AND user_id = ? AND paid = ?",
        (True, event_id, request_id, payment.payer, False),
    )
    _add_debt(txn, payee, payment.payer, currency, -payment.amount)
    if not _unpaid(txn, request_id):
        txn.execute(
            "UPDATE laiwang_aa_requests SET state = ? WHERE event_id = ?", (SETTLED, request_id)
        )
    return LedgerChange(request_id, "payment", True)


def apply_aa_close_txn(
    txn: LoggingTransaction, event_id: str, room_id: str, sender: str, request_id: str
) -> LedgerChange | None:
    """Close an open request: the unpaid shares are no longer owed (as WeChat's "stop
    collecting": only the unpaid stop)."""
    if not _claim_event(txn, event_id, "close", request_id):
        return None
    request = _request_row(txn, request_id)
    if (
        request is None
        or request.room_id != room_id
        or request.state != OPEN
        or request.payee != sender
    ):
        _ignore(txn, event_id, "request is not open in this room, or sender is not the payee")
        return LedgerChange(request_id, "close", False)
    _set_debts(txn, request_id, -1)
    txn.execute(
        "UPDATE laiwang_aa_requests SET state = ?, close_event_id = ? WHERE event_id = ?",
        (CLOSED, event_id, request_id),
    )
    return LedgerChange(request_id, "close", True)


def apply_aa_redaction_txn(
    txn: LoggingTransaction,
    redaction_event_id: str,
    redacted_event_id: str,
    room_id: str,
    sender: str,
) -> LedgerChange | None:
    """Undo what a redacted AA event did (docs/api/aa.md, "Redactions"), if the redaction may
    (`rooms.aa.redaction_voids`: its room and sender are checked here, not left to Synapse;
    a redaction without that authority changes nothing and is not recorded, so the rightful
    party can still redact later):
    - a request becomes void: its unpaid shares are no longer owed;
    - a payment is void: its share is unpaid (and owed) again and a settled request reopens;
      its receipt id stays used;
    - a close is undone: the request is open again (or settled) and unpaid shares are owed."""
    txn.execute(
        "SELECT kind, request_event_id, outcome FROM laiwang_aa_events WHERE event_id = ?",
        (redacted_event_id,),
    )
    seen = txn.fetchone()
    if seen is None:
        return None
    kind, request_id, outcome = seen
    request = _request_row(txn, request_id)
    if request is None:
        return None
    payer = None
    if kind == "payment":
        txn.execute(
            "SELECT payer FROM laiwang_aa_payments WHERE event_id = ?", (redacted_event_id,)
        )
        payer = fetch_value(txn)
    if not redaction_voids(kind, room_id, request.room_id, sender, request.payee, payer):
        return None
    txn.execute(
        "INSERT INTO laiwang_aa_redactions (redaction_event_id, redacted_event_id, kind,"
        " request_event_id, notice_claimed) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (redaction_event_id) DO NOTHING",
        (redaction_event_id, redacted_event_id, kind, request_id, False),
    )
    if txn.rowcount != 1 or outcome != "applied":
        return None
    txn.execute(
        "UPDATE laiwang_aa_events SET outcome = 'void', reason = ? WHERE event_id = ?",
        (f"redacted by {redaction_event_id}", redacted_event_id),
    )
    state = request.state
    detail: dict[str, Any] = {"previous_state": state}
    if kind == "request":
        if state == OPEN:
            _set_debts(txn, request_id, -1)
        txn.execute(
            "UPDATE laiwang_aa_requests SET state = ?, redaction_event_id = ? WHERE event_id = ?",
            (VOID, redaction_event_id, request_id),
        )
    elif kind == "payment":
        txn.execute(
            "SELECT payer, amount FROM laiwang_aa_payments WHERE event_id = ?",
            (redacted_event_id,),
        )
        paid_by = txn.fetchone()
        assert paid_by is not None  # written with the event row above
        payer, amount = paid_by
        detail.update(payer=payer, amount=int(amount))
        txn.execute(
            "UPDATE laiwang_aa_shares SET paid = ?, payment_event_id = NULL"
            " WHERE request_event_id = ? AND payment_event_id = ?",
            (False, request_id, redacted_event_id),
        )
        if state in (OPEN, SETTLED):
            _add_debt(txn, request.payee, payer, request.currency, amount)
            txn.execute(
                "UPDATE laiwang_aa_requests SET state = ? WHERE event_id = ?", (OPEN, request_id)
            )
    elif kind == "close" and state == CLOSED:
        unpaid = _unpaid(txn, request_id)
        txn.execute(
            "UPDATE laiwang_aa_requests SET state = ?, close_event_id = NULL WHERE event_id = ?",
            (OPEN if unpaid else SETTLED, request_id),
        )
        _set_debts(txn, request_id, +1)
    return LedgerChange(request_id, kind, True, detail)


def forget_aa_room_txn(txn: LoggingTransaction, room_id: str) -> list[str]:
    """Remove a room's ledger (and its share of everyone's balances) before a rebuild.
    Returns the request ids that were there, so their cached status can be dropped."""
    txn.execute("SELECT event_id, state FROM laiwang_aa_requests WHERE room_id = ?", (room_id,))
    requests = txn.fetchall()
    ids = [request_id for request_id, _ in requests]
    for request_id, state in requests:
        if state == OPEN:
            _set_debts(txn, request_id, -1)
    for request_id in ids:
        txn.execute(
            "DELETE FROM laiwang_aa_receipts WHERE payment_event_id IN"
            " (SELECT event_id FROM laiwang_aa_payments WHERE request_event_id = ?)",
            (request_id,),
        )
        for table, column in (
            ("laiwang_aa_payments", "request_event_id"),
            ("laiwang_aa_shares", "request_event_id"),
            ("laiwang_aa_events", "request_event_id"),
            ("laiwang_aa_redactions", "request_event_id"),
            ("laiwang_aa_requests", "event_id"),
        ):
            # Table and column names come from this fixed tuple, never from input.
            txn.execute(f"DELETE FROM {table} WHERE {column} = ?", (request_id,))
    return ids


def get_room_event_ids_txn(txn: LoggingTransaction, room_id: str) -> list[str]:
    """The room's messages and redactions in this server's order, read from Synapse's own
    `events` table (the module API has no way to page through a room's history)."""
    txn.execute(
        "SELECT event_id FROM events WHERE room_id = ? AND outlier = ?"
        " AND type IN ('m.room.message', 'm.room.redaction') ORDER BY stream_ordering",
        (room_id, False),
    )
    return [event_id for (event_id,) in txn.fetchall()]


class AAStore(StoreMixin):
    """Mixin of LaiwangStore."""

    async def apply_aa_request(
        self, event_id: str, room_id: str, req: AARequest, ts: int
    ) -> LedgerChange | None:
        return await self.run("apply_aa_request", apply_aa_request_txn, event_id, room_id, req, ts)

    async def apply_aa_payment(
        self,
        event_id: str,
        room_id: str,
        sender: str,
        payment: AAPayment,
        ts: int,
        refusal: str | None = None,
    ) -> LedgerChange | None:
        return await self.run(
            "apply_aa_payment", apply_aa_payment_txn, event_id, room_id, sender, payment, ts,
            refusal,
        )  # fmt: skip

    async def apply_aa_close(
        self, event_id: str, room_id: str, sender: str, request_id: str
    ) -> LedgerChange | None:
        return await self.run(
            "apply_aa_close", apply_aa_close_txn, event_id, room_id, sender, request_id
        )

    async def apply_aa_redaction(
        self, redaction_event_id: str, redacted_event_id: str, room_id: str, sender: str
    ) -> LedgerChange | None:
        return await self.run(
            "apply_aa_redaction", apply_aa_redaction_txn, redaction_event_id, redacted_event_id,
            room_id, sender,
        )  # fmt: skip

    async def get_aa_request(self, event_id: str) -> RequestView | None:
        def get_aa_request_txn(txn: LoggingTransaction) -> RequestView | None:
            request = _request_row(txn, event_id)
            if request is None:
                return None
            txn.execute(
                "SELECT user_id, amount, paid FROM laiwang_aa_shares"
                " WHERE request_event_id = ? ORDER BY position",
                (event_id,),
            )
            shares = txn.fetchall()
            return RequestView(
                event_id=event_id,
                room_id=request.room_id,
                payee=request.payee,
                title=request.title,
                currency=request.currency,
                total=request.total,
                state=request.state,
                shares={user_id: int(amount) for user_id, amount, _ in shares},
                paid={user_id for user_id, _, paid in shares if paid},
            )

        return await self.run("get_aa_request", get_aa_request_txn)

    async def get_aa_share_payments(self, request_id: str) -> dict[str, str | None]:
        """Each participant's payment event id (None: unpaid, or the payee's own share)."""

        def get_aa_share_payments_txn(txn: LoggingTransaction) -> dict[str, str | None]:
            txn.execute(
                "SELECT user_id, payment_event_id FROM laiwang_aa_shares"
                " WHERE request_event_id = ?",
                (request_id,),
            )
            return {user_id: payment_id for user_id, payment_id in txn.fetchall()}

        return await self.run("get_aa_share_payments", get_aa_share_payments_txn)

    async def get_aa_status(self, event_id: str) -> tuple[str, int, list[str]] | None:
        """(state, number of paid participants, unpaid user ids in order) of a request."""

        def get_aa_status_txn(txn: LoggingTransaction) -> tuple[str, int, list[str]] | None:
            txn.execute("SELECT state FROM laiwang_aa_requests WHERE event_id = ?", (event_id,))
            state = fetch_value(txn)
            if state is None:
                return None
            txn.execute(
                "SELECT user_id, paid FROM laiwang_aa_shares"
                " WHERE request_event_id = ? ORDER BY position",
                (event_id,),
            )
            shares = txn.fetchall()
            unpaid = [user_id for user_id, paid in shares if not paid]
            return state, len(shares) - len(unpaid), unpaid

        return await self.run("get_aa_status", get_aa_status_txn)

    async def is_aa_event(self, event_id: str) -> bool:
        def is_aa_event_txn(txn: LoggingTransaction) -> bool:
            txn.execute("SELECT 1 FROM laiwang_aa_events WHERE event_id = ?", (event_id,))
            return txn.fetchone() is not None

        return await self.run("is_aa_event", is_aa_event_txn)

    async def is_receipt_used(self, provider: str, receipt_id: str) -> bool:
        def is_receipt_used_txn(txn: LoggingTransaction) -> bool:
            txn.execute(
                "SELECT 1 FROM laiwang_aa_receipts WHERE provider = ? AND receipt_id = ?",
                (provider, receipt_id),
            )
            return txn.fetchone() is not None

        return await self.run("is_receipt_used", is_receipt_used_txn)

    async def get_payment(self, event_id: str) -> dict[str, Any] | None:
        def get_payment_txn(txn: LoggingTransaction) -> dict[str, Any] | None:
            txn.execute(
                "SELECT payer, amount, currency, method FROM laiwang_aa_payments"
                " WHERE event_id = ?",
                (event_id,),
            )
            row = txn.fetchone()
            if row is None:
                return None
            payer, amount, currency, method = row
            return {
                "event_id": event_id,
                "payer": payer,
                "amount": int(amount),
                "currency": currency,
                "method": method,
            }

        return await self.run("get_payment", get_payment_txn)

    async def get_aa_close_event(self, request_id: str) -> str | None:
        def get_aa_close_event_txn(txn: LoggingTransaction) -> str | None:
            txn.execute(
                "SELECT close_event_id FROM laiwang_aa_requests WHERE event_id = ?", (request_id,)
            )
            return fetch_value(txn)

        return await self.run("get_aa_close_event", get_aa_close_event_txn)

    async def get_balances(self, user_id: str) -> list[dict[str, Any]]:
        def get_balances_txn(txn: LoggingTransaction) -> list[dict[str, Any]]:
            txn.execute(
                "SELECT counterparty, currency, net FROM laiwang_aa_balances"
                " WHERE user_id = ? AND net <> 0 ORDER BY counterparty, currency",
                (user_id,),
            )
            return [
                {"user_id": counterparty, "currency": currency, "net": int(net)}
                for counterparty, currency, net in txn.fetchall()
            ]

        return await self.run("get_balances", get_balances_txn)

    async def claim_reminder(self, request_id: str, now: int, interval_ms: int) -> int:
        """Take the request's reminder slot: 0 when taken, else the ms until it frees up.
        Atomic, so that two workers cannot both remind within the interval."""

        def claim_reminder_txn(txn: LoggingTransaction) -> int:
            txn.execute(
                "INSERT INTO laiwang_aa_reminders (request_event_id, last_ts) VALUES (?, ?)"
                " ON CONFLICT (request_event_id) DO NOTHING",
                (request_id, now),
            )
            if txn.rowcount == 1:
                return 0
            txn.execute(
                "UPDATE laiwang_aa_reminders SET last_ts = ?"
                " WHERE request_event_id = ? AND last_ts <= ?",
                (now, request_id, now - interval_ms),
            )
            if txn.rowcount == 1:
                return 0
            txn.execute(
                "SELECT last_ts FROM laiwang_aa_reminders WHERE request_event_id = ?",
                (request_id,),
            )
            last_ts = fetch_value(txn)
            return max(1, int(last_ts) + interval_ms - now) if last_ts is not None else 1

        return await self.run("claim_reminder", claim_reminder_txn)

    async def release_reminder(self, request_id: str, ts: int) -> None:
        """Give the slot back when the reminder could not be sent."""

        def release_reminder_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "DELETE FROM laiwang_aa_reminders WHERE request_event_id = ? AND last_ts = ?",
                (request_id, ts),
            )

        await self.run("release_reminder", release_reminder_txn)

    async def claim_redaction_notice(self, redaction_event_id: str) -> bool:
        """True once per redaction: the one process that wins sends the notice."""

        def claim_redaction_notice_txn(txn: LoggingTransaction) -> bool:
            txn.execute(
                "UPDATE laiwang_aa_redactions SET notice_claimed = ?"
                " WHERE redaction_event_id = ? AND notice_claimed = ?",
                (True, redaction_event_id, False),
            )
            return txn.rowcount == 1

        return await self.run("claim_redaction_notice", claim_redaction_notice_txn)

    async def forget_aa_room(self, room_id: str) -> list[str]:
        return await self.run("forget_aa_room", forget_aa_room_txn, room_id)

    async def get_room_event_ids(self, room_id: str) -> list[str]:
        return await self.run("get_room_event_ids", get_room_event_ids_txn, room_id)

    async def get_aa_room_ids(self) -> list[str]:
        """Every room with an AA request in the ledger."""

        def get_aa_room_ids_txn(txn: LoggingTransaction) -> list[str]:
            txn.execute("SELECT DISTINCT room_id FROM laiwang_aa_requests ORDER BY room_id")
            return [room_id for (room_id,) in txn.fetchall()]

        return await self.run("get_aa_room_ids", get_aa_room_ids_txn)

    async def get_applied_aa_events(self, event_ids: list[str]) -> set[str]:
        """Those of `event_ids` the ledger has applied already: AA events and redactions."""

        def get_applied_aa_events_txn(txn: LoggingTransaction) -> set[str]:
            out: set[str] = set()
            for i in range(0, len(event_ids), 500):
                chunk = event_ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                txn.execute(
                    f"SELECT event_id FROM laiwang_aa_events WHERE event_id IN ({marks}) UNION"
                    " SELECT redaction_event_id FROM laiwang_aa_redactions"
                    f" WHERE redaction_event_id IN ({marks})",
                    (*chunk, *chunk),
                )
                out.update(event_id for (event_id,) in txn.fetchall())
            return out

        return await self.run("get_applied_aa_events", get_applied_aa_events_txn)

    async def get_aa_request_ids(self, room_id: str) -> list[str]:
        def get_aa_request_ids_txn(txn: LoggingTransaction) -> list[str]:
            txn.execute("SELECT event_id FROM laiwang_aa_requests WHERE room_id = ?", (room_id,))
            return [event_id for (event_id,) in txn.fetchall()]

        return await self.run("get_aa_request_ids", get_aa_request_ids_txn)

    async def claim_payment(self, request_id: str, payer: str, now: int, stale_ms: int) -> bool:
        """Take the share's in-flight slot; False while another `pay` for it is under way
        (a claim older than `stale_ms` is taken over: its caller died)."""

        def claim_payment_txn(txn: LoggingTransaction) -> bool:
            txn.execute(
                "INSERT INTO laiwang_aa_pay_claims (request_event_id, payer, claimed_ts)"
                " VALUES (?, ?, ?) ON CONFLICT (request_event_id, payer) DO UPDATE"
                " SET claimed_ts = excluded.claimed_ts"
                " WHERE laiwang_aa_pay_claims.claimed_ts < ?",
                (request_id, payer, now, now - stale_ms),
            )
            return txn.rowcount == 1

        return await self.run("claim_payment", claim_payment_txn)

    async def release_payment(self, request_id: str, payer: str) -> None:
        def release_payment_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "DELETE FROM laiwang_aa_pay_claims WHERE request_event_id = ? AND payer = ?",
                (request_id, payer),
            )

        await self.run("release_payment", release_payment_txn)
