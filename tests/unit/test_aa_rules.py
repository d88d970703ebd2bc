"""The AA rules in rooms/aa.py: splits (property tests), bodies, requests, payments, closes."""

from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from signedjson.key import generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from rooms import aa
from rooms.errors import Forbidden, InvalidParam, MissingParam, ValidationError
from rooms.money import currencies, max_amount

ALICE, BOB, CAROL, DAVE = "@alice:a.test", "@bob:a.test", "@carol:b.test", "@dave:b.test"

users = st.lists(
    st.from_regex(r"@[a-z0-9]{1,8}:[a-z]{1,5}\.test", fullmatch=True),
    min_size=1,
    max_size=aa.MAX_PARTICIPANTS,
    unique=True,
)


@st.composite
def equal_cases(draw):
    code = draw(st.sampled_from(sorted(currencies())))
    people = draw(users)
    total = draw(st.integers(min_value=len(people), max_value=max_amount(code)))
    return code, total, people


@given(equal_cases())
def test_equal_split_sums_is_fair_and_deterministic(case):
    _code, total, people = case
    shares = aa.split_equal(total, people)
    assert list(shares) == people
    assert sum(shares.values()) == total
    exact = Fraction(total, len(people))
    assert all(abs(s - exact) < 1 for s in shares.values())
    # The remainder goes one unit at a time in the order given.
    assert list(shares.values()) == sorted(shares.values(), reverse=True)
    assert aa.split_equal(total, people) == shares


