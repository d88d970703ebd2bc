"""AA payments on one real homeserver: every endpoint and every rule, through the REST API and
through raw events sent by an ordinary client."""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from signedjson.sign import sign_json

from tests.harness.client import MatrixClient, MatrixError, wait_until
from tests.harness.servers import execute

AA = "org.laiwang.aa."


def aa_room(hs: Any, n: int = 3) -> tuple[str, list[MatrixClient]]:
    """A public room with `n` fresh users, all joined without invites (alice first, the payee)."""
    users = [hs.new_user(name) for name in ("alice", "bob", "carol", "dave")[:n]]
    room = users[0].create_room(preset="public_chat")
    for u in users[1:]:
        u.join(room)
    return room, users


def ask(payee: MatrixClient, room: str, participants: list[str], **kw: Any) -> dict[str, Any]:
    body = {
        "room_id": room,
        "title": "Dinner",
        "currency": "CNY",
        "total": 10000,
        "split": "equal",
        "participants": participants,
    }
    body.update(kw)
    return payee.laiwang("POST", "/aa/requests", body)


def path(room: str, event_id: str, action: str = "") -> str:
    tail = f"/{action}" if action else ""
    return f"/aa/requests/{quote(room)}/{quote(event_id)}{tail}"


def receipt(keys: dict, request_id: str, room: str, payer: str, payee: str, amount: int, *,
            provider: str = "testpay", currency: str = "CNY", receipt_id: str | None = None,
            key: Any = None) -> dict[str, Any]:  # fmt: skip
    r = {
        "receipt_id": receipt_id or uuid.uuid4().hex,
        "provider": provider,
        "payer": payer,
        "payee": payee,
        "amount": amount,
        "currency": currency,
        "room_id": room,
        "event_id": request_id,
    }
    return sign_json(r, provider, key or keys[provider])


def expect_error(call: Any, status: int, errcode: str) -> MatrixError:
    with pytest.raises(MatrixError) as info:
        call()
    assert (info.value.status, info.value.errcode) == (status, errcode), info.value.body
    assert "Traceback" not in str(info.value.body.get("error"))
    return info.value


def redact(client: MatrixClient, room: str, event_id: str) -> str:
    r = client.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(room)}/redact/{quote(event_id)}/{uuid.uuid4().hex}",
        {"reason": "test"},
    )
    return str(r["event_id"])


def aa_events(client: MatrixClient, room: str) -> list[dict[str, Any]]:
    return [
        e
        for e in client.messages(room, limit=100)
        if str(e.get("content", {}).get("msgtype", "")).startswith(AA)
    ]


# --- requests --------------------------------------------------------------------------------


def test_equal_request_event_status_and_details(hs1):
    room, (alice, bob, carol) = aa_room(hs1)
    alice.call("PUT", f"/_matrix/client/v3/rooms/{quote(room)}/state/m.room.member/"
               f"{quote(alice.user_id)}", {"membership": "join", "displayname": "Alice"})  # fmt: skip
    r = ask(alice, room, [alice.user_id, bob.user_id, carol.user_id])
    assert r["shares"] == {alice.user_id: 3334, bob.user_id: 3333, carol.user_id: 3333}
    event = alice.event(room, r["event_id"])
    assert event["sender"] == alice.user_id
    content = event["content"]
    assert content["msgtype"] == AA + "request"
    assert content["body"] == "Alice asks for AA: Dinner, CNY 100.00, CNY 33.34/33.33/33.33"
    assert content[AA + "request"] == {
        "title": "Dinner",
        "currency": "CNY",
        "total": 10000,
        "payee": alice.user_id,
        "shares": r["shares"],
    }
    # The card's live status rides along in unsigned, for the event and in the timeline.
    status = {"state": "open", "paid_count": 1, "unpaid": [bob.user_id, carol.user_id]}
    assert event["unsigned"]["org.laiwang.aa.status"] == status
    timeline = {e["event_id"]: e for e in bob.messages(room)}
    assert timeline[r["event_id"]]["unsigned"]["org.laiwang.aa.status"] == status
    details = bob.laiwang("GET", path(room, r["event_id"]))
    assert details == {
        "title": "Dinner",
        "payee": alice.user_id,
        "currency": "CNY",
        "total": 10000,
        "state": "open",
        "shares": {
            alice.user_id: {"amount": 3334, "paid": True, "payment_event_id": None},
            bob.user_id: {"amount": 3333, "paid": False, "payment_event_id": None},
            carol.user_id: {"amount": 3333, "paid": False, "payment_event_id": None},
        },
    }


