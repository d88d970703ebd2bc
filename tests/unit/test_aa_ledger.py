"""The AA ledger's SQL (storage/aa.py) on SQLite, driven by random event histories.

Whatever happens (requests, payments, closes, redactions, each applied once or twice), every
balance is the sum of the unpaid shares of open requests, the balances sum to zero, and applying
an event again changes nothing.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from functools import partial
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from laiwang_module.storage import aa as ledger
from laiwang_module.storage.schema.migrations import AA
from rooms.aa import AAPayment, AARequest, split_equal

USERS = ["@a:x", "@b:x", "@c:y", "@d:y"]


class Txn:
    """The part of Synapse's LoggingTransaction the ledger uses, over sqlite3."""

    def __init__(self, conn: sqlite3.Connection):
        self.cur = conn.cursor()

    def execute(self, sql: str, args: Any = ()) -> None:
        self.cur.execute(sql, args)

    def execute_batch(self, sql: str, rows: Any) -> None:
        self.cur.executemany(sql, rows)

    def fetchone(self) -> Any:
        return self.cur.fetchone()

    def fetchall(self) -> Any:
        return self.cur.fetchall()

    @property
    def rowcount(self) -> int:
        return self.cur.rowcount


def fresh() -> tuple[sqlite3.Connection, Any]:
    """A database with the ledger's schema; the Txn stands in for Synapse's (typed Any)."""
    conn = sqlite3.connect(":memory:")
    txn: Any = Txn(conn)
    for _, statements in AA.migrations:
        for s in statements:
            txn.execute(s)
    return conn, txn


def snapshot(txn: Txn) -> list[Any]:
    out = []
    for table in ("laiwang_aa_requests", "laiwang_aa_shares", "laiwang_aa_balances",
                  "laiwang_aa_events", "laiwang_aa_receipts"):  # fmt: skip
        txn.execute(f"SELECT * FROM {table} ORDER BY 1, 2")
        out.append(txn.fetchall())
    return out


def check_invariants(txn: Txn) -> None:
    expected: dict[tuple[str, str, str], int] = defaultdict(int)
    txn.execute(
        "SELECT r.payee, s.user_id, r.currency, s.amount FROM laiwang_aa_shares s"
        " JOIN laiwang_aa_requests r ON r.event_id = s.request_event_id"
        " WHERE r.state = 'open' AND s.paid = 0"
    )
    for payee, user, currency, amount in txn.fetchall():
        expected[(payee, user, currency)] += amount
        expected[(user, payee, currency)] -= amount
    txn.execute("SELECT user_id, counterparty, currency, net FROM laiwang_aa_balances")
    actual = {(u, c, cur): n for u, c, cur, n in txn.fetchall() if n}
    assert actual == {k: v for k, v in expected.items() if v}
    assert sum(actual.values()) == 0
    # A request is settled exactly when all its shares are paid.
    txn.execute(
        "SELECT r.state, MIN(s.paid) FROM laiwang_aa_requests r"
        " JOIN laiwang_aa_shares s ON s.request_event_id = r.event_id GROUP BY r.event_id"
    )
    for state, all_paid in txn.fetchall():
        if state in ("open", "settled"):
            assert (state == "settled") == bool(all_paid)


step = st.tuples(
    st.sampled_from(["request", "pay", "pay", "close", "redact"]),
    st.integers(0, 9),  # which request / event
    st.sampled_from(USERS),
    st.integers(1, 4),
    st.booleans(),  # apply twice
)


@settings(max_examples=200, deadline=None)
@given(st.lists(step, max_size=40))
def test_random_histories_keep_the_ledger_consistent(steps):
    _conn, txn = fresh()
    requests: list[tuple[str, AARequest]] = []
    events: list[str] = []
    n = 0
    for kind, pick, user, size, twice in steps:
        n += 1
        event_id = f"$e{n}"
        if kind == "request":
            payee = user
            people = USERS[:size]
            req = AARequest("Dinner", "CNY", 1000 + pick, payee, split_equal(1000 + pick, people))
            apply = partial(ledger.apply_aa_request_txn, txn, event_id, "!r:x", req, n)
            requests.append((event_id, req))
        elif not requests:
            continue
        elif kind == "pay":
            request_id, req = requests[pick % len(requests)]
            payer = user if user in req.shares else req.participants[-1]
            payment = AAPayment(request_id, payer, req.shares[payer], "CNY", "cash")
            apply = partial(
                ledger.apply_aa_payment_txn, txn, event_id, "!r:x", req.payee, payment, n
            )
        elif kind == "close":
            request_id, req = requests[pick % len(requests)]
            apply = partial(ledger.apply_aa_close_txn, txn, event_id, "!r:x", req.payee, request_id)
        else:
            target = events[pick % len(events)] if events else "$none"
            # Any user redacts, in the room or from another one: the invariants hold whether
            # or not the redaction has the authority to void.
            room = "!r:x" if size > 1 else "!other:x"
            apply = partial(ledger.apply_aa_redaction_txn, txn, event_id, target, room, user)
        apply()
        events.append(event_id)
        check_invariants(txn)
        if twice:
            before = snapshot(txn)
            assert apply() is None
            assert snapshot(txn) == before


