"""AA across two homeservers: the payer on hs2, the payee on hs1. Every server enforces the
rules on the events it receives: a payment only the payer's server can verify is soft-failed by
the payee's server."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import pytest

from tests.e2e.test_aa import AA, ask, expect_error, ledger, path, receipt, stays
from tests.harness.client import MatrixClient, MatrixError, wait_until

pytestmark = pytest.mark.federation


def cross_room(hs1: Any, hs2: Any) -> tuple[str, MatrixClient, MatrixClient, MatrixClient]:
    """A public room on hs1 with alice (hs1, the payee) and bob and carol (hs2) joined by /join."""
    alice, bob, carol = hs1.new_user("alice"), hs2.new_user("bob"), hs2.new_user("carol")
    room = alice.create_room(preset="public_chat")
    for u in (bob, carol):
        u.join(room, via=[hs1.server_name])
    wait_until(lambda: alice.joined_members(room) == {alice.user_id, bob.user_id, carol.user_id},
               timeout=60)  # fmt: skip
    return room, alice, bob, carol


def details_on(client: MatrixClient, room: str, event_id: str) -> dict[str, Any] | None:
    try:
        return client.laiwang("GET", path(room, event_id))
    except MatrixError as e:
        if e.status == 404:
            return None
        raise


def seen_by(client: MatrixClient, room: str, text: str) -> bool:
    return text in [e.get("content", {}).get("body") for e in client.messages(room, limit=100)]


def test_remote_payer_settles_on_both_servers_and_untrusted_receipt_is_refused(
    hs1, hs2, payment_keys
):
    room, alice, bob, carol = cross_room(hs1, hs2)
    request_id = ask(alice, room, [alice.user_id, bob.user_id, carol.user_id], total=3000)[
        "event_id"
    ]
    # The request reached hs2's ledger: the remote participants see the bill and what they owe.
    remote = wait_until(lambda: details_on(bob, room, request_id), timeout=60)
    assert remote["state"] == "open" and remote["payee"] == alice.user_id
    assert bob.laiwang("GET", "/aa/balances")["balances"] == [
        {"user_id": alice.user_id, "currency": "CNY", "net": -1000}
    ]
    assert bob.event(room, request_id)["unsigned"]["org.laiwang.aa.status"]["unpaid"] == [
        bob.user_id,
        carol.user_id,
    ]

    # Bob pays through his own server with a receipt of a provider both servers trust.
    good = receipt(payment_keys, request_id, room, bob.user_id, alice.user_id, 1000)
    paid = bob.laiwang(
        "POST", path(room, request_id, "pay"), {"method": "provider", "receipt": good}
    )

    def bob_paid_on_hs1() -> bool:
        d = details_on(alice, room, request_id)
        return bool(d and d["shares"][bob.user_id]["payment_event_id"] == paid["event_id"])

    wait_until(bob_paid_on_hs1, timeout=60)
    assert alice.laiwang("GET", "/aa/balances")["balances"] == [
        {"user_id": carol.user_id, "currency": "CNY", "net": 1000}
    ]

    # Carol pays with a receipt of "hs2pay", which only hs2 trusts: hs2 accepts it ...
    untrusted = receipt(payment_keys, request_id, room, carol.user_id, alice.user_id, 1000,
                        provider="hs2pay")  # fmt: skip
    carol_paid = carol.laiwang(
        "POST", path(room, request_id, "pay"), {"method": "provider", "receipt": untrusted}
    )
    assert details_on(carol, room, request_id)["state"] == "settled"  # type: ignore[index]
    # ... and hs1, the payee's server, refuses it (soft-fails it): a later message from carol
    # arrives, the payment never shows and the share stays unpaid.
    carol.send_text(room, "did my payment arrive?")
    wait_until(lambda: seen_by(alice, room, "did my payment arrive?"), timeout=60)
    on_hs1 = details_on(alice, room, request_id)
    assert on_hs1 is not None and on_hs1["state"] == "open"
    assert on_hs1["shares"][carol.user_id]["paid"] is False
    assert carol_paid["event_id"] not in [e["event_id"] for e in alice.messages(room, limit=100)]
    status = alice.event(room, request_id)["unsigned"]["org.laiwang.aa.status"]
    assert status == {"state": "open", "paid_count": 2, "unpaid": [carol.user_id]}

    # Carol pays again through a provider hs1 trusts: hs2 refuses it as a second payment
    # (its ledger says settled) — each server holds to what it could verify.
    again = receipt(payment_keys, request_id, room, carol.user_id, alice.user_id, 1000)
    assert carol.laiwang("POST", path(room, request_id, "pay"),
                         {"method": "provider", "receipt": again}) == carol_paid  # fmt: skip


def test_remote_payee_close_and_rules_hold_over_federation(hs1, hs2, payment_keys):
    room, alice, bob, carol = cross_room(hs1, hs2)
    # Bob (hs2) asks; alice (hs1) is a participant.
    request_id = ask(bob, room, [alice.user_id, bob.user_id], total=500, currency="JPY")["event_id"]
    wait_until(lambda: details_on(alice, room, request_id), timeout=60)
    assert alice.laiwang("GET", "/aa/balances")["balances"] == [
        {"user_id": bob.user_id, "currency": "JPY", "net": -250}
    ]
    # Only the payee may close, on either server.
    expect_error(lambda: alice.laiwang("POST", path(room, request_id, "close")), 403, "M_FORBIDDEN")
    bob.laiwang("POST", path(room, request_id, "close"))
    wait_until(lambda: (details_on(alice, room, request_id) or {}).get("state") == "closed",
               timeout=60)  # fmt: skip
    assert alice.laiwang("GET", "/aa/balances") == {"balances": []}
    # No payment after the close, on the payer's server either.
    r = receipt(payment_keys, request_id, room, alice.user_id, bob.user_id, 250, currency="JPY")
    expect_error(lambda: alice.laiwang("POST", path(room, request_id, "pay"),
                                       {"method": "provider", "receipt": r}),
                 400, "M_INVALID_PARAM")  # fmt: skip
    raw = {
        "msgtype": AA + "payment",
        "body": "paid",
        "m.relates_to": {"rel_type": "m.reference", "event_id": request_id},
        AA + "payment": {
            "payer": alice.user_id,
            "amount": 250,
            "currency": "JPY",
            "method": "provider",
            "receipt": r,
        },  # fmt: skip
    }
    expect_error(lambda: alice.send(room, raw), 403, "M_INVALID_PARAM")


def test_a_malicious_server_cannot_void_what_it_owes_nor_others_payments(hs1, attacker):
    """Pete's server (a plain Synapse) made the room, so pete may redact anything in it, and
    alice's server applies his redactions to the events. Alice's bill names pete as debtor:
    his redaction of the bill, and of bob's payment, leave alice's ledger, the live status and
    everyone's balances as they were."""
    alice, bob = hs1.new_user("alice"), hs1.new_user("bob")
    pete = attacker.new_user("pete")
    room = pete.create_room(preset="public_chat")
    for u in (alice, bob):
        u.join(room, via=[attacker.server_name])
    wait_until(lambda: alice.joined_members(room) == {alice.user_id, bob.user_id, pete.user_id},
               timeout=60)  # fmt: skip
    request_id = ask(alice, room, [alice.user_id, bob.user_id, pete.user_id], total=3000)[
        "event_id"
    ]
    paid = alice.laiwang("POST", path(room, request_id, "pay"),
                         {"method": "cash", "payer": bob.user_id})  # fmt: skip
    wait_until(lambda: any(e["event_id"] == paid["event_id"] for e in pete.messages(room)),
               timeout=60)  # fmt: skip

    before = ledger(alice, room, request_id, bob)
    assert before[0] == "open" and before[2] == [
        {"user_id": pete.user_id, "currency": "CNY", "net": 1000}]  # fmt: skip

    for target in (request_id, paid["event_id"]):
        pete.call("PUT", f"/_matrix/client/v3/rooms/{quote(room)}/redact/{quote(target)}/"
                  f"{uuid.uuid4().hex}", {"reason": "not paying"})  # fmt: skip
    # hs1 received and applied both redactions (the content is gone for alice's client) ...
    for target in (request_id, paid["event_id"]):
        wait_until(lambda t=target: alice.event(room, t)["content"] == {}, timeout=60)  # type: ignore[misc]
    # ... and its ledger did not move.
    stays(lambda: ledger(alice, room, request_id, bob) == before)
    assert alice.event(room, request_id)["unsigned"]["org.laiwang.aa.status"]["state"] == "open"