def test_exact_and_weighted_splits(hs1):
    room, (alice, bob, carol) = aa_room(hs1)
    r = ask(alice, room, [bob.user_id, carol.user_id], split="exact", currency="JPY", total=5000,
            amounts={bob.user_id: 2000, carol.user_id: 3000})  # fmt: skip
    assert r["shares"] == {bob.user_id: 2000, carol.user_id: 3000}
    r = ask(alice, room, [alice.user_id, bob.user_id, carol.user_id], split="weights",
            currency="KWD", total=1000,
            weights={alice.user_id: 1, bob.user_id: 1, carol.user_id: 1})  # fmt: skip
    assert r["shares"] == {alice.user_id: 334, bob.user_id: 333, carol.user_id: 333}
    assert "KWD 1.000, KWD 0.334/0.333/0.333" in alice.event(room, r["event_id"])["content"]["body"]


@pytest.mark.parametrize(
    "change, errcode",
    [
        ({"total": -100}, "M_INVALID_PARAM"),
        ({"total": 0}, "M_INVALID_PARAM"),
        ({"total": 100.5}, "M_INVALID_PARAM"),
        ({"total": 100.0}, "M_INVALID_PARAM"),
        ({"total": "100"}, "M_INVALID_PARAM"),
        ({"total": 10**30}, "M_INVALID_PARAM"),
        ({"total": 10**12}, "M_INVALID_PARAM"),
        ({"currency": "XYZ"}, "M_INVALID_PARAM"),
        ({"currency": None}, "M_MISSING_PARAM"),
        ({"participants": []}, "M_INVALID_PARAM"),
        ({"participants": "dup"}, "M_INVALID_PARAM"),
        ({"participants": "stranger"}, "M_INVALID_PARAM"),
        ({"split": "exact", "amounts": "strings"}, "M_INVALID_PARAM"),
        ({"split": "exact", "amounts": "floats"}, "M_INVALID_PARAM"),
        ({"split": "weights", "weights": "negative"}, "M_INVALID_PARAM"),
        ({"room_id": "nonsense"}, "M_INVALID_PARAM"),
    ],
)
def test_bad_requests_get_400_and_change_nothing(hs1, change, errcode):
    room, (alice, bob, carol) = aa_room(hs1)
    stranger = hs1.new_user("stranger")
    people = [alice.user_id, bob.user_id]
    body: dict[str, Any] = {"room_id": room, "title": "Dinner", "currency": "CNY",
                            "total": 10000, "split": "equal", "participants": people}  # fmt: skip
    body.update(change)
    if body["participants"] == "dup":
        body["participants"] = [bob.user_id, bob.user_id]
    elif body["participants"] == "stranger":
        body["participants"] = [bob.user_id, stranger.user_id]
    if body.get("amounts") == "strings":
        body["amounts"] = {alice.user_id: "5000", bob.user_id: "5000"}
    elif body.get("amounts") == "floats":
        body["amounts"] = {alice.user_id: 5000.0, bob.user_id: 5000.0}
    if body.get("weights") == "negative":
        body["weights"] = {alice.user_id: -1, bob.user_id: 2}
    body = {k: v for k, v in body.items() if v is not None}
    before = len(alice.messages(room))
    expect_error(lambda: alice.laiwang("POST", "/aa/requests", body), 400, errcode)
    assert len(alice.messages(room)) == before
    assert alice.laiwang("GET", "/aa/balances") == {"balances": []}


def test_request_needs_membership_and_auth(hs1):
    room, (alice, bob) = aa_room(hs1, 2)
    outsider = hs1.new_user("outsider")
    expect_error(lambda: ask(outsider, room, [alice.user_id, bob.user_id]), 403, "M_FORBIDDEN")
    r = hs1.anonymous().laiwang_raw("POST", "/aa/requests", {})
    assert (r.status_code, r.json()["errcode"]) == (401, "M_MISSING_TOKEN")
    r = alice.laiwang_raw("POST", "/aa/requests", data=b"{not json")
    assert (r.status_code, r.json()["errcode"]) == (400, "M_NOT_JSON")
    event_id = ask(alice, room, [alice.user_id, bob.user_id])["event_id"]
    expect_error(lambda: outsider.laiwang("GET", path(room, event_id)), 404, "M_NOT_FOUND")
    expect_error(lambda: alice.laiwang("GET", path(room, "$nope")), 404, "M_NOT_FOUND")


# --- payments -------------------------------------------------------------------------------