@given(
    st.integers(min_value=1, max_value=10**13),
    users.flatmap(
        lambda ps: st.lists(
            st.integers(min_value=1, max_value=aa.MAX_WEIGHT), min_size=len(ps), max_size=len(ps)
        ).map(lambda ws: list(zip(ps, ws, strict=True)))
    ),
)
def test_weighted_split_sums_is_within_one_unit_and_deterministic(total, weights):
    shares = aa.split_weights(total, weights)
    assert sum(shares.values()) == total
    weight_sum = sum(w for _, w in weights)
    # Each share is the floor of its exact proportion, plus one unit for the first participants
    # in the order given until the remainder is gone (an exact share can so be one unit over).
    extra = [shares[user] - total * w // weight_sum for user, w in weights]
    assert extra == sorted(extra, reverse=True) and set(extra) <= {0, 1}
    for user, w in weights:
        assert abs(shares[user] - Fraction(total * w, weight_sum)) <= 1
    assert aa.split_weights(total, weights) == shares


def test_remainder_goes_in_participant_order():
    assert aa.split_equal(10000, [ALICE, BOB, CAROL]) == {ALICE: 3334, BOB: 3333, CAROL: 3333}
    assert aa.split_equal(10001, [CAROL, BOB, ALICE]) == {CAROL: 3334, BOB: 3334, ALICE: 3333}
    assert aa.split_weights(100, [(ALICE, 1), (BOB, 1), (CAROL, 1)]) == {
        ALICE: 34,
        BOB: 33,
        CAROL: 33,
    }
    assert aa.split_weights(1000, [(ALICE, 2), (BOB, 1)]) == {ALICE: 667, BOB: 333}


def body(**kw):
    base = {
        "room_id": "!r:a.test",
        "title": "Dinner",
        "currency": "CNY",
        "total": 10000,
        "split": "equal",
        "participants": [ALICE, BOB, CAROL],
    }
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


def test_request_body_and_event_content():
    room_id, req = aa.parse_request_body(body(), ALICE)
    assert room_id == "!r:a.test"
    content = req.content("Alice")
    assert content["body"] == "Alice asks for AA: Dinner, CNY 100.00, CNY 33.34/33.33/33.33"
    assert content["msgtype"] == aa.MSGTYPE_REQUEST
    assert content[aa.MSGTYPE_REQUEST] == {
        "title": "Dinner",
        "currency": "CNY",
        "total": 10000,
        "payee": ALICE,
        "shares": {ALICE: 3334, BOB: 3333, CAROL: 3333},
    }
    # The event check parses back the very same bill.
    assert aa.parse_request_content(content) == req


def test_exact_and_weights():
    _, req = aa.parse_request_body(
        body(split="exact", total=500, currency="JPY", amounts={ALICE: 100, BOB: 150, CAROL: 250}),
        ALICE,
    )
    assert dict(req.shares) == {ALICE: 100, BOB: 150, CAROL: 250}
    _, req = aa.parse_request_body(
        body(split="weights", total=1000, currency="KWD", weights={ALICE: 2, BOB: 1, CAROL: 1}),
        ALICE,
    )
    assert dict(req.shares) == {ALICE: 500, BOB: 250, CAROL: 250}


@pytest.mark.parametrize(
    "kw, error",
    [
        ({"total": -1}, InvalidParam),
        ({"total": 0}, InvalidParam),
        ({"total": 100.5}, InvalidParam),
        ({"total": 100.0}, InvalidParam),
        ({"total": "100"}, InvalidParam),
        ({"total": 10**20}, InvalidParam),
        ({"total": 2}, InvalidParam),  # less than one unit each
        ({"total": None}, MissingParam),
        ({"currency": "XYZ"}, InvalidParam),
        ({"currency": None}, MissingParam),
        ({"participants": []}, InvalidParam),
        ({"participants": [ALICE, ALICE]}, InvalidParam),
        ({"participants": ["bob"]}, InvalidParam),
        ({"participants": "@bob:a.test"}, InvalidParam),
        ({"split": "random"}, InvalidParam),
        ({"title": ""}, InvalidParam),
        ({"title": "x" * 201}, InvalidParam),
        ({"room_id": "not-a-room"}, InvalidParam),
        ({"surprise": 1}, InvalidParam),
        ({"amounts": {ALICE: 1}}, InvalidParam),  # amounts with an equal split
        ({"split": "exact"}, MissingParam),
        ({"split": "exact", "amounts": {ALICE: 5000, BOB: 5000}}, InvalidParam),
        ({"split": "exact", "amounts": {ALICE: 5000, BOB: 4000, CAROL: 1000.0}}, InvalidParam),
        ({"split": "exact", "amounts": {ALICE: 5000, BOB: 4000, CAROL: 999}}, InvalidParam),
        ({"split": "exact", "amounts": {ALICE: 6000, BOB: 5000, CAROL: -1000}}, InvalidParam),
        ({"split": "weights", "weights": {ALICE: 1, BOB: 0, CAROL: 1}}, InvalidParam),
        ({"split": "weights", "weights": {ALICE: 1, BOB: True, CAROL: 1}}, InvalidParam),
        (
            {"split": "weights", "total": 3, "weights": {ALICE: 1000, BOB: 1, CAROL: 1}},
            InvalidParam,
        ),
    ],
)
def test_bad_request_bodies(kw, error):
    with pytest.raises(error):
        aa.parse_request_body(body(**kw), ALICE)


def test_request_context_rules():
    _, req = aa.parse_request_body(body(), ALICE)
    aa.check_request_context(req, ALICE, {ALICE, BOB, CAROL})
    with pytest.raises(Forbidden):
        aa.check_request_context(req, BOB, {ALICE, BOB, CAROL})
    with pytest.raises(InvalidParam, match="joined"):
        aa.check_request_context(req, ALICE, {ALICE, BOB})


def test_request_content_must_add_up():
    content = aa.parse_request_body(body(), ALICE)[1].content("Alice")
    content[aa.MSGTYPE_REQUEST]["shares"][BOB] = 3000
    with pytest.raises(InvalidParam, match="sum"):
        aa.parse_request_content(content)
    content[aa.MSGTYPE_REQUEST]["shares"][BOB] = -3333
    with pytest.raises(InvalidParam):
        aa.parse_request_content(content)
    with pytest.raises(InvalidParam):
        aa.parse_request_content({"msgtype": aa.MSGTYPE_REQUEST, "body": "x"})


# --- payments and receipts ------------------------------------------------------------------

KEY = generate_signing_key("1")
OTHER_KEY = generate_signing_key("1")
PROVIDERS = {"testpay": SimpleNamespace(key_id="ed25519:1", verify_key=get_verify_key(KEY))}


def view(state=aa.OPEN, paid=(ALICE,)):
    return aa.RequestView(
        event_id="$req",
        room_id="!r:a.test",
        title="Dinner",
        payee=ALICE,
        currency="CNY",
        total=10000,
        state=state,
        shares={ALICE: 3334, BOB: 3333, CAROL: 3333},
        paid=set(paid),
    )


def receipt(key=KEY, provider="testpay", **kw):
    r = {
        "receipt_id": "r-1",
        "provider": provider,
        "payer": BOB,
        "payee": ALICE,
        "amount": 3333,
        "currency": "CNY",
        "room_id": "!r:a.test",
        "event_id": "$req",
    }
    r.update(kw)
    return sign_json(r, provider, key)


def payment(**kw):
    args = {
        "request_event_id": "$req",
        "payer": BOB,
        "amount": 3333,
        "currency": "CNY",
        "method": "provider",
        "receipt": receipt(),
    }
    args.update(kw)
    return aa.AAPayment(**args)


def test_valid_payments():
    aa.check_payment(payment(), BOB, view(), PROVIDERS, receipt_used=False)
    aa.check_payment(payment(method="cash", receipt=None), ALICE, view(), PROVIDERS, False)
    content = payment().content("Bob paid")
    assert aa.parse_payment_content(content) == payment()


@pytest.mark.parametrize(
    "pay, sender, request_view, used, match",
    [
        (payment(), BOB, view(state=aa.CLOSED), False, "closed"),
        (payment(), BOB, view(paid=(ALICE, BOB)), False, "already paid"),
        (payment(amount=3334), BOB, view(), False, "share"),
        (payment(currency="USD"), BOB, view(), False, "currency"),
        (payment(payer=DAVE), DAVE, view(), False, "participant"),
        (payment(payer=ALICE, amount=3334), ALICE, view(), False, "payee"),
        (payment(method="cash", receipt=None), BOB, view(), False, "payee only"),
        (payment(), CAROL, view(), False, "sender"),
        (payment(receipt=None), BOB, view(), False, "receipt"),
        (payment(), BOB, view(), True, "already used"),
        (payment(receipt=receipt(key=OTHER_KEY)), BOB, view(), False, "signature"),
        (payment(receipt=receipt(provider="hs2pay")), BOB, view(), False, "trusts"),
        (payment(receipt=receipt(amount=1)), BOB, view(), False, "amount"),
        (payment(receipt=receipt(event_id="$other")), BOB, view(), False, "event_id"),
        (payment(receipt=receipt(payee=CAROL)), BOB, view(), False, "payee"),
        (payment(receipt={**receipt(), "amount": 3334}), BOB, view(), False, "amount"),
        (payment(receipt={**receipt(), "signatures": {}}), BOB, view(), False, "signature"),
        (payment(receipt={"receipt_id": "x"}), BOB, view(), False, "required"),
    ],
)
def test_payment_rules(pay, sender, request_view, used, match):
    with pytest.raises((ValidationError, Forbidden), match=match):
        aa.check_payment(pay, sender, request_view, PROVIDERS, used)


def test_the_state_independent_rules_hold_whatever_the_ledger_says():
    """What the ledger re-checks when it applies a payment: the sender's authority and the
    receipt, and nothing that depends on the ledger's state (a paid share, a closed bill)."""
    settled = view(state=aa.CLOSED, paid=(ALICE, BOB, CAROL))
    aa.check_payment_authority(payment(), BOB, settled, PROVIDERS)
    aa.check_payment_authority(payment(method="cash", receipt=None), ALICE, settled, PROVIDERS)
    with pytest.raises(Forbidden, match="payee only"):
        aa.check_payment_authority(payment(method="cash", receipt=None), BOB, view(), PROVIDERS)
    with pytest.raises(Forbidden, match="sender"):
        aa.check_payment_authority(payment(), CAROL, view(), PROVIDERS)
    with pytest.raises(InvalidParam, match="signature"):
        aa.check_payment_authority(payment(receipt=receipt(key=OTHER_KEY)), BOB, view(),
                                   PROVIDERS)  # fmt: skip


def test_tampered_receipt_fails_even_with_matching_fields():
    tampered = receipt(amount=1)
    tampered["amount"] = 3333  # fields now match, the signature does not
    with pytest.raises(InvalidParam, match="signature"):
        aa.check_payment(payment(receipt=tampered), BOB, view(), PROVIDERS, False)


@pytest.mark.parametrize(
    "content",
    [
        {"msgtype": aa.MSGTYPE_PAYMENT, "body": "x"},
        {**payment().content("x"), "m.relates_to": {"rel_type": "m.thread", "event_id": "$req"}},
        {**payment().content("x"), aa.MSGTYPE_PAYMENT: {**payment().block(), "amount": 33.33}},
        {**payment().content("x"), aa.MSGTYPE_PAYMENT: {**payment().block(), "method": "iou"}},
        {**payment().content("x"), aa.MSGTYPE_PAYMENT: {**payment().block(), "payer": "bob"}},
    ],
)
def test_malformed_payment_events(content):
    with pytest.raises(InvalidParam):
        aa.parse_payment_content(content)


def test_close_rules():
    aa.check_close(ALICE, view())
    with pytest.raises(Forbidden):
        aa.check_close(BOB, view())
    for state in (aa.CLOSED, aa.SETTLED, aa.VOID):
        with pytest.raises(InvalidParam):
            aa.check_close(ALICE, view(state=state))


def test_edits_are_refused():
    edit = {
        "msgtype": "m.text",
        "body": "* x",
        "m.new_content": {"msgtype": "m.text", "body": "x"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$req"},
    }
    aa.check_not_an_aa_edit(edit, target_is_aa=False)
    with pytest.raises(Forbidden):
        aa.check_not_an_aa_edit(edit, target_is_aa=True)
    sneaky = {**edit, "m.new_content": payment().content("x")}
    with pytest.raises(Forbidden):
        aa.check_not_an_aa_edit(sneaky, target_is_aa=False)
    aa.check_not_an_aa_edit({"msgtype": "m.text", "body": "plain"}, target_is_aa=True)


def test_bodies():
    assert aa.payment_body("Bob", "Alice", payment(), "Dinner") == (
        "Bob paid Alice CNY 33.33 for AA: Dinner (via testpay)"
    )
    assert (
        aa.close_body("Alice", view(paid=(ALICE, BOB))) == "Alice closed AA: Dinner (2 of 3 paid)"
    )
    assert aa.reminder_body(view(), {BOB: "Bob", CAROL: "Carol"}) == (
        "Reminder for AA: Dinner — still unpaid: Bob CNY 33.33, Carol CNY 33.33"
    )


# --- who may name whom, and who may void what ---

people = st.sampled_from([ALICE, BOB, CAROL, DAVE])


@given(
    kind=st.sampled_from(["request", "payment", "close"]),
    sender=people,
    payee=people,
    payer=people,
    same_room=st.booleans(),
)
def test_a_redaction_voids_only_with_the_authority_of_its_kind(
    kind, sender, payee, payer, same_room
):
    room = "!r:a.test"
    voids = aa.redaction_voids(kind, room if same_room else "!other:a.test", room, sender, payee,
                               payer if kind == "payment" else None)  # fmt: skip
    allowed = {"request": {payee}, "close": {payee}, "payment": {payee, payer}}[kind]
    assert voids == (same_room and sender in allowed)


def test_a_moderator_who_owes_cannot_void_the_bill():
    room = "!r:a.test"
    assert not aa.redaction_voids("request", room, room, BOB, ALICE)  # BOB owes, moderates
    assert not aa.redaction_voids("close", room, room, BOB, ALICE)
    assert not aa.redaction_voids("payment", room, room, CAROL, ALICE, BOB)  # a third party
    assert aa.redaction_voids("payment", room, room, BOB, ALICE, BOB)
    assert not aa.redaction_voids("request", "!elsewhere:a.test", room, ALICE, ALICE)


def test_a_bill_names_only_members_who_joined_by_their_own_join():
    from rooms.validation import own_join

    req = aa.AARequest("Dinner", "CNY", 200, ALICE, {ALICE: 100, BOB: 100})
    # BOB's membership is a join, but someone else sent it: he did not choose to be there.
    joined = {u for u, sender in ((ALICE, ALICE), (BOB, CAROL)) if own_join("join", sender, u)}
    with pytest.raises(InvalidParam) as e:
        aa.check_request_context(req, ALICE, joined)
    assert e.value.errcode == "M_INVALID_PARAM" and BOB in e.value.sentence
    aa.check_request_context(req, ALICE, {ALICE, BOB})
    assert not own_join("invite", BOB, BOB) and not own_join("join", None, BOB)
