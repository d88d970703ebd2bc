"""The commerce bridge with a real homeserver and a real mock: shop rooms, item posts reaching
subscribers, delivery notices to owners, and a restart that loses and doubles nothing."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from bridges.commerce_bridge.bridge import item_card, with_source
from devtools.commerce import BridgeProcess, CommerceClient, MockProcess
from tests.harness.client import MatrixClient, MatrixError, wait_until
from tests.harness.servers import TestHomeserver, start_all

ITEM = "org.laiwang.share.item"


class Setup:
    def __init__(self, hs: TestHomeserver, mock: MockProcess, bridge: BridgeProcess):
        self.hs, self.mock, self.bridge = hs, mock, bridge
        self.api: CommerceClient = mock.client()

    def shop_room(self, user: MatrixClient, shop_id: str) -> str:
        alias = f"#shop_{shop_id}:{self.hs.server_name}"
        found = user.call("GET", f"/_matrix/client/v3/directory/room/{quote(alias)}")
        return str(found["room_id"])

    def ghost(self, shop_id: str) -> str:
        return f"@shop_{shop_id}:{self.hs.server_name}"


@pytest.fixture(scope="module")
def setup(test_root: Path) -> Iterator[Setup]:
    root = test_root / "commerce-bridge"
    mock = MockProcess(root / "mock").start()
    # The module on this homeserver uses the same mock (subscriptions, cards, payments).
    module_config = {
        "commerce": {"base_url": mock.base_url, "api_key": mock.api_key},
        "payment_providers": {"laiwang-pay": {"verify_key": mock.print_("--print-verify-key")}},
    }
    hs = TestHomeserver(root / "hs", module_config=module_config)
    bridge = BridgeProcess(root / "bridge")
    registration = bridge.configure(hs.base_url, hs.server_name, mock)
    hs.spec.extra["app_service_config_files"] = [str(registration)]
    try:
        start_all([hs])
        assert hs.server_name in registration.read_text(), "server renamed on a port clash"
        bridge.start()
        yield Setup(hs, mock, bridge)
    finally:
        bridge.stop()
        hs.stop()
        mock.stop()


def item_shares(user: MatrixClient, room_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in user.messages(room_id, limit=200)
        if e["type"] == "m.room.message" and e["content"].get("msgtype") == ITEM
    ]


def test_every_shop_has_a_public_room_with_its_ghost(setup: Setup) -> None:
    user = setup.hs.new_user("browser")
    for shop in setup.api.get("/v1/shops")["shops"]:
        room = setup.shop_room(user, shop["shop_id"])
        assert user.join(room) == room
        assert setup.ghost(shop["shop_id"]) in user.joined_members(room)
        assert user.state(room, "m.room.name")["name"] == shop["name"]
        ghost = user.call(
            "GET", f"/_matrix/client/v3/profile/{quote(setup.ghost(shop['shop_id']))}"
        )
        assert ghost["displayname"] == shop["name"]
        assert ghost["avatar_url"].startswith("mxc://")
        # Subscribers read; only the shop posts.
        assert user.state(room, "m.room.power_levels")["events_default"] == 50
        with pytest.raises(MatrixError) as e:
            user.send_text(room, "spam")
        assert (e.value.status, e.value.errcode) == (403, "M_FORBIDDEN")


def test_a_new_item_reaches_the_shops_subscribers(setup: Setup) -> None:
    subscriber = setup.hs.new_user("subscriber")
    room = subscriber.join(setup.shop_room(subscriber, "teahouse"))
    item = setup.api.post(
        "/v1/shops/teahouse/items",
        {"title": "Silver Needle", "price": {"amount": 32000, "currency": "CNY"}},
    )

    def posted() -> list[dict[str, Any]]:
        return [
            e
            for e in item_shares(subscriber, room)
            if e["content"][ITEM]["item_id"] == item["item_id"]
        ]

    (event,) = wait_until(posted, timeout=60)
    assert event["sender"] == setup.ghost("teahouse")
    block = event["content"][ITEM]
    assert {k: v for k, v in block.items() if k != "image"} == {
        "item_id": item["item_id"],
        "shop_id": "teahouse",
        "shop_name": "West Lake Tea House",
        "title": "Silver Needle",
        "price": {"amount": 32000, "currency": "CNY"},
        "url": item["url"],
        "bought": False,
    }
    assert block["image"].startswith("mxc://")
    assert event["content"]["body"] == f"[Shop] Silver Needle CNY 320.00 {item['url']}"
    assert event["content"]["com.beeper.linkpreviews"][0]["matched_url"] == item["url"]
    # Another shop's room does not get it.
    other = subscriber.join(setup.shop_room(subscriber, "bookworm"))
    assert not [
        e
        for e in item_shares(subscriber, other)
        if e["content"][ITEM]["item_id"] == item["item_id"]
    ]


def test_a_delivered_order_is_announced_to_its_owner(setup: Setup) -> None:
    owner = setup.hs.new_user("buyer")
    account = setup.api.linked_account("Buyer", owner.user_id)
    order = setup.api.delivered_order(account, "item3")

    room = wait_until(lambda: next(iter(owner.invited_rooms()), None), timeout=60)
    owner.join(room)
    bot = f"@commerce:{setup.hs.server_name}"
    cards = wait_until(lambda: item_shares(owner, room), timeout=60)
    (card,) = cards
    assert card["sender"] == bot
    block = card["content"][ITEM]
    assert (block["item_id"], block["bought"], block["order_id"]) == (
        "item3",
        True,
        order["order_id"],
    )
    assert block["image"].startswith("mxc://")
    assert "Share it" in card["content"]["body"] and order["order_id"] in card["content"]["body"]
    invite = next(
        e
        for e in owner.messages(room, limit=100)
        if e["type"] == "m.room.member"
        and e["state_key"] == owner.user_id
        and e["content"]["membership"] == "invite"
    )
    assert invite["sender"] == bot and invite["content"]["is_direct"] is True

    # A second delivery goes to the same direct chat.
    second = setup.api.delivered_order(account, "item4")
    wait_until(lambda: len(item_shares(owner, room)) == 2, timeout=60)
    assert item_shares(owner, room)[0]["content"][ITEM]["order_id"] == second["order_id"]


def test_an_alias_of_no_shop_is_not_found(setup: Setup) -> None:
    user = setup.hs.new_user("looker")
    with pytest.raises(MatrixError) as e:
        setup.shop_room(user, "no-such-shop")
    assert (e.value.status, e.value.errcode) == (404, "M_NOT_FOUND")


def dm_of(owner: MatrixClient, known: set[str]) -> str:
    """The direct chat the bot invites `owner` to next (not one of `known`), joined."""
    room = wait_until(lambda: next(iter(owner.invited_rooms() - known), None), timeout=60)
    owner.join(room)
    return room


def test_owners_who_cannot_be_reached_do_not_block_the_stream(setup: Setup) -> None:
    nobody = setup.api.linked_account("Nobody", f"@nobody-here:{setup.hs.server_name}")
    remote = setup.api.linked_account("Remote", "@someone:unreachable.invalid")
    setup.api.delivered_order(nobody, "item5")
    setup.api.delivered_order(remote, "item6")
    owner = setup.hs.new_user("patient")
    account = setup.api.linked_account("Patient", owner.user_id)
    order = setup.api.delivered_order(account, "item7")
    room = dm_of(owner, set())
    (card,) = wait_until(lambda: item_shares(owner, room), timeout=60)
    assert card["content"][ITEM]["order_id"] == order["order_id"]


def test_an_owner_who_left_the_direct_chat_gets_a_new_one(setup: Setup) -> None:
    owner = setup.hs.new_user("leaver")
    account = setup.api.linked_account("Leaver", owner.user_id)
    setup.api.delivered_order(account, "item8")
    first = dm_of(owner, set())
    wait_until(lambda: item_shares(owner, first), timeout=60)
    admin = setup.hs.new_user("admin", admin=True)

    def members() -> list[str]:
        path = f"/_synapse/admin/v1/rooms/{quote(first)}/members"
        return list(admin.call("GET", path)["members"])

    assert f"@commerce:{setup.hs.server_name}" in members()
    owner.leave(first)
    # The bot leaves too, so the room is not kept for nobody.
    wait_until(lambda: members() == [], timeout=60)

    later = setup.api.delivered_order(account, "item9")
    second = dm_of(owner, {first})
    assert second != first
    (card,) = wait_until(lambda: item_shares(owner, second), timeout=60)
    assert card["content"][ITEM]["order_id"] == later["order_id"]


def test_a_restart_delivers_what_came_meanwhile_once(setup: Setup) -> None:
    watcher = setup.hs.new_user("watcher")
    room = watcher.join(setup.shop_room(watcher, "stationery"))
    first = setup.api.post(
        "/v1/shops/stationery/items",
        {"title": "Eraser", "price": {"amount": 110, "currency": "JPY"}},
    )
    wait_until(lambda: len(item_shares(watcher, room)) == 1, timeout=60)

    setup.bridge.stop()
    during = setup.api.post(
        "/v1/shops/stationery/items",
        {"title": "Ruler", "price": {"amount": 220, "currency": "JPY"}},
    )
    setup.bridge.start()

    wait_until(lambda: len(item_shares(watcher, room)) == 2, timeout=60)
    # A later item proves the bridge has caught up; nothing before it came twice.
    last = setup.api.post(
        "/v1/shops/stationery/items",
        {"title": "Stapler", "price": {"amount": 990, "currency": "JPY"}},
    )
    wait_until(lambda: len(item_shares(watcher, room)) == 3, timeout=60)
    ids = [e["content"][ITEM]["item_id"] for e in item_shares(watcher, room)]
    assert sorted(ids) == sorted([first["item_id"], during["item_id"], last["item_id"]])
    # The other shops' rooms hold no copies either.
    for shop_id in ("teahouse", "bookworm"):
        other = watcher.join(setup.shop_room(watcher, shop_id))
        posted = [e["content"][ITEM]["item_id"] for e in item_shares(watcher, other)]
        assert len(posted) == len(set(posted))


def stream_event(api: CommerceClient, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first event of the commerce service's stream that is `wanted`."""
    after = "0"
    while True:
        page = api.get("/v1/events", params={"after": after, "timeout": "0"})
        found = [e for e in page["events"] if wanted(e)]
        if found:
            return dict(found[0])
        assert page["events"], "no such event in the stream"
        after = page["next"]