def test_cash_payment_is_confirmed_by_the_payee_and_idempotent(hs1):
    room, (alice, bob, carol) = aa_room(hs1)
    request_id = ask(alice, room, [alice.user_id, bob.user_id, carol.user_id])["event_id"]
    # Only the payee confirms cash.
    expect_error(lambda: bob.laiwang("POST", path(room, request_id, "pay"), {"method": "cash"}),
                 403, "M_FORBIDDEN")  # fmt: skip
    expect_error(lambda: alice.laiwang("POST", path(room, request_id, "pay"), {"method": "cash"}),
                 400, "M_MISSING_PARAM")  # fmt: skip
    pay = {"method": "cash", "payer": bob.user_id}
    first = alice.laiwang("POST", path(room, request_id, "pay"), pay)
    assert first["payer"] == bob.user_id and first["amount"] == 3333 and first["method"] == "cash"
    again = alice.laiwang("POST", path(room, request_id, "pay"), pay)
    assert again == first
    payments = [e for e in aa_events(alice, room) if e["content"]["msgtype"] == AA + "payment"]
    assert [e["event_id"] for e in payments] == [first["event_id"]]
    event = payments[0]
    assert event["sender"] == alice.user_id
    assert event["content"]["m.relates_to"] == {"rel_type": "m.reference", "event_id": request_id}
    assert event["content"][AA + "payment"] == {
        "payer": bob.user_id, "amount": 3333, "currency": "CNY", "method": "cash"}  # fmt: skip
    details = alice.laiwang("GET", path(room, request_id))
    assert details["shares"][bob.user_id] == {
        "amount": 3333, "paid": True, "payment_event_id": first["event_id"]}  # fmt: skip
    status = alice.event(room, request_id)["unsigned"]["org.laiwang.aa.status"]
    assert status == {"state": "open", "paid_count": 2, "unpaid": [carol.user_id]}
    # The payee's own share counts as paid; strangers to the bill cannot pay.
    expect_error(lambda: alice.laiwang("POST", path(room, request_id, "pay"),
                                       {"method": "cash", "payer": alice.user_id}),
                 400, "M_INVALID_PARAM")  # fmt: skip


def test_a_payment_holds_for_the_very_next_read(lagging):
    """Right after `pay` returns, the bill's status, the request's unsigned status and the
    balances say it is paid, on a server whose index follows the rooms seconds late."""
    _, late = lagging
    for _ in range(3):
        room, (alice, bob) = aa_room(late, 2)
        request_id = ask(alice, room, [alice.user_id, bob.user_id], total=1000)["event_id"]
        paid = alice.laiwang(
            "POST", path(room, request_id, "pay"), {"method": "cash", "payer": bob.user_id}
        )
        details = bob.laiwang("GET", path(room, request_id))
        assert details["state"] == "settled"
        assert details["shares"][bob.user_id]["payment_event_id"] == paid["event_id"]
        status = bob.event(room, request_id)["unsigned"]["org.laiwang.aa.status"]
        assert status == {"state": "settled", "paid_count": 2, "unpaid": []}
        assert bob.laiwang("GET", "/aa/balances")["balances"] == []


def test_concurrent_pays_send_one_payment(hs1):
    from concurrent.futures import ThreadPoolExecutor

    room, (alice, bob) = aa_room(hs1, 2)
    request_id = ask(alice, room, [alice.user_id, bob.user_id])["event_id"]
    clients = [MatrixClient(hs1.base_url, alice.user_id, alice.access_token) for _ in range(6)]

    def pay(client: MatrixClient) -> Any:
        r = client.laiwang_raw("POST", path(room, request_id, "pay"),
                               {"method": "cash", "payer": bob.user_id})  # fmt: skip
        return r.status_code, r.json()

    with ThreadPoolExecutor(len(clients)) as pool:
        results = list(pool.map(pay, clients))
    assert {status for status, _ in results} <= {200, 429}
    paid = {body["event_id"] for status, body in results if status == 200}
    assert len(paid) == 1
    for status, body in results:
        if status == 429:
            assert body["errcode"] == "M_LIMIT_EXCEEDED" and body["retry_after_ms"] > 0
    payments = [e for e in aa_events(alice, room) if e["content"]["msgtype"] == AA + "payment"]
    assert [e["event_id"] for e in payments] == list(paid)


def test_provider_payment_settles_and_balances(hs1, payment_keys):
    room, (alice, bob, carol) = aa_room(hs1)
    request_id = ask(alice, room, [bob.user_id, carol.user_id], total=5000)["event_id"]
    assert alice.laiwang("GET", "/aa/balances")["balances"] == [
        {"user_id": bob.user_id, "currency": "CNY", "net": 2500},
        {"user_id": carol.user_id, "currency": "CNY", "net": 2500},
    ]
    assert bob.laiwang("GET", "/aa/balances")["balances"] == [
        {"user_id": alice.user_id, "currency": "CNY", "net": -2500}]  # fmt: skip
    for payer in (bob, carol):
        r = receipt(payment_keys, request_id, room, payer.user_id, alice.user_id, 2500)
        paid = payer.laiwang("POST", path(room, request_id, "pay"),
                             {"method": "provider", "receipt": r})  # fmt: skip
        assert paid["method"] == "provider"
        event = payer.event(room, paid["event_id"])
        assert event["sender"] == payer.user_id
        assert event["content"][AA + "payment"]["receipt"] == r
    details = alice.laiwang("GET", path(room, request_id))
    assert details["state"] == "settled"
    status = alice.event(room, request_id)["unsigned"]["org.laiwang.aa.status"]
    assert status == {"state": "settled", "paid_count": 2, "unpaid": []}
    assert alice.laiwang("GET", "/aa/balances") == {"balances": []}
    # Balances are per currency, never converted.
    ask(alice, room, [bob.user_id], total=700, currency="JPY")
    ask(alice, room, [bob.user_id], total=1000, currency="USD")
    assert bob.laiwang("GET", "/aa/balances")["balances"] == [
        {"user_id": alice.user_id, "currency": "JPY", "net": -700},
        {"user_id": alice.user_id, "currency": "USD", "net": -1000},
    ]


