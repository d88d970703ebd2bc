"""The module's commerce side against the real commerce mock (shared by hs1 and hs2): account
links, item and music cards, subscriptions, and AA provider payments charged through the mock —
once, whatever the retries, and never an event without a charge."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any
from urllib.parse import quote

import pytest

from devtools.commerce import CommerceClient, CommerceError, MockProcess
from rooms.commerce import payment_idempotency_key
from tests.e2e.test_aa import ask, path
from tests.harness.client import MatrixClient, MatrixError, wait_until
from tests.harness.servers import TestHomeserver, execute, sql

MSGTYPE_ITEM = "org.laiwang.share.item"
MSGTYPE_MUSIC = "org.laiwang.share.music"
NOT_LINKED = "ORG.LAIWANG.COMMERCE_NOT_LINKED"
UNAVAILABLE = "ORG.LAIWANG.COMMERCE_UNAVAILABLE"


@pytest.fixture
def shop(commerce_mock: MockProcess) -> CommerceClient:
    return commerce_mock.client()


def linked(shop: CommerceClient, user: MatrixClient) -> str:
    """A new account at the shop, linked through the module as a person does it."""
    created = shop.post("/v1/accounts", {"display_name": user.user_id})
    answer = user.laiwang("POST", "/commerce/link", {"token": created["link_token"]})
    assert answer == {"account_id": created["account_id"]}
    return str(created["account_id"])


def payments_of(shop: CommerceClient, account_id: str) -> int:
    return int(shop.get(f"/v1/accounts/{account_id}")["payment_count"])


def posted(user: MatrixClient, room: str, msgtype: str) -> list[dict[str, Any]]:
    return [e for e in user.messages(room) if e.get("content", {}).get("msgtype") == msgtype]


def expect_error(call: Any, status: int, errcode: str) -> MatrixError:
    with pytest.raises(MatrixError) as e:
        call()
    assert (e.value.status, e.value.errcode) == (status, errcode), e.value.body
    return e.value


# --- links --------------------------------------------------------------------------------


def test_link_get_and_unlink(hs1: TestHomeserver, shop: CommerceClient) -> None:
    user = hs1.new_user()
    expect_error(lambda: user.laiwang("GET", "/commerce/link"), 404, "M_NOT_FOUND")
    created = shop.post("/v1/accounts", {"display_name": "Li"})
    token = created["link_token"]
    assert user.laiwang("POST", "/commerce/link", {"token": token}) == {
        "account_id": created["account_id"]
    }
    assert user.laiwang("GET", "/commerce/link") == {"account_id": created["account_id"]}
    assert shop.get(f"/v1/links/{quote(user.user_id)}")["account_id"] == created["account_id"]
    # A token works once, for anyone.
    other = hs1.new_user()
    expect_error(
        lambda: other.laiwang("POST", "/commerce/link", {"token": token}), 400, "M_INVALID_PARAM"
    )
    expect_error(lambda: other.laiwang("GET", "/commerce/link"), 404, "M_NOT_FOUND")
    assert user.laiwang("DELETE", "/commerce/link") == {}
    expect_error(lambda: user.laiwang("GET", "/commerce/link"), 404, "M_NOT_FOUND")
    expect_error(lambda: user.laiwang("DELETE", "/commerce/link"), 404, "M_NOT_FOUND")


@pytest.mark.parametrize(
    "body, errcode",
    [
        ({}, "M_MISSING_PARAM"),
        ({"token": 5}, "M_INVALID_PARAM"),
        ({"token": ""}, "M_INVALID_PARAM"),
        ({"token": "a b"}, "M_INVALID_PARAM"),
        ({"token": "x" * 300}, "M_INVALID_PARAM"),
        ({"token": "abc", "extra": 1}, "M_INVALID_PARAM"),
    ],
)
def test_bad_link_bodies(hs1: TestHomeserver, body: dict[str, Any], errcode: str) -> None:
    user = hs1.new_user()
    expect_error(lambda: user.laiwang("POST", "/commerce/link", body), 400, errcode)
    expect_error(lambda: user.laiwang("GET", "/commerce/link"), 404, "M_NOT_FOUND")


# --- cards --------------------------------------------------------------------------------


def test_an_item_card_by_id_and_by_url_reuses_one_image(
    hs1: TestHomeserver, commerce_mock: MockProcess, shop: CommerceClient
) -> None:
    user = hs1.new_user()
    room = user.create_room()
    item = shop.get("/v1/items/item3")
    first = user.laiwang("POST", "/shares/item", {"room_id": room, "item_id": "item3"})
    by_url = {"room_id": room, "url": f"{commerce_mock.base_url}/item/item3"}
    second = user.laiwang("POST", "/shares/item", by_url)
    events = {e["event_id"]: e["content"] for e in posted(user, room, MSGTYPE_ITEM)}
    a, b = events[first["event_id"]], events[second["event_id"]]
    card = a[MSGTYPE_ITEM]
    assert card["item_id"] == "item3" and card["title"] == item["title"]
    assert card["price"] == item["price"] and card["bought"] is False
    assert card["shop_id"] == item["shop_id"] and card["url"] == item["url"]
    assert card["image"].startswith("mxc://")
    assert b[MSGTYPE_ITEM]["image"] == card["image"]  # copied once, reused
    assert a["com.beeper.linkpreviews"][0]["og:image"] == card["image"]
    assert item["title"] in a["body"] and item["url"] in a["body"]
    # The copy is a real PNG in the media repository.
    server, media_id = card["image"][len("mxc://") :].split("/")
    r = user.raw("GET", f"/_matrix/client/v1/media/download/{server}/{media_id}")
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
    rows = sql(
        hs1, "SELECT mxc FROM laiwang_commerce_media WHERE source_url = ?", item["image_url"]
    )
    assert rows == [(card["image"],)]


def test_bought_only_for_the_callers_own_order(hs1: TestHomeserver, shop: CommerceClient) -> None:
    buyer, other = hs1.new_user(), hs1.new_user()
    room = buyer.create_room(preset="public_chat")
    other.join(room)
    account = linked(shop, buyer)
    order = shop.delivered_order(account, "item5")
    share = {"room_id": room, "item_id": "item5", "order_id": order["order_id"]}
    buyer.laiwang("POST", "/shares/item", share)
    card = posted(buyer, room, MSGTYPE_ITEM)[0]["content"]
    assert card[MSGTYPE_ITEM]["bought"] is True
    assert card[MSGTYPE_ITEM]["order_id"] == order["order_id"]
    assert "(bought)" in card["body"]
    before = len(posted(buyer, room, MSGTYPE_ITEM))
    # Someone else's order, an order of another item, an unknown order: nothing is posted.
    expect_error(lambda: other.laiwang("POST", "/shares/item", share), 403, "M_FORBIDDEN")
    wrong_item = {**share, "item_id": "item6"}
    expect_error(lambda: buyer.laiwang("POST", "/shares/item", wrong_item), 403, "M_FORBIDDEN")
    unknown = {**share, "order_id": "no-such-order"}
    expect_error(lambda: buyer.laiwang("POST", "/shares/item", unknown), 404, "M_NOT_FOUND")
    assert len(posted(buyer, room, MSGTYPE_ITEM)) == before


def test_a_music_card(
    hs1: TestHomeserver, commerce_mock: MockProcess, shop: CommerceClient
) -> None:
    user = hs1.new_user()
    room = user.create_room()
    track = shop.get("/v1/tracks/track2")
    user.laiwang("POST", "/shares/music", {"room_id": room, "track_id": "track2"})
    by_url = {"room_id": room, "url": f"{commerce_mock.base_url}/track/track2"}
    user.laiwang("POST", "/shares/music", by_url)
    cards = [e["content"] for e in posted(user, room, MSGTYPE_MUSIC)]
    assert len(cards) == 2
    music = cards[0][MSGTYPE_MUSIC]
    assert (music["title"], music["artist"], music["url"]) == (
        track["title"],
        track["artist"],
        track["url"],
    )
    assert (
        music["cover"].startswith("mxc://") and cards[1][MSGTYPE_MUSIC]["cover"] == music["cover"]
    )
    assert cards[0]["body"].startswith("[Music] ")


R = "ROOM"  # replaced by the test's room


@pytest.mark.parametrize(
    "endpoint, body, status, errcode",
    [
        ("/shares/item", {"item_id": "item1"}, 400, "M_MISSING_PARAM"),
        ("/shares/item", {"room_id": "nope", "item_id": "item1"}, 400, "M_INVALID_PARAM"),
        ("/shares/item", {"room_id": R, "item_id": "item1", "url": "http://x/item/1"}, 400, "M_INVALID_PARAM"),
        ("/shares/item", {"room_id": R, "url": "https://elsewhere.example/item/item1"}, 400, "M_INVALID_PARAM"),
        ("/shares/item", {"room_id": R, "url": "ftp://x/item/1"}, 400, "M_INVALID_PARAM"),
        ("/shares/item", {"room_id": R, "item_id": 7}, 400, "M_INVALID_PARAM"),
        ("/shares/item", {"room_id": R, "item_id": "no-such-item"}, 404, "M_NOT_FOUND"),
        ("/shares/item", {"room_id": R, "item_id": "item1", "order_id": ["x"]}, 400, "M_INVALID_PARAM"),
        ("/shares/music", {"room_id": R, "track_id": "no-such-track"}, 404, "M_NOT_FOUND"),
        ("/shares/music", {"room_id": R, "track_id": "track1", "order_id": "o"}, 400, "M_INVALID_PARAM"),
        ("/shares/music", {"room_id": R}, 400, "M_INVALID_PARAM"),
    ],
)  # fmt: skip
def test_bad_card_requests_post_nothing(
    hs1: TestHomeserver, endpoint: str, body: dict[str, Any], status: int, errcode: str
) -> None:
    user = hs1.new_user()
    room = user.create_room()
    body = {k: room if v == R else v for k, v in body.items()}
    expect_error(lambda: user.laiwang("POST", endpoint, body), status, errcode)
    assert posted(user, room, MSGTYPE_ITEM) == posted(user, room, MSGTYPE_MUSIC) == []


@pytest.mark.parametrize(
    "endpoint, body",
    [("/shares/item", {"item_id": "item1"}), ("/shares/music", {"track_id": "track1"})],
)
def test_cards_only_into_rooms_the_caller_is_in(
    hs1: TestHomeserver, endpoint: str, body: dict[str, Any]
) -> None:
    owner, stranger = hs1.new_user(), hs1.new_user()
    room = owner.create_room(preset="public_chat")
    request = {"room_id": room, **body}
    expect_error(lambda: stranger.laiwang("POST", endpoint, request), 403, "M_FORBIDDEN")
    assert posted(owner, room, MSGTYPE_ITEM) == posted(owner, room, MSGTYPE_MUSIC) == []


# --- subscriptions --------------------------------------------------------------------------


def test_subscribing_is_joining_the_shops_room(hs1: TestHomeserver) -> None:
    user = hs1.new_user()
    # No room for the shop yet (the commerce bridge makes them): a clear 404.
    expect_error(
        lambda: user.laiwang("PUT", "/commerce/subscriptions/bookworm"), 404, "M_NOT_FOUND"
    )
    room = _shop_room(hs1, "teahouse")
    got = user.laiwang("PUT", "/commerce/subscriptions/teahouse")
    assert got["room_id"] == room and got["shop_id"] == "teahouse" and got["name"]
    assert user.membership(room, user.user_id) == "join"
    subs = user.laiwang("GET", "/commerce/subscriptions")["subscriptions"]
    assert subs == [{"shop_id": "teahouse", "name": got["name"], "room_id": room}]
    assert user.laiwang("DELETE", "/commerce/subscriptions/teahouse") == {}
    assert user.membership(room, user.user_id) == "leave"
    assert user.laiwang("GET", "/commerce/subscriptions")["subscriptions"] == []
    # A shop the service does not have; a shop id that cannot be one.
    expect_error(lambda: user.laiwang("PUT", "/commerce/subscriptions/nope"), 404, "M_NOT_FOUND")
    expect_error(
        lambda: user.laiwang("PUT", "/commerce/subscriptions/a%20b"), 400, "M_INVALID_PARAM"
    )


def _shop_room(hs: TestHomeserver, shop_id: str) -> str:
    """The shop's room, as the commerce bridge keeps it: public, `#shop_<id>:<server>` (a
    stand-in made by a user of this test, once per session)."""
    keeper = hs.new_user("keeper")
    alias = f"#shop_{shop_id}:{hs.server_name}"
    r = keeper.raw("GET", f"/_matrix/client/v3/directory/room/{quote(alias)}")
    if r.status_code == 200:
        return str(r.json()["room_id"])
    return keeper.create_room(preset="public_chat", room_alias_name=f"shop_{shop_id}")


# --- provider payments ----------------------------------------------------------------------


def bill(hs: TestHomeserver, shop: CommerceClient) -> tuple[str, str, MatrixClient, MatrixClient]:
    """alice (payee) and bob, both linked, in a room; bob owes CNY 50.00."""
    alice, bob = hs.new_user("alice"), hs.new_user("bob")
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    linked(shop, alice)
    request = ask(alice, room, [alice.user_id, bob.user_id])["event_id"]
    return room, request, alice, bob


def payment_events(user: MatrixClient, room: str) -> list[dict[str, Any]]:
    return posted(user, room, "org.laiwang.aa.payment")


def test_a_provider_payment_charges_once_and_posts_the_receipt(
    hs1: TestHomeserver, shop: CommerceClient
) -> None:
    room, request, alice, bob = bill(hs1, shop)
    account = linked(shop, bob)
    paid = bob.laiwang("POST", path(room, request, "pay"), {"method": "provider"})
    assert (paid["payer"], paid["amount"], paid["method"]) == (bob.user_id, 5000, "provider")
    [event] = payment_events(bob, room)
    receipt = event["content"]["org.laiwang.aa.payment"]["receipt"]
    assert receipt["provider"] == "laiwang-pay" and receipt["payer"] == bob.user_id
    assert receipt["payee"] == alice.user_id and receipt["amount"] == 5000
    assert payments_of(shop, account) == 1
    # A retry answers the same payment and charges nothing.
    again = bob.laiwang("POST", path(room, request, "pay"), {"method": "provider"})
    assert again == paid and payments_of(shop, account) == 1
    assert len(payment_events(bob, room)) == 1
    status = alice.laiwang("GET", path(room, request))
    assert status["state"] == "settled"


def test_six_concurrent_provider_payments_charge_once(
    hs1: TestHomeserver, shop: CommerceClient
) -> None:
    room, request, _, bob = bill(hs1, shop)
    account = linked(shop, bob)
    results: list[Any] = []

    def pay() -> None:
        r = bob.laiwang_raw("POST", path(room, request, "pay"), {"method": "provider"})
        results.append((r.status_code, r.json()))

    threads = [threading.Thread(target=pay) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {status for status, _ in results} <= {200, 429}
    assert any(status == 200 for status, _ in results)
    # The 429s were told to retry: the retry gets the one payment.
    final = bob.laiwang("POST", path(room, request, "pay"), {"method": "provider"})
    assert all(body == final for status, body in results if status == 200)
    assert payments_of(shop, account) == 1
    assert len(payment_events(bob, room)) == 1


def test_an_unlinked_payee_or_payer_is_told_before_any_charge(
    hs1: TestHomeserver, shop: CommerceClient
) -> None:
    alice, bob = hs1.new_user("alice"), hs1.new_user("bob")
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    request = ask(alice, room, [alice.user_id, bob.user_id])["event_id"]
    pay = path(room, request, "pay")
    error = expect_error(lambda: bob.laiwang("POST", pay, {"method": "provider"}), 409, NOT_LINKED)
    assert error.body["user_id"] == alice.user_id  # the payee: bob's account was not checked
    account = linked(shop, alice)
    error = expect_error(lambda: bob.laiwang("POST", pay, {"method": "provider"}), 409, NOT_LINKED)
    assert error.body["user_id"] == bob.user_id
    assert payments_of(shop, account) == 0 and payment_events(bob, room) == []
    # Someone else's share through the provider: refused before anything.
    expect_error(
        lambda: alice.laiwang("POST", pay, {"method": "provider", "payer": bob.user_id}),
        403,
        "M_FORBIDDEN",
    )


def test_a_stopped_service_gives_503_in_time_and_the_retry_finishes(
    hs1: TestHomeserver, commerce_mock: MockProcess, shop: CommerceClient
) -> None:
    room, request, _, bob = bill(hs1, shop)
    account = linked(shop, bob)
    commerce_mock.stop()
    try:
        start = time.monotonic()
        expect_error(
            lambda: bob.laiwang("POST", path(room, request, "pay"), {"method": "provider"}),
            503,
            UNAVAILABLE,
        )
        assert time.monotonic() - start < 5  # commerce.timeout is 3s
    finally:
        commerce_mock.start()
    assert payment_events(bob, room) == [] and payments_of(shop, account) == 0
    bob.laiwang("POST", path(room, request, "pay"), {"method": "provider"})
    assert payments_of(shop, account) == 1 and len(payment_events(bob, room)) == 1


def test_a_hung_service_times_out_and_the_late_charge_is_not_repeated(
    hs1: TestHomeserver, commerce_mock: MockProcess, shop: CommerceClient
) -> None:
    """The service takes the charge but answers after the timeout (here: frozen, then thawed):
    the caller gets 503 and nothing is posted; the retry gets the same receipt, no new charge."""
    room, request, _, bob = bill(hs1, shop)
    account = linked(shop, bob)
    assert commerce_mock.proc is not None
    pid = commerce_mock.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        expect_error(
            lambda: bob.laiwang("POST", path(room, request, "pay"), {"method": "provider"}),
            503,
            UNAVAILABLE,
        )
        assert time.monotonic() - start < 5
    finally:
        os.kill(pid, signal.SIGCONT)
    assert payment_events(bob, room) == []
    # The frozen service now handles the request it had queued (or not); either way one charge.
    bob.laiwang("POST", path(room, request, "pay"), {"method": "provider"})
    assert payments_of(shop, account) == 1 and len(payment_events(bob, room)) == 1


def test_a_charge_whose_event_was_never_sent_is_finished_by_the_job(
    hs1: TestHomeserver, shop: CommerceClient
) -> None:
    """As if `pay` died between the charge and the event: the row has a receipt and no event."""
    room, request, alice, bob = bill(hs1, shop)
    account = linked(shop, bob)
    key = payment_idempotency_key(room, request, bob.user_id)
    body = {
        "payer": bob.user_id,
        "payee": alice.user_id,
        "amount": 5000,
        "currency": "CNY",
        "room_id": room,
        "event_id": request,
    }
    receipt = shop.post("/v1/payments", body, headers={"Idempotency-Key": key})["receipt"]
    execute(
        hs1,
        "INSERT INTO laiwang_commerce_payments (idempotency_key, room_id, request_event_id,"
        " payer, receipt, created_ts, updated_ts) VALUES (?, ?, ?, ?, ?, 0, 0)",
        key,
        room,
        request,
        bob.user_id,
        json.dumps(receipt),
    )
    wait_until(lambda: payment_events(bob, room) or None, timeout=40, interval=1)
    [event] = payment_events(bob, room)
    assert event["sender"] == bob.user_id
    assert (
        event["content"]["org.laiwang.aa.payment"]["receipt"]["receipt_id"] == receipt["receipt_id"]
    )
    assert payments_of(shop, account) == 1
    # The user's own retry now answers that payment.
    paid = bob.laiwang("POST", path(room, request, "pay"), {"method": "provider"})
    assert paid["event_id"] == event["event_id"]


def test_a_provider_payment_across_servers(
    hs1: TestHomeserver, hs2: TestHomeserver, shop: CommerceClient
) -> None:
    """The payee on hs1, the payer on hs2: hs1 checks the mock's receipt on the federated
    payment and settles the bill."""
    alice, bob = hs1.new_user("alice"), hs2.new_user("bob")
    room = alice.create_room(preset="public_chat")
    bob.join(room, via=[hs1.server_name])
    linked(shop, alice)
    account = linked(shop, bob)
    wait_until(lambda: bob.user_id in alice.joined_members(room) or None)
    request = ask(alice, room, [alice.user_id, bob.user_id])["event_id"]
    wait_until(lambda: _has_event(bob, room, request) or None)
    bob.laiwang("POST", path(room, request, "pay"), {"method": "provider"})
    wait_until(lambda: alice.laiwang("GET", path(room, request))["state"] == "settled" or None)
    assert payments_of(shop, account) == 1


def _has_event(user: MatrixClient, room: str, event_id: str) -> bool:
    try:
        user.event(room, event_id)
    except MatrixError:
        return False
    return True


def test_the_mock_refuses_a_wrong_api_key(commerce_mock: MockProcess) -> None:
    with pytest.raises(CommerceError) as e:
        commerce_mock.client("wrong").get("/v1/shops")
    assert (e.value.status, e.value.errcode) == (401, "M_UNKNOWN_TOKEN")


def test_the_service_killed_mid_payment_charges_once_after_it_returns(
    hs1: TestHomeserver, commerce_mock: MockProcess, shop: CommerceClient
) -> None:
    """kill -9 while the charge is in flight (frozen first, so the request is surely queued):
    the caller gets 503, nothing is posted; after the restart the retry charges once."""
    room, request, _, bob = bill(hs1, shop)
    account = linked(shop, bob)
    assert commerce_mock.proc is not None
    os.kill(commerce_mock.proc.pid, signal.SIGSTOP)
    try:
        expect_error(
            lambda: bob.laiwang("POST", path(room, request, "pay"), {"method": "provider"}),
            503,
            UNAVAILABLE,
        )
    finally:
        os.kill(commerce_mock.proc.pid, signal.SIGKILL)
        commerce_mock.proc.wait()
        commerce_mock.start()
    assert payment_events(bob, room) == [] and payments_of(shop, account) == 0
    paid = bob.laiwang("POST", path(room, request, "pay"), {"method": "provider"})
    assert paid["method"] == "provider"
    assert payments_of(shop, account) == 1 and len(payment_events(bob, room)) == 1