def test_a_post_the_bridge_did_not_record_is_not_made_again(setup: Setup) -> None:
    """The bridge dies after the homeserver saved a post and before recording it handled, and
    the homeserver has forgotten the post's transaction id (Synapse restarted, or the retry
    reaches another worker): on retry the bridge finds the post in the room instead of posting
    a second copy."""
    watcher = setup.hs.new_user("dedup-watcher")
    room = watcher.join(setup.shop_room(watcher, "teahouse"))
    setup.bridge.stop()
    db_path = setup.bridge.directory / "bridge.db"
    item = setup.api.post(
        "/v1/shops/teahouse/items",
        {"title": "Tieguanyin", "price": {"amount": 21000, "currency": "CNY"}},
    )
    event = stream_event(
        setup.api,
        lambda e: e["type"] == "item.created" and e["item"]["item_id"] == item["item_id"],
    )
    source = str(event["id"])
    # What the dead bridge had done: its attempt recorded, then the post made as the shop's
    # ghost with the application service's token, under a transaction id that the homeserver
    # does not hold for `commerce-<id>`.
    with closing(sqlite3.connect(db_path)) as conn, conn:
        conn.execute(
            "INSERT INTO sending (event_id, room_id, started_ts) VALUES (?, ?, ?)",
            (source, room, int(time.time() * 1000)),
        )
    as_token = yaml.safe_load(setup.bridge.registration_path.read_text())["as_token"]
    ghost_id = setup.ghost("teahouse")
    ghost = MatrixClient(setup.hs.base_url, ghost_id, as_token, params={"user_id": ghost_id})
    content = with_source(item_card(event["item"], None).content(), source)
    txn = f"lost-{source}-{time.time_ns()}"
    path = f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.message/{txn}"
    made = ghost.call("PUT", path, content)["event_id"]

    setup.bridge.start()
    # A later item proves the bridge has gone past the one it had posted.
    later = setup.api.post(
        "/v1/shops/teahouse/items",
        {"title": "Da Hong Pao", "price": {"amount": 45000, "currency": "CNY"}},
    )

    def shared(item_id: str) -> list[str]:
        return [
            e["event_id"]
            for e in item_shares(watcher, room)
            if e["content"][ITEM]["item_id"] == item_id
        ]

    wait_until(lambda: shared(later["item_id"]) or None, timeout=60)
    assert shared(item["item_id"]) == [made]
    with closing(sqlite3.connect(db_path)) as conn:
        handled = conn.execute(
            "SELECT matrix_event_id FROM handled WHERE event_id = ?", (source,)
        ).fetchall()
        attempts = conn.execute("SELECT * FROM sending WHERE event_id = ?", (source,)).fetchall()
    assert (handled, attempts) == ([(made,)], [])