def test_forged_replayed_and_mismatched_receipts(hs1, payment_keys):
    from signedjson.key import generate_signing_key

    room, (alice, bob, carol) = aa_room(hs1)
    first = ask(alice, room, [bob.user_id, carol.user_id], total=2000)["event_id"]
    second = ask(alice, room, [bob.user_id, carol.user_id], total=2000)["event_id"]

    def pay(request_id: str, r: dict[str, Any]) -> Any:
        return lambda: bob.laiwang("POST", path(room, request_id, "pay"),
                                   {"method": "provider", "receipt": r})  # fmt: skip

    forged = receipt(payment_keys, first, room, bob.user_id, alice.user_id, 1000,
                     key=generate_signing_key("1"))  # fmt: skip
    expect_error(pay(first, forged), 400, "M_INVALID_PARAM")
    tampered = receipt(payment_keys, first, room, bob.user_id, alice.user_id, 1)
    tampered["amount"] = 1000
    expect_error(pay(first, tampered), 400, "M_INVALID_PARAM")
    untrusted = receipt(payment_keys, first, room, bob.user_id, alice.user_id, 1000,
                        provider="hs2pay")  # fmt: skip
    expect_error(pay(first, untrusted), 400, "M_INVALID_PARAM")
    wrong_bill = receipt(payment_keys, second, room, bob.user_id, alice.user_id, 1000)
    expect_error(pay(first, wrong_bill), 400, "M_INVALID_PARAM")
    # No receipt: this server charges through its commerce service, for which neither has
    # linked an account (test_commerce.py); a server without one answers M_MISSING_PARAM.
    expect_error(lambda: bob.laiwang("POST", path(room, first, "pay"), {"method": "provider"}),
                 409, "ORG.LAIWANG.COMMERCE_NOT_LINKED")  # fmt: skip
    assert alice.laiwang("GET", path(room, first))["shares"][bob.user_id]["paid"] is False

    good = receipt(payment_keys, first, room, bob.user_id, alice.user_id, 1000, receipt_id="once")
    bob.laiwang("POST", path(room, first, "pay"), {"method": "provider", "receipt": good})
    # The provider's receipt id is good for one payment only, even re-signed for another bill.
    replay = receipt(payment_keys, second, room, bob.user_id, alice.user_id, 1000,
                     receipt_id="once")  # fmt: skip
    err = expect_error(pay(second, replay), 400, "M_INVALID_PARAM")
    assert "already used" in err.body["error"]
    # The same replay as a raw event from an ordinary client is refused by the event check.
    content = {
        "msgtype": AA + "payment",
        "body": "Bob paid",
        "m.relates_to": {"rel_type": "m.reference", "event_id": second},
        AA + "payment": {
            "payer": bob.user_id,
            "amount": 1000,
            "currency": "CNY",
            "method": "provider",
            "receipt": replay,
        },  # fmt: skip
    }
    expect_error(lambda: bob.send(room, content), 403, "M_INVALID_PARAM")
    assert alice.laiwang("GET", path(room, second))["shares"][bob.user_id]["paid"] is False


# --- close and remind ------------------------------------------------------------------------