def applied(change: ledger.LedgerChange | None) -> bool:
    assert change is not None
    return change.applied


def test_receipt_ids_are_single_use():
    _conn, txn = fresh()
    people = ["@a:x", "@b:x", "@c:y"]
    for request_id in ("$r1", "$r2"):
        req = AARequest("Taxi", "JPY", 300, "@a:x", split_equal(300, people))
        ledger.apply_aa_request_txn(txn, request_id, "!r:x", req, 0)
    receipt = {"provider": "testpay", "receipt_id": "once"}
    first = AAPayment("$r1", "@b:x", 100, "JPY", "provider", receipt)
    assert applied(ledger.apply_aa_payment_txn(txn, "$p1", "!r:x", "@b:x", first, 0))
    replay = AAPayment("$r2", "@b:x", 100, "JPY", "provider", receipt)
    assert not applied(ledger.apply_aa_payment_txn(txn, "$p2", "!r:x", "@b:x", replay, 0))
    # The void of a payment does not free its receipt id.
    ledger.apply_aa_redaction_txn(txn, "$x1", "$p1", "!r:x", "@b:x")
    again = AAPayment("$r1", "@b:x", 100, "JPY", "provider", receipt)
    assert not applied(ledger.apply_aa_payment_txn(txn, "$p3", "!r:x", "@b:x", again, 0))
    check_invariants(txn)


def test_redactions_without_authority_change_nothing():
    """A debtor (a moderator, say), a third party, or a redaction in another room: the ledger
    stays as it was, and the payee's own redaction still voids afterwards."""
    _conn, txn = fresh()
    people = ["@a:x", "@b:x", "@c:y"]
    req = AARequest("Rent", "CNY", 300, "@a:x", split_equal(300, people))
    ledger.apply_aa_request_txn(txn, "$r1", "!r:x", req, 0)
    paid = AAPayment("$r1", "@b:x", 100, "CNY", "cash")
    assert applied(ledger.apply_aa_payment_txn(txn, "$p1", "!r:x", "@a:x", paid, 0))
    before = snapshot(txn)
    for n, (target, room, sender) in enumerate(
        [
            ("$r1", "!r:x", "@b:x"),  # a debtor voids the bill
            ("$r1", "!r:x", "@c:y"),
            ("$p1", "!r:x", "@c:y"),  # a third party voids b's payment
            ("$r1", "!other:x", "@a:x"),  # the payee, but from another room
            ("$p1", "!other:x", "@b:x"),
        ]
    ):
        assert ledger.apply_aa_redaction_txn(txn, f"$x{n}", target, room, sender) is None
        assert snapshot(txn) == before
    change = ledger.apply_aa_redaction_txn(txn, "$x9", "$p1", "!r:x", "@b:x")  # the payer may
    assert change is not None and change.applied
    change = ledger.apply_aa_redaction_txn(txn, "$x10", "$r1", "!r:x", "@a:x")  # the payee may
    assert change is not None and change.applied
    check_invariants(txn)


def test_payments_and_closes_count_only_in_their_request_room():
    _conn, txn = fresh()
    req = AARequest("Rent", "CNY", 200, "@a:x", split_equal(200, ["@a:x", "@b:x"]))
    ledger.apply_aa_request_txn(txn, "$r1", "!r:x", req, 0)
    before = snapshot(txn)[:3]
    paid = AAPayment("$r1", "@b:x", 100, "CNY", "cash")
    assert not applied(ledger.apply_aa_payment_txn(txn, "$p1", "!other:x", "@a:x", paid, 0))
    assert not applied(ledger.apply_aa_close_txn(txn, "$c1", "!other:x", "@a:x", "$r1"))
    assert snapshot(txn)[:3] == before