def test_a_malicious_server_is_held_to_every_rule_at_the_door(hs1, attacker, payment_keys):
    """Pete's server (a plain Synapse) sends what a module would have refused: a cash payment
    and a close that only the payee may send, an edit of the bill, a payment whose receipt is
    bound to another request, a receipt bound to another room, and a bill of CNY 500,000.00
    naming carol, who is not in the room. Alice's server soft-fails each one: alice never sees
    them, and nobody's ledger moves."""
    alice, bob, carol = hs1.new_user("alice"), hs1.new_user("bob"), hs1.new_user("carol")
    pete = attacker.new_user("pete")
    room = alice.create_room(preset="public_chat")
    other_room = alice.create_room(preset="public_chat")
    bob.join(room)
    pete.join(room, via=[hs1.server_name])
    wait_until(lambda: alice.joined_members(room) == {alice.user_id, bob.user_id, pete.user_id},
               timeout=60)  # fmt: skip
    a, b, p = alice.user_id, bob.user_id, pete.user_id
    request_id = ask(alice, room, [a, b, p], total=3000)["event_id"]
    other_id = ask(alice, room, [a, p], total=2000)["event_id"]
    wait_until(lambda: any(e["event_id"] == other_id for e in pete.messages(room)), timeout=60)

    def payment(method: str, **block: Any) -> dict[str, Any]:
        pay = {"payer": p, "amount": 1000, "currency": "CNY", "method": method, **block}
        return {"msgtype": AA + "payment", "body": "paid", AA + "payment": pay,
                "m.relates_to": {"rel_type": "m.reference", "event_id": request_id}}  # fmt: skip

    forged = [
        payment("cash"),  # cash is confirmed by the payee only
        {"msgtype": AA + "close", "body": "closed", AA + "close": {},
         "m.relates_to": {"rel_type": "m.reference", "event_id": request_id}},
        {"msgtype": "m.text", "body": "* nothing", "m.new_content": {"msgtype": "m.text",
         "body": "nothing"}, "m.relates_to": {"rel_type": "m.replace", "event_id": request_id}},
        payment("provider", receipt=receipt(payment_keys, other_id, room, p, a, 1000)),
        payment("provider", receipt=receipt(payment_keys, request_id, other_room, p, a, 1000)),
        {"msgtype": AA + "request", "body": "Pete asks for AA: Rent", AA + "request": {
            "title": "Rent", "currency": "CNY", "total": 50_000_001, "payee": p,
            "shares": {p: 1, carol.user_id: 50_000_000}}},
    ]  # fmt: skip

    before = ledger(alice, room, request_id, carol)
    sent = [pete.send(room, content) for content in forged]
    pete.send_text(room, "that is all")
    wait_until(lambda: seen_by(alice, room, "that is all"), timeout=60)
    seen = {e["event_id"] for e in alice.messages(room, limit=100)}
    assert not seen & set(sent)
    for event_id in sent:
        with pytest.raises(MatrixError) as e:
            alice.event(room, event_id)
        assert (e.value.status, e.value.errcode) == (404, "M_NOT_FOUND"), e.value.body
    assert ledger(alice, room, request_id, carol) == before
    assert before[1] == {a: True, b: False, p: False} and before[3] == []