def test_a_delivery_sent_before_a_homeserver_restart_is_not_announced_twice(
    setup: Setup,
) -> None:
    """The same for a delivery card, with the bridge's own transaction id: the card reached the
    homeserver, the bridge died before recording it, and the homeserver restarted (forgetting
    the transaction id) before the bridge came back."""
    owner = setup.hs.new_user("twice-shy")
    account = setup.api.linked_account("Twice Shy", owner.user_id)
    setup.api.delivered_order(account, "item1")
    room = dm_of(owner, set())
    wait_until(lambda: item_shares(owner, room), timeout=60)

    setup.bridge.stop()
    order = setup.api.delivered_order(account, "item2")
    event = stream_event(
        setup.api,
        lambda e: e["type"] == "order.delivered" and e["order"]["order_id"] == order["order_id"],
    )
    source = str(event["id"])
    db_path = setup.bridge.directory / "bridge.db"
    with closing(sqlite3.connect(db_path)) as conn, conn:
        conn.execute(
            "INSERT INTO sending (event_id, room_id, started_ts) VALUES (?, ?, ?)",
            (source, room, int(time.time() * 1000)),
        )
    as_token = yaml.safe_load(setup.bridge.registration_path.read_text())["as_token"]
    bot = MatrixClient(setup.hs.base_url, f"@commerce:{setup.hs.server_name}", as_token)
    card = item_card(event["order"]["item"], None, order["order_id"]).content()
    path = f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.message/commerce-{source}"
    made = bot.call("PUT", path, with_source(card, source))["event_id"]
    setup.hs.restart()

    setup.bridge.start()
    later = setup.api.delivered_order(account, "item3")

    def cards(order_id: str) -> list[str]:
        return [
            e["event_id"]
            for e in item_shares(owner, room)
            if e["content"][ITEM]["order_id"] == order_id
        ]

    wait_until(lambda: cards(later["order_id"]) or None, timeout=90)
    assert cards(order["order_id"]) == [made]


