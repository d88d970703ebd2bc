"""The commerce bridge's config, registration and cards (no homeserver)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bridges.commerce_bridge.bridge import SHARE_HINT, item_card
from bridges.commerce_bridge.cli import main
from bridges.commerce_bridge.config import (
    EXAMPLE_CONFIG,
    BridgeConfig,
    ConfigError,
    database_url,
    generate_registration,
)
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
