"""The commerce mock's pure parts and its store: receipts the module accepts, deterministic
images, and charging once per idempotency key even from several connections at once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from signedjson.key import decode_verify_key_base64, generate_signing_key

from bridges.commerce_mock import catalogue, receipts
from bridges.commerce_mock.store import IdempotencyConflict, Store
from rooms.aa import AAPayment, RequestView, verify_receipt
from rooms.errors import InvalidParam


class Provider:
    def __init__(self, line: str):
        key_id, b64 = line.split()
        self.verify_key = decode_verify_key_base64("ed25519", key_id.split(":", 1)[1], b64)


def receipt_for(key: Any, **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "receipt_id": "rcpt_1",
        "provider": "laiwang-pay",
        "payer": "@a:hs",
        "payee": "@b:hs",
        "amount": 500,
        "currency": "CNY",
        "room_id": "!r:hs",
        "event_id": "$req",
        **changes,
    }
    return receipts.signed_receipt(key=key, **fields)


def check(receipt: dict[str, Any], providers: dict[str, Any]) -> None:
    payment = AAPayment("$req", "@a:hs", 500, "CNY", "provider", receipt)
    request = RequestView("$req", "!r:hs", "Dinner", "@b:hs", "CNY", 1000, "open", {}, ["@b:hs"])
    verify_receipt(receipt, payment, request, providers)


def test_mock_receipts_pass_the_modules_receipt_check(tmp_path: Path) -> None:
    key = receipts.load_signing_key(tmp_path)
    assert receipts.load_signing_key(tmp_path).encode() == key.encode()  # kept in the dir
    providers = {"laiwang-pay": Provider(receipts.verify_key_line(key))}
    check(receipt_for(key), providers)
    with pytest.raises(InvalidParam):
        check(receipt_for(generate_signing_key("1")), providers)
    with pytest.raises(InvalidParam):
        check({**receipt_for(key), "amount": 501}, providers)
    with pytest.raises(InvalidParam):
        check(receipt_for(key, payee="@c:hs"), providers)


def test_key_files_are_private(tmp_path: Path) -> None:
    receipts.load_signing_key(tmp_path)
    api_key = receipts.load_api_key(tmp_path)
    assert receipts.load_api_key(tmp_path) == api_key and len(api_key) >= 32
    for name in (receipts.KEY_FILE, receipts.API_KEY_FILE):
        assert (tmp_path / name).stat().st_mode & 0o077 == 0


def test_images_are_deterministic_pngs() -> None:
    a = catalogue.png_for("item", "item1")
    assert a == catalogue.png_for("item", "item1")
    assert a.startswith(b"\x89PNG\r\n\x1a\n")
    assert a != catalogue.png_for("item", "item2")
    assert catalogue.png_for("track", "track1") != catalogue.png_for("item", "track1")


def test_seed_has_three_shops_twenty_items_ten_tracks(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    assert store.seed_if_empty(1)
    assert not store.seed_if_empty(2)
    shops = store.list_shops()
    assert len(shops) >= 3
    assert sum(len(store.shop_items(s.shop_id)) for s in shops) == 20
    assert len(store.list_tracks()) == 10


def charge(store: Store, key: str, request_hash: str) -> Any:
    return store.charge(
        key,
        request_hash,
        "acct_a",
        "acct_b",
        100,
        "CNY",
        lambda: {"receipt_id": receipts.new_receipt_id()},
        1,
    )


def test_one_charge_per_key_across_connections(tmp_path: Path) -> None:
    """Six connections (as six processes would) charge the same key at once: one payment."""
    path = tmp_path / "c.db"
    Store(path).close()
    barrier = threading.Barrier(6)
    results: list[Any] = []

    def run() -> None:
        store = Store(path)  # a connection of its own, in its own thread
        barrier.wait()
        results.append(charge(store, "k", "h"))
        store.close()

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6
    assert sum(r.created for r in results) == 1
    assert len({r.receipt["receipt_id"] for r in results}) == 1
    store = Store(path)
    assert store.payment_count("acct_a") == 1
    with pytest.raises(IdempotencyConflict):
        charge(store, "k", "another body")
    store.close()