def test_close_then_nothing_more(hs1, payment_keys):
    room, (alice, bob, carol) = aa_room(hs1)
    request_id = ask(alice, room, [bob.user_id, carol.user_id], total=2000)["event_id"]
    alice.laiwang("POST", path(room, request_id, "pay"), {"method": "cash", "payer": bob.user_id})
    expect_error(lambda: bob.laiwang("POST", path(room, request_id, "close")), 403, "M_FORBIDDEN")
    closed = alice.laiwang("POST", path(room, request_id, "close"))
    assert alice.laiwang("POST", path(room, request_id, "close")) == closed  # a retry
    event = alice.event(room, closed["event_id"])
    assert event["content"]["msgtype"] == AA + "close"
    assert event["content"]["m.relates_to"] == {"rel_type": "m.reference", "event_id": request_id}
    assert event["content"]["body"].endswith("closed AA: Dinner (1 of 2 paid)")
    assert alice.laiwang("GET", path(room, request_id))["state"] == "closed"
    assert alice.event(room, request_id)["unsigned"]["org.laiwang.aa.status"]["state"] == "closed"
    # Closing stops only the unpaid: carol owes nothing any more.
    assert alice.laiwang("GET", "/aa/balances") == {"balances": []}
    r = receipt(payment_keys, request_id, room, carol.user_id, alice.user_id, 1000)
    expect_error(lambda: carol.laiwang("POST", path(room, request_id, "pay"),
                                       {"method": "provider", "receipt": r}),
                 400, "M_INVALID_PARAM")  # fmt: skip
    raw = {
        "msgtype": AA + "payment",
        "body": "Carol paid",
        "m.relates_to": {"rel_type": "m.reference", "event_id": request_id},
        AA + "payment": {
            "payer": carol.user_id,
            "amount": 1000,
            "currency": "CNY",
            "method": "provider",
            "receipt": r,
        },  # fmt: skip
    }
    expect_error(lambda: carol.send(room, raw), 403, "M_INVALID_PARAM")
    expect_error(lambda: alice.laiwang("POST", path(room, request_id, "remind")),
                 400, "M_INVALID_PARAM")  # fmt: skip


def test_remind_mentions_the_unpaid_once_an_hour(hs1):
    room, (alice, bob, carol) = aa_room(hs1)
    request_id = ask(alice, room, [alice.user_id, bob.user_id, carol.user_id])["event_id"]
    alice.laiwang("POST", path(room, request_id, "pay"), {"method": "cash", "payer": bob.user_id})
    expect_error(lambda: bob.laiwang("POST", path(room, request_id, "remind")), 403, "M_FORBIDDEN")
    r = alice.laiwang("POST", path(room, request_id, "remind"))
    assert r["mentioned"] == [carol.user_id]
    notice = alice.event(room, r["event_id"])
    assert notice["content"]["msgtype"] == "m.notice"
    assert notice["content"]["m.mentions"] == {"user_ids": [carol.user_id]}
    assert "still unpaid" in notice["content"]["body"]
    err = expect_error(lambda: alice.laiwang("POST", path(room, request_id, "remind")),
                       429, "M_LIMIT_EXCEEDED")  # fmt: skip
    assert 0 < err.body["retry_after_ms"] <= 3600 * 1000


# --- raw events from an ordinary client --------------------------------------------------------


def raw_request(alice: MatrixClient, shares: dict[str, Any], **block: Any) -> dict[str, Any]:
    b = {"title": "Taxi", "currency": "CNY", "total": sum(v for v in shares.values()
         if isinstance(v, int)), "payee": alice.user_id, "shares": shares}  # fmt: skip
    b.update(block)
    return {"msgtype": AA + "request", "body": "Alice asks for AA: Taxi", AA + "request": b}


def test_a_valid_raw_request_enters_the_ledger(hs1):
    room, (alice, bob) = aa_room(hs1, 2)
    event_id = alice.send(room, raw_request(alice, {alice.user_id: 500, bob.user_id: 500}))
    # Raw events reach the ledger through on_new_event, after the send has returned.
    details = wait_until(lambda: bob.laiwang("GET", path(room, event_id)))
    assert details["state"] == "open" and details["total"] == 1000
    assert bob.laiwang("GET", "/aa/balances")["balances"] == [
        {"user_id": alice.user_id, "currency": "CNY", "net": -500}]  # fmt: skip


