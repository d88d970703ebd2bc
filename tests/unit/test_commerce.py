"""Commerce's pure rules: request bodies, catalogue URLs, cards as shares, payment keys."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rooms import commerce
from rooms.errors import BadGateway, InvalidParam, MissingParam

BASE = "http://127.0.0.1:8090"
ITEM = {
    "item_id": "item3",
    "shop_id": "teahouse",
    "shop_name": "Tea House",
    "title": "Longjing",
    "price": {"amount": 9900, "currency": "CNY"},
    "url": f"{BASE}/item/item3",
    "image_url": f"{BASE}/images/item/item3.png",
    "created_ts": 1,
}


@pytest.mark.parametrize(
    "url, expected",
    [
        (f"{BASE}/item/item3", "item3"),
        ("HTTP://127.0.0.1:8090/item/item3", "item3"),
        (f"{BASE}/item/item%33", "item3"),
        ("https://shop.example/base/item/x-1", "x-1"),
    ],
)
def test_item_ids_from_the_services_own_urls(url: str, expected: str) -> None:
    assert (
        commerce.catalogue_id_from_url(url, "item", (BASE, "https://shop.example/base")) == expected
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:8090/item/item3",  # another scheme is another origin
        "http://127.0.0.1:8091/item/item3",
        "http://evil.example/item/item3",
        f"{BASE}/track/track1",
        f"{BASE}/item/",
        f"{BASE}/item/a/b",
        f"{BASE}/item/%2e%2e%2fx",
    ],
)
def test_anything_else_is_not_an_item(url: str) -> None:
    with pytest.raises(InvalidParam) as e:
        commerce.catalogue_id_from_url(url, "item", (BASE,))
    assert e.value.param == "url"


@given(st.text(max_size=80))
def test_url_parsing_never_crashes(path: str) -> None:
    try:
        found = commerce.catalogue_id_from_url(f"{BASE}/item/{path}", "item", (BASE,))
    except InvalidParam:
        return
    assert commerce.is_catalogue_id(found)


def test_item_share_from_a_card() -> None:
    item = commerce.item_share(ITEM, image="mxc://hs/abc", order_id="o1", bought=True)
    content = item.content()
    block = content["org.laiwang.share.item"]
    assert block["price"] == {"amount": 9900, "currency": "CNY"} and block["bought"] is True
    assert block["image"] == "mxc://hs/abc" and block["order_id"] == "o1"
    assert content["body"] == f"[Shop] Longjing CNY 99.00 (bought) {BASE}/item/item3"


@pytest.mark.parametrize(
    "change",
    [
        {"title": None},
        {"price": {"amount": -5, "currency": "CNY"}},
        {"price": {"amount": 1.5, "currency": "CNY"}},
        {"price": "99"},
        {"url": "javascript:alert(1)"},
        {"title": "x" * 5000},
    ],
)
def test_a_card_the_share_rules_refuse_is_a_bad_gateway(change: dict[str, Any]) -> None:
    with pytest.raises(BadGateway):
        commerce.item_share({**ITEM, **change}, image=None, order_id=None, bought=False)


def test_music_share_from_a_track() -> None:
    track = {
        "track_id": "track1",
        "title": "Song",
        "artist": "Singer",
        "album": "LP",
        "duration_ms": 225000,
        "url": f"{BASE}/track/track1",
        "cover_url": "x",
    }
    music = commerce.music_share(track, cover="mxc://hs/c")
    assert music.content()["body"] == f"[Music] Song - Singer (LP, 3:45) {BASE}/track/track1"
    with pytest.raises(BadGateway):
        commerce.music_share({**track, "duration_ms": -1}, cover=None)


def test_order_must_be_the_callers_purchase_of_this_item() -> None:
    order = {"matrix_user_id": "@a:hs", "item_id": "item3"}
    assert commerce.order_is_callers(order, "@a:hs", "item3")
    assert not commerce.order_is_callers(order, "@b:hs", "item3")
    assert not commerce.order_is_callers(order, "@a:hs", "item4")
    assert not commerce.order_is_callers({**order, "matrix_user_id": None}, "@a:hs", "item3")


def test_one_idempotency_key_per_share() -> None:
    key = commerce.payment_idempotency_key("!r:hs", "$e", "@a:hs")
    assert key == commerce.payment_idempotency_key("!r:hs", "$e", "@a:hs")
    assert key != commerce.payment_idempotency_key("!r:hs", "$e", "@b:hs")
    assert key != commerce.payment_idempotency_key("!r:hs", "$f", "@a:hs")
    # No ambiguity from joining: the parts are encoded, not concatenated.
    assert commerce.payment_idempotency_key(
        "!r:h", "s$e", "@a"
    ) != commerce.payment_idempotency_key("!r:hs", "$e", "@a")
    assert 0 < len(key) <= 255


@pytest.mark.parametrize(
    "body, error",
    [({}, MissingParam), ({"token": 1}, InvalidParam), ({"token": "a", "x": 1}, InvalidParam)],
)
def test_link_bodies(body: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        commerce.parse_link_body(body)
    assert commerce.parse_link_body({"token": "abc_-1"}) == "abc_-1"


def test_shop_alias() -> None:
    assert commerce.shop_alias("teahouse", "example.org") == "#shop_teahouse:example.org"
    with pytest.raises(InvalidParam):
        commerce.check_shop_id("a b")
