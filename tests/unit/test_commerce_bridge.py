"""The commerce bridge's config, registration, cards, database and retries (no homeserver)."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from mautrix.types import RoomID

from bridges.commerce_bridge.bridge import (
    LOOKBACK,
    SHARE_HINT,
    SOURCE_KEY,
    CommerceBridge,
    find_post,
    item_card,
    with_source,
)
from bridges.commerce_bridge.cli import main
from bridges.commerce_bridge.config import (
    EXAMPLE_CONFIG,
    BridgeConfig,
    ConfigError,
    database_url,
    generate_registration,
)
from bridges.commerce_bridge.db import BridgeDB
from rooms.shares import check_share_content

ITEM = {
    "item_id": "item1",
    "shop_id": "teahouse",
    "shop_name": "West Lake Tea House",
    "title": "Longjing Green Tea 250g",
    "price": {"amount": 16800, "currency": "CNY"},
    "url": "http://127.0.0.1:8090/item/item1",
    "image_url": "http://127.0.0.1:8090/images/item/item1.png",
    "created_ts": 1,
}


def example(tmp_path: Path) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(EXAMPLE_CONFIG)
    return path


def test_example_config_loads_with_its_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["-e"])
    assert capsys.readouterr().out == EXAMPLE_CONFIG
    config = BridgeConfig.load(example(tmp_path))
    assert (config.domain, config.port, config.bot_username) == ("example.org", 29340, "commerce")
    assert config.database == f"sqlite:///{tmp_path / 'commerce-bridge.db'}"
    assert config.as_token is None
    with pytest.raises(ConfigError):
        config.registration()


@pytest.mark.parametrize(
    "drop",
    [
        "homeserver.address",
        "homeserver.domain",
        "appservice.port",
        "appservice.database",
        "commerce.api_key",
    ],
)
def test_required_keys(tmp_path: Path, drop: str) -> None:
    raw = yaml.safe_load(EXAMPLE_CONFIG)
    section, key = drop.split(".")
    del raw[section][key]
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=re.escape(drop)):
        BridgeConfig.load(path)


def test_database_urls(tmp_path: Path) -> None:
    assert database_url("b.db", tmp_path) == f"sqlite:///{tmp_path / 'b.db'}"
    assert database_url("/abs/b.db", tmp_path) == "sqlite:////abs/b.db"
    assert database_url("postgres://u:p@h/db", tmp_path) == "postgres://u:p@h/db"


def test_generate_registration_stores_tokens_and_claims_the_namespaces(tmp_path: Path) -> None:
    config_path, reg_path = example(tmp_path), tmp_path / "registration.yaml"
    main(["-c", str(config_path), "-g", "-r", str(reg_path)])
    reg = yaml.safe_load(reg_path.read_text())
    config = BridgeConfig.load(config_path)
    assert (reg["as_token"], reg["hs_token"]) == (config.as_token, config.hs_token)
    assert reg["as_token"] != reg["hs_token"]
    assert (reg["url"], reg["sender_localpart"], reg["id"]) == (
        "http://127.0.0.1:29340",
        "commerce",
        "laiwang-commerce",
    )
    users = [re.compile(n["regex"]) for n in reg["namespaces"]["users"]]
    aliases = [re.compile(n["regex"]) for n in reg["namespaces"]["aliases"]]
    assert all(n["exclusive"] for n in reg["namespaces"]["users"] + reg["namespaces"]["aliases"])
    assert any(r.fullmatch("@shop_teahouse:example.org") for r in users)
    assert any(r.fullmatch("@commerce:example.org") for r in users)
    assert not any(r.fullmatch("@alice:example.org") for r in users)
    assert not any(r.fullmatch("@shop_x:exampleXorg") for r in users)
    assert any(r.fullmatch("#shop_teahouse:example.org") for r in aliases)
    # Generating again makes new tokens.
    generate_registration(config_path, reg_path)
    assert yaml.safe_load(reg_path.read_text())["as_token"] != reg["as_token"]


def test_cards_are_valid_item_shares() -> None:
    card = item_card(ITEM, "mxc://hs/abc")
    content = card.content()
    check_share_content(content)
    assert content["org.laiwang.share.item"]["bought"] is False
    assert (
        content["body"]
        == "[Shop] Longjing Green Tea 250g CNY 168.00 http://127.0.0.1:8090/item/item1"
    )
    bought = item_card(ITEM, None, "ord_1").content()
    bought["body"] += "\n" + SHARE_HINT.format(item_id="item1", order_id="ord_1")
    check_share_content(bought)
    assert bought["org.laiwang.share.item"]["order_id"] == "ord_1"
    assert '"order_id": "ord_1"' in bought["body"]


def test_the_sample_config_is_the_example() -> None:
    sample = Path(__file__).parents[2] / "config" / "commerce-bridge.yaml"
    assert sample.read_text() == EXAMPLE_CONFIG


def test_posts_carry_their_source_and_stay_valid_shares() -> None:
    content = with_source(item_card(ITEM, "mxc://hs/abc").content(), "42")
    assert content[SOURCE_KEY] == "42"
    # The module's share check (run on every event) accepts the extra top-level key.
    check_share_content(content)
    check_share_content(with_source(item_card(ITEM, None, "ord_1").content(), "43"))


def test_find_post_matches_the_source_and_the_sender_only() -> None:
    bot, other = "@commerce:hs", "@shop_x:hs"

    def message(event_id: str, sender: str, source: Any, kind: str = "m.room.message") -> Any:
        return {
            "type": kind,
            "event_id": event_id,
            "sender": sender,
            "content": {"msgtype": "m.text", "body": "x", SOURCE_KEY: source},
        }

    chunk = [
        message("$a", other, "7"),  # someone else's (a forward, say)
        message("$b", bot, "8"),
        message("$c", bot, "7", kind="m.reaction"),
        {"type": "m.room.message", "event_id": "$d", "sender": bot, "content": {}},  # redacted
        "junk",
        message("$e", bot, "7"),
    ]
    assert find_post(chunk, bot, "7") == "$e"
    assert find_post(chunk, bot, "8") == "$b"
    assert find_post(chunk, bot, "9") is None
    assert find_post([], bot, "7") is None


class FakeAPI:
    def __init__(self, room: list[dict[str, Any]]):
        self.room = room
        self.queries: list[dict[str, Any]] = []

    async def request(self, method: Any, path: Any, query_params: dict[str, Any]) -> Any:
        self.queries.append(query_params)
        limit = int(query_params["limit"])
        return {"chunk": list(reversed(self.room))[:limit]}


class FakeIntent:
    """An intent whose room is a list: sends append (no transaction-id memory at all)."""

    mxid = "@shop_teahouse:hs"

    def __init__(self) -> None:
        self.room: list[dict[str, Any]] = []
        self.api = FakeAPI(self.room)

    async def send_message_event(
        self, room: str, event_type: Any, content: dict[str, Any], txn_id: str
    ) -> str:
        event_id = f"${len(self.room)}"
        self.room.append(
            {"type": str(event_type), "event_id": event_id, "sender": self.mxid, "content": content}
        )
        return event_id


def test_a_retry_after_an_unrecorded_post_finds_it_instead_of_posting_again(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        db = BridgeDB(f"sqlite:///{tmp_path / 'bridge.db'}")
        await db.start()
        try:
            bridge = CommerceBridge(cast(Any, None), cast(Any, None), db, cast(Any, None))
            intent = FakeIntent()
            content = item_card(ITEM, None).content()
            room = RoomID("!shop:hs")
            # A first attempt sends without looking (nothing recorded) and records itself.
            first = await bridge.send_post(cast(Any, intent), room, "5", content)
            assert intent.api.queries == [] and await db.attempted("5")
            # The bridge dies before `handled`; the retry finds the post.
            assert await bridge.send_post(cast(Any, intent), room, "5", content) == first
            assert len(intent.room) == 1
            query = intent.api.queries[0]
            assert (query["dir"], query["limit"]) == ("b", "100")
            assert json.loads(query["filter"])["senders"] == [intent.mxid]
            # Recording it handled ends the attempt, with the cursor.
            await db.mark_handled("5", first, "5")
            assert not await db.attempted("5") and await db.cursor() == "5"
            # An attempt whose send never reached the room is sent again on retry.
            await db.record_attempt("6", room, 0)
            second = await bridge.send_post(cast(Any, intent), room, "6", content)
            assert second != first and len(intent.room) == 2
            assert intent.room[-1]["content"][SOURCE_KEY] == "6"
            # Beyond the look-back, a post is not found (the bound is what it costs).
            for n in range(LOOKBACK):
                await intent.send_message_event(room, "m.room.message", {"n": n}, f"x{n}")
            await db.record_attempt("6", room, 0)
            assert await bridge.earlier_post(cast(Any, intent), room, "6") is None
        finally:
            await db.stop()

    asyncio.run(scenario())


def test_a_version_1_database_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE version (version INTEGER)")
        conn.execute("INSERT INTO version VALUES (1)")
        conn.execute("CREATE TABLE cursor (id INTEGER PRIMARY KEY, next TEXT NOT NULL)")
        conn.execute("INSERT INTO cursor VALUES (1, '17')")
        conn.execute(
            "CREATE TABLE handled (event_id TEXT PRIMARY KEY, matrix_event_id TEXT NOT NULL)"
        )
        for table, key, value in (
            ("shop_rooms", "shop_id", "room_id"),
            ("dm_rooms", "user_id", "room_id"),
            ("images", "url", "mxc"),
        ):
            conn.execute(f"CREATE TABLE {table} ({key} TEXT PRIMARY KEY, {value} TEXT NOT NULL)")

    async def scenario() -> None:
        db = BridgeDB(f"sqlite:///{path}")
        await db.start()
        try:
            assert await db.cursor() == "17"
            await db.record_attempt("18", "!r:hs", 1)
            assert await db.attempted("18")
        finally:
            await db.stop()

    asyncio.run(scenario())
