"""Bad input a fuzzer does not produce: Unicode digits, confusables, empty and very long
strings, deep nesting, duplicate keys, broken UTF-8 and lone surrogates, huge, negative and
float numbers. Each gets its exact Matrix 4xx error and changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import attr
import pytest

from tests.harness.client import MatrixClient
from tests.harness.servers import TestHomeserver
from tests.harness.social import make_acquainted

CYRILLIC_A = "\u0430"  # looks like "a"
CYRILLIC_ES = "\u0441"  # looks like "c"


@attr.s(frozen=True, slots=True, auto_attribs=True)
class World:
    user: MatrixClient
    peer: MatrixClient
    room: str
    bill: str
    cluster: str


@pytest.fixture(scope="module")
def world(hs1: TestHomeserver) -> Iterator[World]:
    user, peer = hs1.new_user("bad"), hs1.new_user("badpeer")
    make_acquainted(user, peer)
    room = user.create_room(preset="public_chat")
    peer.join(room)
    bill = user.laiwang("POST", "/aa/requests", aa_body(room, user, peer))["event_id"]
    cluster = user.laiwang("POST", "/clusters", {"topic": "bad input"})["room_id"]
    yield World(user, peer, room, bill, cluster)


def aa_body(room: str, user: MatrixClient, peer: MatrixClient, **fields: Any) -> dict[str, Any]:
    return {
        "room_id": room,
        "title": "Dinner",
        "currency": "CNY",
        "total": 1000,
        "participants": [user.user_id, peer.user_id],
        **fields,
    }


def snapshot(w: World) -> dict[str, Any]:
    """Everything the refused requests could have changed."""
    u = w.user
    return {
        "settings": u.laiwang("GET", "/settings"),
        "contacts": u.laiwang("GET", "/contacts"),
        "requests": u.laiwang("GET", "/contacts/requests"),
        "clusters": u.laiwang("GET", "/clusters"),
        "balances": u.laiwang("GET", "/aa/balances"),
        "bill": u.laiwang("GET", f"/aa/requests/{quote(w.room)}/{quote(w.bill)}"),
        "room": [e["event_id"] for e in u.messages(w.room)],
        "cluster": [e["event_id"] for e in u.messages(w.cluster)],
    }


# (name, method, path, request, status, errcode). `request` is a JSON body, bytes sent as they
# are, or a dict {"params": …} of query parameters; paths may name {room}, {bill}, {cluster},
# {peer}, {user} (filled in percent-encoded).
LONG = "x" * 5000
CASES: list[tuple[str, str, str, Any, int, str]] = [
    # Unicode digits and other non-ASCII numbers in query parameters.
    *(
        (f"{path} limit={raw!r}", "GET", path, {"params": {"limit": raw}}, 400, "M_INVALID_PARAM")
        for path in ("/feed", "/clusters/discover")
        for raw in ("²", "٣", "３", "1.5", "-1", "1e2", " 1", "0", "101", "9" * 5000)
    ),
    ("feed from empty", "GET", "/feed", {"params": {"from": ""}}, 400, "M_INVALID_PARAM"),
    ("feed from long", "GET", "/feed", {"params": {"from": LONG}}, 400, "M_INVALID_PARAM"),
    ("feed from ²", "GET", "/feed", {"params": {"from": "²"}}, 400, "M_INVALID_PARAM"),
    ("feed from not UTF-8", "GET", "/feed?from=%FF", None, 400, "M_INVALID_PARAM"),
    (
        "discover limit empty",
        "GET",
        "/clusters/discover",
        {"params": {"limit": ""}},
        400,
        "M_INVALID_PARAM",
    ),
    # Confusables: look-alike letters are other characters.
    (
        "request to a confusable id",
        "POST",
        "/contacts/requests",
        {"user_id": f"@{CYRILLIC_A}lice:localhost"},
        400,
        "M_INVALID_PARAM",
    ),
    (
        "request to a fullwidth @",
        "POST",
        "/contacts/requests",
        {"user_id": "＠alice:localhost"},
        400,
        "M_INVALID_PARAM",
    ),
    (
        "remove a confusable id",
        "DELETE",
        f"/contacts/{quote('@' + CYRILLIC_A + ':localhost')}",
        None,
        400,
        "M_INVALID_PARAM",
    ),
    (
        "confusable setting",
        "PUT",
        "/settings",
        {"accept_requests_from": f"{CYRILLIC_A}nyone"},
        400,
        "M_INVALID_PARAM",
    ),
    (
        "confusable currency",
        "POST",
        "/aa/requests",
        {"currency": f"{CYRILLIC_ES}NY"},
        400,
        "M_INVALID_PARAM",
    ),
    (
        "confusable algorithm",
        "POST",
        "/discovery/lookup",
        {"algorithm": f"sh{CYRILLIC_A}256", "pepper": "x", "addresses": []},
        400,
        "M_INVALID_PARAM",
    ),
    (
        "confusable via",
        "POST",
        "/clusters/{cluster}/join",
        {"via": [f"ex{CYRILLIC_A}mple.org"]},
        400,
        "M_INVALID_PARAM",
    ),
    (
        "confusable pay method",
        "POST",
        "/aa/requests/{room}/{bill}/pay",
        {"method": f"{CYRILLIC_ES}ash", "payer": "{peer}"},
        400,
        "M_INVALID_PARAM",
    ),
    (
        "confusable room id",
        "GET",
        f"/clusters/{quote('!' + CYRILLIC_A + ':localhost')}/tree",
        None,
        400,
        "M_INVALID_PARAM",
    ),
    # Empty strings.
    ("empty topic", "POST", "/clusters", {"topic": ""}, 400, "M_INVALID_PARAM"),
    ("blank topic", "POST", "/clusters", {"topic": " \t "}, 400, "M_INVALID_PARAM"),
    ("empty title", "POST", "/aa/requests", {"title": ""}, 400, "M_INVALID_PARAM"),
    ("empty user id", "POST", "/contacts/requests", {"user_id": ""}, 400, "M_INVALID_PARAM"),
    (
        "empty room id",
        "POST",
        "/shares/forward",
        {"room_id": "", "event_id": "$e"},
        400,
        "M_INVALID_PARAM",
    ),
    ("empty key", "PUT", "/settings", {"": True}, 400, "M_INVALID_PARAM"),
    ("empty path parameter", "DELETE", "/contacts/", None, 404, "M_UNRECOGNIZED"),
    # Very long strings.
    ("long topic", "POST", "/clusters", {"topic": "x" * 201}, 400, "M_INVALID_PARAM"),
    ("long title", "POST", "/aa/requests", {"title": "x" * 201}, 400, "M_INVALID_PARAM"),
    (
        "long message",
        "POST",
        "/contacts/requests",
        {"user_id": "{peer}", "message": "x" * 501},
        400,
        "M_INVALID_PARAM",
    ),
    (
        "long comment",
        "POST",
        "/shares/forward",
        {"room_id": "{room}", "event_id": "{bill}", "comment": "x" * 2001},
        400,
        "M_INVALID_PARAM",
    ),
    (
        "long user id",
        "POST",
        "/contacts/requests",
        {"user_id": f"@{LONG}:localhost"},
        400,
        "M_INVALID_PARAM",
    ),
    ("long path room id", "GET", f"/clusters/!{LONG}:localhost/tree", None, 400, "M_INVALID_PARAM"),
    (
        "long server label",
        "POST",
        "/contacts/requests",
        {"user_id": f"@a:{'0' * 64}.org"},
        400,
        "M_INVALID_PARAM",
    ),
    ("body over the limit", "POST", "/clusters", {"topic": "x" * 70000}, 413, "M_TOO_LARGE"),
    # Deep nesting.
    (
        "nesting too deep to parse",
        "PUT",
        "/settings",
        b'{"discoverable": ' + b"[" * 20000 + b"]" * 20000 + b"}",
        400,
        "M_NOT_JSON",
    ),
    (
        "nested topic",
        "POST",
        "/clusters",
        {"topic": json.loads("[" * 100 + "]" * 100)},
        400,
        "M_INVALID_PARAM",
    ),
    ("nested bracket body", "PUT", "/settings", b"[" * 100000, 413, "M_TOO_LARGE"),
    # Duplicate keys.
    (
        "duplicate key",
        "PUT",
        "/settings",
        b'{"discoverable": true, "discoverable": false}',
        400,
        "M_BAD_JSON",
    ),
    (
        "nested duplicate key",
        "POST",
        "/aa/requests/{room}/{bill}/close",
        b'{"a": {"b": 1, "b": 2}}',
        400,
        "M_BAD_JSON",
    ),
    # Broken UTF-8 and lone surrogates.
    ("invalid UTF-8", "PUT", "/settings", b'{"accept_requests_from": "\xff"}', 400, "M_NOT_JSON"),
    ("overlong UTF-8", "POST", "/clusters", b'{"topic": "\xc0\xaf"}', 400, "M_NOT_JSON"),
    ("lone surrogate topic", "POST", "/clusters", b'{"topic": "a\\ud800"}', 400, "M_NOT_JSON"),
    (
        "lone surrogate message",
        "POST",
        "/contacts/requests",
        b'{"user_id": "@a:localhost", "message": "\\udfff"}',
        400,
        "M_NOT_JSON",
    ),
    ("lone surrogate key", "PUT", "/settings", b'{"\\ud800": 1}', 400, "M_NOT_JSON"),
    # Huge, negative and float numbers.
    *(
        (f"total {raw!r}", "POST", "/aa/requests", {"total": raw}, 400, "M_INVALID_PARAM")
        for raw in (10**30, 2**53, -1000, 0, 10.5, 1000.0, "1000", True)
    ),
    ("total null", "POST", "/aa/requests", {"total": None}, 400, "M_MISSING_PARAM"),
    ("total 1e400", "POST", "/aa/requests", b"TOTAL 1e400", 400, "M_INVALID_PARAM"),
    ("total of 5000 digits", "POST", "/aa/requests", b"TOTAL " + b"9" * 5000, 400, "M_NOT_JSON"),
    ("total NaN", "POST", "/aa/requests", b"TOTAL NaN", 400, "M_NOT_JSON"),
    (
        "huge weight",
        "POST",
        "/aa/requests",
        {"split": "weights", "weights": {"{user}": 10**20, "{peer}": 1}},
        400,
        "M_INVALID_PARAM",
    ),
    (
        "float weight",
        "POST",
        "/aa/requests",
        {"split": "weights", "weights": {"{user}": 1.5, "{peer}": 1}},
        400,
        "M_INVALID_PARAM",
    ),
    (
        "negative amount",
        "POST",
        "/aa/requests",
        {"split": "exact", "amounts": {"{user}": 1100, "{peer}": -100}},
        400,
        "M_INVALID_PARAM",
    ),
    ("discoverable 1", "PUT", "/settings", {"discoverable": 1}, 400, "M_INVALID_PARAM"),
]


def fill(value: Any, w: World) -> Any:
    names = {
        "{room}": w.room,
        "{bill}": w.bill,
        "{cluster}": w.cluster,
        "{peer}": w.peer.user_id,
        "{user}": w.user.user_id,
    }
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, dict):
        return {fill(k, w): fill(v, w) for k, v in value.items()}
    return value


def send(w: World, method: str, path: str, request: Any) -> tuple[int, Any]:
    for name, value in (("{room}", w.room), ("{bill}", w.bill), ("{cluster}", w.cluster)):
        path = path.replace(name, quote(value))
    if isinstance(request, bytes):
        if request.startswith(b"TOTAL "):  # an AA request whose total is written as given
            good = json.dumps(aa_body(w.room, w.user, w.peer, total=0)).encode()
            request = good.replace(b'"total": 0', b'"total": ' + request[6:])
        r = w.user.laiwang_raw(method, path, data=request)
    elif isinstance(request, dict) and set(request) == {"params"}:
        r = w.user.laiwang_raw(method, path, params=request["params"])
    else:
        body = fill(request, w)
        if path == "/aa/requests":
            body = aa_body(w.room, w.user, w.peer, **body)
        r = w.user.laiwang_raw(method, path, body)
    return r.status_code, r.json()


@pytest.mark.parametrize(
    ("method", "path", "request_", "status", "errcode"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input_gets_its_matrix_error_and_changes_nothing(
    world: World, method: str, path: str, request_: Any, status: int, errcode: str
) -> None:
    before = snapshot(world)
    got, body = send(world, method, path, request_)
    assert (got, body.get("errcode")) == (status, errcode), body
    assert snapshot(world) == before
