"""The module's Prometheus metrics on Synapse's own metrics endpoint (the test servers enable it
on their client listener), counted by real calls. docs/operations.md lists them."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from urllib.parse import quote

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.client import MatrixClient, MatrixError
from tests.harness.metrics import Delta, scrape
from tests.harness.msisdn import new_number, request_token


def test_every_metric_is_exported(hs1):
    text, _ = scrape(hs1)
    kinds = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert {name: kinds.get(name) for name in EXPECTED} == EXPECTED


EXPECTED = {
    "laiwang_http_requests": "counter",
    "laiwang_http_request_duration_seconds": "histogram",
    "laiwang_policy_refusals": "counter",
    "laiwang_aa_events": "counter",
    "laiwang_sms_texts": "counter",
    "laiwang_update_failures": "counter",
    "laiwang_update_retries": "counter",
    "laiwang_reconcile_repairs": "counter",
}


def test_requests_are_counted_per_route_template_and_status(hs1):
    user = hs1.new_user("metrics")
    room = f"!nowhere{secrets.token_hex(4)}:{hs1.server_name}"
    event = f"$nothing{secrets.token_hex(4)}"

    def calls() -> None:
        user.laiwang("GET", "/settings")
        r = hs1.anonymous().laiwang_raw("GET", "/settings")
        assert (r.status_code, r.json()["errcode"]) == (401, "M_MISSING_TOKEN")
        r = user.laiwang_raw("GET", "/no-such-thing")
        assert (r.status_code, r.json()["errcode"]) == (404, "M_UNRECOGNIZED")
        r = user.laiwang_raw("GET", f"/aa/requests/{quote(room)}/{quote(event)}")
        assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND"), r.text

    delta = Delta(hs1, calls)
    requests_total = "laiwang_http_requests_total"
    assert delta(requests_total, method="GET", endpoint="/settings", status="200") == 1
    assert delta(requests_total, method="GET", endpoint="/settings", status="401") == 1
    assert delta(requests_total, method="GET", endpoint="unrecognized", status="404") == 1
    aa_details = "/aa/requests/{room_id}/{event_id}"
    assert delta(requests_total, method="GET", endpoint=aa_details, status="404") == 1
    durations = "laiwang_http_request_duration_seconds_count"
    assert delta(durations, method="GET", endpoint="/settings") == 2
    # Labels never carry what a request names: no room, event or user id, no raw path.
    for secret in (room, event, quote(room), user.user_id, "no-such-thing"):
        assert secret not in delta.text


def forbidden(call: Callable[[], object]) -> None:
    with pytest.raises(MatrixError) as e:
        call()
    assert (e.value.status, e.value.errcode) == (403, "M_FORBIDDEN"), e.value.body


def test_local_invite_refusals_are_counted_by_kind(hs1):
    alice, bob = hs1.new_user("alice"), hs1.new_user("bob")
    room = alice.create_room(preset="private_chat")
    delta = Delta(hs1, lambda: forbidden(lambda: alice.invite(room, bob.user_id)))
    refusals = "laiwang_policy_refusals_total"
    assert delta(refusals, check="invite", reason="stranger", origin="local") == 1


@pytest.mark.federation
def test_remote_contact_request_refusal_is_counted_on_the_invitees_server(hs1, hs2):
    alice, stranger = hs1.new_user("alice"), hs2.new_user("stranger")

    def ask() -> None:
        # alice lets only her address book ask (the default): the request reaches hs1, which
        # refuses it; hs2 passes the refusal on.
        forbidden(
            lambda: stranger.laiwang("POST", "/contacts/requests", {"user_id": alice.user_id})
        )

    delta = Delta(hs1, ask)
    refusals = "laiwang_policy_refusals_total"
    labels = {"check": "federated_invite", "reason": "request_not_accepted", "origin": "remote"}
    assert delta(refusals, **labels) == 1


def test_aa_events_and_event_refusals_are_counted(hs1):
    alice, bob = hs1.new_user("alice"), hs1.new_user("bob")
    room = alice.create_room(preset="public_chat")
    bob.join(room)

    def ask_and_break_a_rule() -> None:
        body = {
            "room_id": room,
            "title": "Dinner",
            "currency": "CNY",
            "total": 1000,
            "split": "equal",
            "participants": [alice.user_id, bob.user_id],
        }
        alice.laiwang("POST", "/aa/requests", body)
        with pytest.raises(MatrixError) as e:
            bob.send(room, {"msgtype": "org.laiwang.aa.bogus", "body": "x"})
        assert (e.value.status, e.value.errcode) == (403, "M_INVALID_PARAM")

    delta = Delta(hs1, ask_and_break_a_rule)
    assert delta("laiwang_aa_events_total", kind="request", origin="local") == 1
    refusals = "laiwang_policy_refusals_total"
    assert delta(refusals, check="aa_event", reason="M_INVALID_PARAM", origin="local") == 1


def test_texts_sent_are_counted(hs1):
    user: MatrixClient = hs1.new_user("phone")
    national, _ = new_number()
    delta = Delta(hs1, lambda: request_token(user, national, secrets.token_hex(8)))
    # Synapse calls the module (its msisdn delegate) before it answers: the text is counted.
    assert delta("laiwang_sms_texts_total", sender="log", result="sent") == 1