def test_the_bridge_outlives_a_restart_of_the_commerce_service(setup: Setup) -> None:
    watcher = setup.hs.new_user("patient-watcher")
    room = watcher.join(setup.shop_room(watcher, "bookworm"))
    before = len(item_shares(watcher, room))
    setup.mock.restart()  # same port, same data; the bridge's long poll breaks meanwhile
    item = setup.api.post(
        "/v1/shops/bookworm/items", {"title": "Atlas", "price": {"amount": 8800, "currency": "CNY"}}
    )
    wait_until(lambda: len(item_shares(watcher, room)) == before + 1, timeout=60)
    assert item_shares(watcher, room)[0]["content"][ITEM]["item_id"] == item["item_id"]


def test_subscriptions_through_the_module_follow_the_shop(setup: Setup) -> None:
    """Subscribe with the module's endpoint: new items arrive; a non-subscriber gets nothing;
    after unsubscribing, nothing more."""
    fan, passer_by = setup.hs.new_user("fan"), setup.hs.new_user("passer")
    got = fan.laiwang("PUT", "/commerce/subscriptions/stationery")
    room = got["room_id"]
    assert room == setup.shop_room(fan, "stationery")
    assert fan.laiwang("GET", "/commerce/subscriptions")["subscriptions"] == [
        {"shop_id": "stationery", "name": got["name"], "room_id": room}
    ]

    def new_item(title: str) -> str:
        created = setup.api.post(
            "/v1/shops/stationery/items",
            {"title": title, "price": {"amount": 500, "currency": "JPY"}},
        )
        return str(created["item_id"])

    def seen(user: MatrixClient, item_id: str) -> bool:
        return any(e["content"][ITEM]["item_id"] == item_id for e in item_shares(user, room))

    first = new_item("Fountain pen")
    wait_until(lambda: seen(fan, first) or None, timeout=60)
    # The passer-by is in no shop room: no invite, nothing in their sync.
    assert passer_by.invited_rooms() == set()
    assert passer_by.laiwang("GET", "/commerce/subscriptions")["subscriptions"] == []
    assert fan.laiwang("DELETE", "/commerce/subscriptions/stationery") == {}
    assert fan.membership(room, fan.user_id) == "leave"
    second = new_item("Ink")
    # The item reaches the room (a subscriber sees it) but not the one who left.
    watcher = setup.hs.new_user("watcher")
    watcher.laiwang("PUT", "/commerce/subscriptions/stationery")
    wait_until(lambda: seen(watcher, second) or None, timeout=60)
    # What the one who left can still read ends at their leave.
    assert seen(fan, first) and not seen(fan, second)