def test_raw_events_that_break_a_rule_are_refused(hs1, payment_keys):
    room, (alice, bob, carol) = aa_room(hs1)
    stranger = hs1.new_user("stranger")
    a, b, c = alice.user_id, bob.user_id, carol.user_id
    request_id = ask(alice, room, [a, b, c], total=3000)["event_id"]
    text_id = bob.send_text(room, "just text")

    def payment(sender_pays: str, method: str = "cash", **block: Any) -> dict[str, Any]:
        p = {"payer": sender_pays, "amount": 1000, "currency": "CNY", "method": method}
        p.update(block)
        return {"msgtype": AA + "payment", "body": "paid", AA + "payment": p,
                "m.relates_to": {"rel_type": "m.reference", "event_id": request_id}}  # fmt: skip

    cases: list[tuple[MatrixClient, dict[str, Any], str]] = [
        (alice, raw_request(alice, {a: 500, b: 400}, total=1000), "M_INVALID_PARAM"),
        (alice, raw_request(alice, {a: 500, b: -500}, total=1), "M_INVALID_PARAM"),
        (alice, raw_request(alice, {a: 500, b: "500"}, total=1000), "M_INVALID_PARAM"),
        (alice, raw_request(alice, {a: 500, b: 500}, currency="ABC"), "M_INVALID_PARAM"),
        (alice, raw_request(alice, {a: 10**11, b: 10**11}), "M_INVALID_PARAM"),
        (alice, raw_request(alice, {}), "M_INVALID_PARAM"),
        (alice, raw_request(alice, {a: 500, stranger.user_id: 500}), "M_INVALID_PARAM"),
        (bob, raw_request(alice, {a: 500, b: 500}), "M_FORBIDDEN"),  # payee is not the sender
        (alice, payment(b, amount=999), "M_INVALID_PARAM"),
        (alice, payment(b, currency="USD"), "M_INVALID_PARAM"),
        (alice, payment(stranger.user_id), "M_INVALID_PARAM"),
        (bob, payment(b), "M_FORBIDDEN"),  # cash from the payer
        (bob, payment(b, method="provider"), "M_MISSING_PARAM"),  # no receipt
        (bob, payment(b, method="bitcoin"), "M_INVALID_PARAM"),
        (carol, payment(b, method="provider", receipt=receipt(
            payment_keys, request_id, room, b, a, 1000)), "M_FORBIDDEN"),  # not the payer
        (alice, {**payment(b), "m.relates_to": {"rel_type": "m.reference", "event_id": text_id}},
         "M_INVALID_PARAM"),
        (alice, {**payment(b), "m.relates_to": None}, "M_INVALID_PARAM"),
        (bob, {"msgtype": AA + "close", "body": "closed", AA + "close": {},
               "m.relates_to": {"rel_type": "m.reference", "event_id": request_id}},
         "M_FORBIDDEN"),
        (alice, {"msgtype": AA + "refund", "body": "?"}, "M_INVALID_PARAM"),
        # Edits: of an AA event, and of plain text into an AA event.
        (alice, {"msgtype": "m.text", "body": "* Lunch",
                 "m.new_content": {"msgtype": "m.text", "body": "Lunch"},
                 "m.relates_to": {"rel_type": "m.replace", "event_id": request_id}},
         "M_FORBIDDEN"),
        (alice, {**raw_request(alice, {a: 9000, b: 9000}),
                 "m.new_content": raw_request(alice, {a: 9000, b: 9000}),
                 "m.relates_to": {"rel_type": "m.replace", "event_id": request_id}},
         "M_FORBIDDEN"),
        (bob, {"msgtype": "m.text", "body": "* x", "m.new_content": payment(b),
               "m.relates_to": {"rel_type": "m.replace", "event_id": text_id}}, "M_FORBIDDEN"),
    ]  # fmt: skip
    for sender, content, errcode in cases:
        err = expect_error(lambda: sender.send(room, content), 403, errcode)  # noqa: B023
        assert err.body["error"].startswith("AA rule:")
    # Nothing reached the ledger: the bill is as it was, and no AA event but the request exists.
    assert [e["event_id"] for e in aa_events(alice, room)] == [request_id]
    details = alice.laiwang("GET", path(room, request_id))
    assert details["state"] == "open"
    assert [u for u, s in details["shares"].items() if s["paid"]] == [a]
    # A float is not even valid Matrix JSON for an event.
    expect_error(lambda: alice.send(room, payment(b, amount=1000.0)), 400, "M_BAD_JSON")
    # Editing plain text stays plain Matrix.
    bob.send(room, {"msgtype": "m.text", "body": "* edited", "m.new_content": {
        "msgtype": "m.text", "body": "edited"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": text_id}})  # fmt: skip
    # A valid raw payment and a second one for the same share.
    first = alice.send(room, payment(b))
    wait_until(
        lambda: (
            alice.laiwang("GET", path(room, request_id))["shares"][b]["payment_event_id"] == first
        )
    )
    expect_error(lambda: alice.send(room, payment(b)), 403, "M_INVALID_PARAM")


# --- redactions ------------------------------------------------------------------------------


def test_redactions_change_the_ledger_and_say_so(hs1):
    room, (alice, bob, carol) = aa_room(hs1)
    request_id = ask(alice, room, [bob.user_id, carol.user_id], total=2000)["event_id"]
    paid = alice.laiwang("POST", path(room, request_id, "pay"),
                         {"method": "cash", "payer": bob.user_id})  # fmt: skip
    assert alice.laiwang("GET", "/aa/balances")["balances"] == [
        {"user_id": carol.user_id, "currency": "CNY", "net": 1000}]  # fmt: skip
    # A redacted payment is void: the share is unpaid (and owed) again, and a notice says so.
    redact(alice, room, paid["event_id"])
    details = wait_until(
        lambda: (
            (d := alice.laiwang("GET", path(room, request_id)))["state"] == "open"
            and not d["shares"][bob.user_id]["paid"]
            and d
        )
    )
    assert details["shares"][bob.user_id] == {"amount": 1000, "paid": False,
                                              "payment_event_id": None}  # fmt: skip
    assert {b["user_id"] for b in alice.laiwang("GET", "/aa/balances")["balances"]} == {
        bob.user_id, carol.user_id}  # fmt: skip

    def notices() -> list[str]:
        return [e["content"]["body"] for e in alice.messages(room)
                if e.get("content", {}).get("msgtype") == "m.notice"]  # fmt: skip

    wait_until(lambda: any("unpaid again" in n for n in notices()))
    # The same share can be paid again after the void.
    again = alice.laiwang("POST", path(room, request_id, "pay"),
                          {"method": "cash", "payer": bob.user_id})  # fmt: skip
    assert again["event_id"] != paid["event_id"]
    # A redacted request is void: nobody owes it, nothing more can happen to it.
    redact(alice, room, request_id)
    wait_until(lambda: alice.laiwang("GET", path(room, request_id))["state"] == "void")
    assert alice.laiwang("GET", "/aa/balances") == {"balances": []}
    wait_until(lambda: any("void" in n for n in notices()))
    expect_error(lambda: alice.laiwang("POST", path(room, request_id, "pay"),
                                       {"method": "cash", "payer": carol.user_id}),
                 400, "M_INVALID_PARAM")  # fmt: skip


# --- the ledger can be rebuilt from the room ---------------------------------------------------


def test_ledger_is_rebuilt_from_room_history(hs1):
    room, (alice, bob, carol) = aa_room(hs1)
    admin = hs1.new_user("admin", admin=True)
    admin.join(room)
    first = ask(alice, room, [bob.user_id, carol.user_id], total=2000)["event_id"]
    paid = alice.laiwang("POST", path(room, first, "pay"), {"method": "cash", "payer": bob.user_id})
    second = ask(alice, room, [bob.user_id, carol.user_id], total=300, currency="JPY")["event_id"]
    alice.laiwang("POST", path(room, second, "close"))
    before = {e: alice.laiwang("GET", path(room, e)) for e in (first, second)}
    balances = {u.user_id: u.laiwang("GET", "/aa/balances") for u in (alice, bob, carol)}

    # Lose the room's ledger (and the balances) behind the module's back.
    for table in ("laiwang_aa_shares", "laiwang_aa_payments", "laiwang_aa_events"):
        execute(hs1, f"DELETE FROM {table} WHERE request_event_id IN (?, ?)", first, second)
    execute(hs1, "DELETE FROM laiwang_aa_requests WHERE event_id IN (?, ?)", first, second)
    execute(hs1, "DELETE FROM laiwang_aa_balances WHERE user_id IN (?, ?, ?)",
            alice.user_id, bob.user_id, carol.user_id)  # fmt: skip
    assert bob.laiwang("GET", "/aa/balances")["balances"] == []

    expect_error(lambda: alice.laiwang("POST", "/aa/rebuild", {"room_id": room}), 403,
                 "M_FORBIDDEN")  # fmt: skip
    r = admin.laiwang("POST", "/aa/rebuild", {"room_id": room})
    assert r["requests"] == 2
    assert {e: alice.laiwang("GET", path(room, e)) for e in (first, second)} == before
    assert before[first]["shares"][bob.user_id]["payment_event_id"] == paid["event_id"]
    assert {u.user_id: u.laiwang("GET", "/aa/balances") for u in (alice, bob, carol)} == balances
    # Rebuilding again changes nothing.
    admin.laiwang("POST", "/aa/rebuild", {"room_id": room})
    assert {u.user_id: u.laiwang("GET", "/aa/balances") for u in (alice, bob, carol)} == balances
    assert alice.event(room, first)["unsigned"]["org.laiwang.aa.status"]["unpaid"] == [
        carol.user_id
    ]


@pytest.mark.postgres
def test_ledger_on_postgresql(pg_homeserver):
    room, (alice, bob, carol) = aa_room(pg_homeserver)
    request_id = ask(alice, room, [alice.user_id, bob.user_id, carol.user_id])["event_id"]
    paid = alice.laiwang("POST", path(room, request_id, "pay"),
                         {"method": "cash", "payer": bob.user_id})  # fmt: skip
    assert alice.laiwang("POST", path(room, request_id, "pay"),
                         {"method": "cash", "payer": bob.user_id}) == paid  # fmt: skip
    assert alice.laiwang("GET", "/aa/balances")["balances"] == [
        {"user_id": carol.user_id, "currency": "CNY", "net": 3333}]  # fmt: skip
    alice.laiwang("POST", path(room, request_id, "remind"))
    expect_error(lambda: alice.laiwang("POST", path(room, request_id, "remind")), 429,
                 "M_LIMIT_EXCEEDED")  # fmt: skip
    alice.laiwang("POST", path(room, request_id, "close"))
    assert alice.laiwang("GET", "/aa/balances") == {"balances": []}
    status = alice.event(room, request_id)["unsigned"]["org.laiwang.aa.status"]
    assert status == {"state": "closed", "paid_count": 2, "unpaid": [carol.user_id]}
    redact(alice, room, paid["event_id"])
    wait_until(
        lambda: alice.laiwang("GET", path(room, request_id))["shares"][bob.user_id]["paid"] is False
    )


# --- who may void what: the ledger checks a redaction's room and sender itself ---------------


def stays(check: Any, seconds: float = 3.0) -> None:
    """`check()` holds now and for `seconds` (an outcome that must not come, however late)."""
    deadline = time.monotonic() + seconds
    while True:
        assert check()
        if time.monotonic() > deadline:
            return
        time.sleep(0.2)


def ledger(payee: MatrixClient, room: str, request_id: str, *others: MatrixClient) -> tuple:
    """What a redaction must not change: the request's state and who paid, as its payee sees
    them, and the balances of the payee and of `others`."""
    d = payee.laiwang("GET", path(room, request_id))
    return (
        d["state"],
        {u: s["paid"] for u, s in d["shares"].items()},
        *(user.laiwang("GET", "/aa/balances")["balances"] for user in (payee, *others)),
    )


def make_moderator(admin: MatrixClient, room: str, user: MatrixClient) -> None:
    levels = admin.state(room, "m.room.power_levels")
    levels.setdefault("users", {})[user.user_id] = 50
    admin.put_state(room, "m.room.power_levels", levels)


def test_a_debtor_who_moderates_cannot_void_the_bill_nor_a_third_party_a_payment(hs1):
    """Bob owes and moderates; carol moderates too and owes nothing on bob's share. Their
    redactions remove the events' content for clients (Synapse lets moderators), but the ledger
    keeps the bill open and bob's payment paid: only the payee voids a bill, only the payer or
    the payee a payment."""
    room, (alice, bob, carol) = aa_room(hs1)
    make_moderator(alice, room, bob)
    make_moderator(alice, room, carol)
    request_id = ask(alice, room, [bob.user_id, carol.user_id, alice.user_id], total=3000)[
        "event_id"
    ]
    paid = alice.laiwang("POST", path(room, request_id, "pay"),
                         {"method": "cash", "payer": carol.user_id})  # fmt: skip

    before = ledger(alice, room, request_id, bob, carol)
    assert before[0] == "open" and before[1] == {
        bob.user_id: False, carol.user_id: True, alice.user_id: True}  # fmt: skip
    assert before[3] == [{"user_id": alice.user_id, "currency": "CNY", "net": -1000}]

    redact(bob, room, request_id)  # the debtor, as moderator
    redact(bob, room, paid["event_id"])  # a third party to carol's payment
    # Synapse applied both redactions (the content is gone for clients)...
    wait_until(lambda: alice.event(room, request_id)["content"] == {})
    wait_until(lambda: alice.event(room, paid["event_id"])["content"] == {})
    # ...but the ledger, the live status and everyone's balances are as they were.
    stays(lambda: ledger(alice, room, request_id, bob, carol) == before)
    assert alice.event(room, request_id)["unsigned"]["org.laiwang.aa.status"]["state"] == "open"
    # Bob still owes, and can still pay.
    alice.laiwang("POST", path(room, request_id, "pay"), {"method": "cash", "payer": bob.user_id})
    wait_until(lambda: alice.laiwang("GET", path(room, request_id))["state"] == "settled")


def test_a_redaction_from_another_room_changes_nothing(hs1):
    """Mallory, admin of her own room, names alice's bill in a redaction there. Synapse refuses
    it at the client API; the ledger would ignore it too (a redaction counts only in the
    request's room: tests/unit/test_aa_ledger.py, since no client API can send one)."""
    room, (alice, bob) = aa_room(hs1, 2)
    mallory = hs1.new_user("mallory")
    elsewhere = mallory.create_room(preset="public_chat")
    request_id = ask(alice, room, [bob.user_id], total=1000)["event_id"]
    before = alice.laiwang("GET", "/aa/balances")
    expect_error(lambda: redact(mallory, elsewhere, request_id), 400, "M_UNKNOWN")
    stays(lambda: alice.laiwang("GET", path(room, request_id))["state"] == "open", 1.0)
    assert alice.laiwang("GET", "/aa/balances") == before
    assert bob.laiwang("GET", "/aa/balances")["balances"] == [
        {"user_id": alice.user_id, "currency": "CNY", "net": -1000}]  # fmt: skip
