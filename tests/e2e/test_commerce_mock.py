"""The commerce service mock as a real process: every endpoint, its errors, payments under
concurrency, the event stream and a restart. No homeserver is started."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from devtools.commerce import CommerceClient, CommerceError, MockProcess
from laiwang_module.config import PaymentProvider
from rooms.aa import AAPayment, RequestView, verify_receipt
from rooms.errors import InvalidParam

ROOM = "!bill:hs1"
EVENT = "$request-event"


@pytest.fixture(scope="module")
def mock(test_root: Path) -> Iterator[MockProcess]:
    process = MockProcess(test_root / "commerce-mock").start()
    yield process
    process.stop()


@pytest.fixture
def api(mock: MockProcess) -> CommerceClient:
    return mock.client()


def error_of(call: Any, *args: Any, **kwargs: Any) -> tuple[int, str | None]:
    with pytest.raises(CommerceError) as e:
        call(*args, **kwargs)
    return e.value.status, e.value.errcode


def raw(mock: MockProcess, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {mock.api_key}", **kwargs.pop("headers", {})}
    return requests.request(method, f"{mock.base_url}{path}", headers=headers, timeout=30, **kwargs)


def payment(payer: str, payee: str, amount: Any = 3334, **changes: Any) -> dict[str, Any]:
    return {
        "payer": payer,
        "payee": payee,
        "amount": amount,
        "currency": "CNY",
        "room_id": ROOM,
        "event_id": EVENT,
        **changes,
    }


def pay(api: CommerceClient, key: str, body: dict[str, Any]) -> dict[str, Any]:
    return dict(api.post("/v1/payments", body, headers={"Idempotency-Key": key})["receipt"])


_users = iter(range(10**6))


def new_user() -> str:
    return f"@user{next(_users)}_{time.monotonic_ns()}:hs1"


# --- catalogue ------------------------------------------------------------------------------


def test_seed_catalogue_has_shops_items_and_tracks_with_images(
    mock: MockProcess, api: CommerceClient
) -> None:
    shops = api.get("/v1/shops")["shops"]
    assert len(shops) >= 3
    items = [i for s in shops for i in api.get(f"/v1/shops/{s['shop_id']}")["items"]]
    seeded = [i for i in items if int(i["item_id"].removeprefix("item")) <= 20]
    assert len(seeded) == 20
    tracks = api.get("/v1/tracks")["tracks"]
    assert len(tracks) == 10
    for item in seeded:
        assert item["url"] == f"{mock.base_url}/item/{item['item_id']}"
        assert api.get(f"/v1/items/{item['item_id']}") == item
        assert isinstance(item["price"]["amount"], int)
        image = requests.get(item["image_url"], timeout=10)
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG\r\n\x1a\n")
        assert image.headers["Content-Type"] == "image/png"
    for track in tracks:
        assert track["url"] == f"{mock.base_url}/track/{track['track_id']}"
        assert api.get(f"/v1/tracks/{track['track_id']}") == track
        cover = requests.get(track["cover_url"], timeout=10)
        assert cover.status_code == 200 and cover.content.startswith(b"\x89PNG")
    # Distinct pictures, and the pages an item's or track's URL opens.
    assert len({requests.get(i["image_url"], timeout=10).content for i in seeded[:5]}) == 5
    page = requests.get(seeded[0]["url"], timeout=10)
    assert page.status_code == 200 and seeded[0]["title"] in page.text
    assert requests.get(tracks[0]["url"], timeout=10).status_code == 200


def test_unknown_catalogue_entries_are_404(mock: MockProcess, api: CommerceClient) -> None:
    assert error_of(api.get, "/v1/items/item99999") == (404, "M_NOT_FOUND")
    assert error_of(api.get, "/v1/tracks/nope") == (404, "M_NOT_FOUND")
    assert error_of(api.get, "/v1/shops/nope") == (404, "M_NOT_FOUND")
    assert requests.get(f"{mock.base_url}/images/item/item99999.png", timeout=10).status_code == 404
    assert requests.get(f"{mock.base_url}/images/bogus/item1.png", timeout=10).status_code == 404


def test_a_fresh_mock_seeds_the_same_catalogue(test_root: Path, api: CommerceClient) -> None:
    other = MockProcess(test_root / "commerce-mock-twin", api_key="twin-key").start()
    try:
        twin = other.client()

        def catalogue(client: CommerceClient) -> list[Any]:
            shops = client.get("/v1/shops")["shops"]
            items = [
                (i["item_id"], i["shop_id"], i["title"], i["price"])
                for s in shops
                for i in client.get(f"/v1/shops/{s['shop_id']}")["items"]
                if int(i["item_id"].removeprefix("item")) <= 20
            ]
            tracks = [
                (t["track_id"], t["title"], t["artist"]) for t in client.get("/v1/tracks")["tracks"]
            ]
            return [[(s["shop_id"], s["name"]) for s in shops], items, tracks]

        assert catalogue(twin) == catalogue(api)
        image = twin.get("/v1/items/item3")["image_url"]
        assert (
            requests.get(image, timeout=10).content
            == requests.get(api.get("/v1/items/item3")["image_url"], timeout=10).content
        )
    finally:
        other.stop()


# --- auth and bad input ---------------------------------------------------------------------


def test_every_v1_call_needs_the_bearer_key(mock: MockProcess) -> None:
    no_token = CommerceClient(mock.base_url, "")
    no_token.session.headers.pop("Authorization")
    calls = [
        ("GET", "/v1/shops"),
        ("GET", "/v1/items/item1"),
        ("POST", "/v1/accounts"),
        ("POST", "/v1/payments"),
        ("GET", "/v1/events"),
        ("GET", "/v1/orders/ord_x"),
    ]
    for method, path in calls:
        assert error_of(no_token.request, method, path) == (401, "M_MISSING_TOKEN")
        wrong = mock.client("not-the-key")
        assert error_of(wrong.request, method, path) == (401, "M_UNKNOWN_TOKEN")
    # Public pages and images need no key; unknown paths and methods answer before the key.
    assert requests.get(f"{mock.base_url}/item/item1", timeout=10).status_code == 200
    assert error_of(no_token.get, "/v1/nothing") == (404, "M_UNRECOGNIZED")
    assert error_of(no_token.request, "PUT", "/v1/shops") == (405, "M_UNRECOGNIZED")


def test_bad_input_gets_matrix_errors_never_a_500(mock: MockProcess, api: CommerceClient) -> None:
    for body, status, errcode in [
        (b"{bad", 400, "M_NOT_JSON"),
        (b"", 400, "M_NOT_JSON"),
        (b'{"display_name": NaN}', 400, "M_NOT_JSON"),
        (b"[1]", 400, "M_BAD_JSON"),
        (b"{}", 400, "M_MISSING_PARAM"),
        (b'{"display_name": 5}', 400, "M_INVALID_PARAM"),
        (b'{"display_name": "A", "extra": 1}', 400, "M_INVALID_PARAM"),
        (b'{"display_name": "' + b"x" * 70000 + b'"}', 413, "M_TOO_LARGE"),
    ]:
        r = raw(mock, "POST", "/v1/accounts", data=body)
        assert (r.status_code, r.json()["errcode"]) == (status, errcode), body[:40]
    for bad in [
        {"title": "T", "price": {"amount": 1.5, "currency": "CNY"}},
        {"title": "T", "price": {"amount": 100, "currency": "XXY"}},
        {"title": "T", "price": {"amount": -1, "currency": "CNY"}},
        {"title": "T", "price": 100},
        {"title": "", "price": {"amount": 100, "currency": "CNY"}},
        {"title": "T", "price": {"amount": 100, "currency": "CNY"}, "image_url": "file:///x"},
    ]:
        assert error_of(api.post, "/v1/shops/teahouse/items", bad) == (400, "M_INVALID_PARAM")
    assert error_of(api.post, "/v1/shops/teahouse/items", {"title": "T"}) == (
        400,
        "M_MISSING_PARAM",
    )
    for query in ["after=abc", "after=-1", "timeout=999999", "limit=0", "limit=x"]:
        r = raw(mock, "GET", f"/v1/events?{query}")
        assert (r.status_code, r.json()["errcode"]) == (400, "M_INVALID_PARAM"), query
    assert error_of(api.get, "/v1/links/not-a-user") == (400, "M_INVALID_PARAM")


# --- accounts and links ---------------------------------------------------------------------


def expire_tokens(mock: MockProcess, account_id: str) -> None:
    db = sqlite3.connect(mock.data / "commerce.db", timeout=30)
    with db:
        db.execute("UPDATE link_tokens SET expires_ts = 1 WHERE account_id = ?", (account_id,))
    db.close()


def test_link_tokens_are_one_time_and_expire(mock: MockProcess, api: CommerceClient) -> None:
    alice = new_user()
    created = api.post("/v1/accounts", {"display_name": "Alice"})
    account = created["account_id"]
    assert created["expires_ts"] - time.time() * 1000 == pytest.approx(600_000, abs=60_000)
    assert api.get(f"/v1/accounts/{account}")["matrix_user_id"] is None
    assert error_of(api.get, f"/v1/links/{alice}") == (404, "M_NOT_FOUND")

    linked = api.post("/v1/links", {"token": created["link_token"], "matrix_user_id": alice})
    assert linked == {"account_id": account}
    assert api.get(f"/v1/links/{alice}") == {"account_id": account}
    assert api.get(f"/v1/accounts/{account}")["matrix_user_id"] == alice
    # Used once, never again, not even by its first user.
    reuse = {"token": created["link_token"], "matrix_user_id": new_user()}
    assert error_of(api.post, "/v1/links", reuse) == (400, "M_INVALID_PARAM")
    assert error_of(api.post, "/v1/links", {**reuse, "token": "nope"}) == (400, "M_INVALID_PARAM")
    assert error_of(api.post, "/v1/links", {"token": "x"}) == (400, "M_MISSING_PARAM")

    # A fresh token past its ten minutes is refused.
    fresh = api.post(f"/v1/accounts/{account}/link_token")["link_token"]
    expire_tokens(mock, account)
    late = {"token": fresh, "matrix_user_id": alice}
    assert error_of(api.post, "/v1/links", late) == (400, "M_INVALID_PARAM")
    assert error_of(api.post, "/v1/accounts/acct_nope/link_token") == (404, "M_NOT_FOUND")

    # Linking another account moves the Matrix user to it.
    other = api.post("/v1/accounts", {"display_name": "Alice's shop account"})
    api.post("/v1/links", {"token": other["link_token"], "matrix_user_id": alice})
    assert api.get(f"/v1/links/{alice}") == {"account_id": other["account_id"]}
    assert api.get(f"/v1/accounts/{account}")["matrix_user_id"] is None

    # Unlinking; a second unlink finds nothing. Path ids may be percent-encoded.
    encoded = alice.replace("@", "%40").replace(":", "%3A")
    assert api.delete(f"/v1/links/{encoded}") == {}
    assert error_of(api.delete, f"/v1/links/{alice}") == (404, "M_NOT_FOUND")
    assert error_of(api.get, f"/v1/links/{alice}") == (404, "M_NOT_FOUND")


# --- items, orders and the event stream -----------------------------------------------------


def events_since(api: CommerceClient, after: str, **params: Any) -> dict[str, Any]:
    return dict(api.get("/v1/events", params={"after": after, **params}))


def test_new_items_and_delivered_orders_are_streamed(
    mock: MockProcess, api: CommerceClient
) -> None:
    start = events_since(api, "0", limit=1000)
    while start["events"]:
        start = events_since(api, start["next"], limit=1000)
    cursor = start["next"]

    item = api.post(
        "/v1/shops/bookworm/items", {"title": "Poems", "price": {"amount": 1999, "currency": "CNY"}}
    )
    assert (item["shop_id"], item["shop_name"], item["title"]) == (
        "bookworm",
        "Bookworm Books",
        "Poems",
    )
    assert item["price"] == {"amount": 1999, "currency": "CNY"}
    assert requests.get(item["image_url"], timeout=10).content.startswith(b"\x89PNG")
    assert api.get(f"/v1/items/{item['item_id']}") == item

    bob = new_user()
    account = api.linked_account("Bob", bob)
    order = api.post("/v1/orders", {"account_id": account, "item_id": "item1", "quantity": 2})
    assert order["state"] == "created"
    assert order["total"] == {
        "amount": 2 * api.get("/v1/items/item1")["price"]["amount"],
        "currency": "CNY",
    }
    order_id = order["order_id"]
    assert error_of(api.post, f"/v1/orders/{order_id}/deliver") == (409, "M_CONFLICT")
    assert api.post(f"/v1/orders/{order_id}/pay")["state"] == "paid"
    assert api.post(f"/v1/orders/{order_id}/pay")["state"] == "paid"  # again: no change
    delivered = api.post(f"/v1/orders/{order_id}/deliver")
    assert delivered["state"] == "delivered"
    assert api.post(f"/v1/orders/{order_id}/deliver")["state"] == "delivered"  # no 2nd event
    got = api.get(f"/v1/orders/{order_id}")
    assert (got["account_id"], got["matrix_user_id"], got["item_id"]) == (account, bob, "item1")
    assert got["paid_ts"] and got["delivered_ts"]

    page = events_since(api, cursor)
    assert [e["type"] for e in page["events"]] == ["item.created", "order.delivered"]
    created, done = page["events"]
    assert created["item"] == item
    assert done["order"]["order_id"] == order_id and done["order"]["matrix_user_id"] == bob
    assert done["order"]["item"]["item_id"] == "item1"
    assert page["next"] == done["id"]
    # The stream is durable: reading from the same cursor again gives the same events.
    assert events_since(api, cursor) == page
    assert events_since(api, cursor, limit=1)["events"] == [created]
    assert events_since(api, page["next"])["events"] == []


def test_order_errors(api: CommerceClient) -> None:
    account = api.linked_account("Carol", new_user())
    assert error_of(api.post, "/v1/orders", {"account_id": "acct_no", "item_id": "item1"}) == (
        404,
        "M_NOT_FOUND",
    )
    assert error_of(api.post, "/v1/orders", {"account_id": account, "item_id": "nope"}) == (
        404,
        "M_NOT_FOUND",
    )
    for quantity in (0, 100, 1.0, "2", True):
        body = {"account_id": account, "item_id": "item1", "quantity": quantity}
        assert error_of(api.post, "/v1/orders", body) == (400, "M_INVALID_PARAM")
    assert error_of(api.get, "/v1/orders/ord_nope") == (404, "M_NOT_FOUND")
    assert error_of(api.post, "/v1/orders/ord_nope/pay") == (404, "M_NOT_FOUND")


def test_long_poll_waits_for_the_next_event(api: CommerceClient) -> None:
    head = events_since(api, "0", limit=1000)
    while head["events"]:
        head = events_since(api, head["next"], limit=1000)
    cursor = head["next"]

    began = time.monotonic()
    assert events_since(api, cursor, timeout=300) == {"events": [], "next": cursor}
    assert time.monotonic() - began >= 0.3

    def add_later() -> None:
        time.sleep(0.5)
        api.post(
            "/v1/shops/teahouse/items",
            {"title": "White Tea", "price": {"amount": 9900, "currency": "CNY"}},
        )

    adder = threading.Thread(target=add_later)
    began = time.monotonic()
    adder.start()
    page = events_since(api, cursor, timeout=20000)
    adder.join()
    assert [e["item"]["title"] for e in page["events"]] == ["White Tea"]
    assert time.monotonic() - began < 10


# --- payments -------------------------------------------------------------------------------


def provider_of(mock: MockProcess, name: str = "laiwang-pay") -> PaymentProvider:
    line = mock.print_("--print-verify-key")
    return PaymentProvider.parse(name, {"verify_key": line}, ("payment_providers", name))


def aa_view(receipt: dict[str, Any]) -> tuple[AAPayment, RequestView]:
    pay = AAPayment(EVENT, receipt["payer"], receipt["amount"], "CNY", "provider", receipt)
    request = RequestView(
        EVENT, ROOM, "Dinner", receipt["payee"], "CNY", 10000, "open", {}, [receipt["payee"]]
    )
    return pay, request


def test_a_payment_receipt_passes_the_modules_check(mock: MockProcess, api: CommerceClient) -> None:
    payer, payee = new_user(), new_user()
    payer_account = api.linked_account("Payer", payer)
    payee_account = api.linked_account("Payee", payee)
    receipt = pay(api, "key-1", payment(payer, payee))
    assert {k: v for k, v in receipt.items() if k not in ("receipt_id", "signatures")} == {
        "provider": "laiwang-pay",
        **payment(payer, payee),
    }
    providers = {"laiwang-pay": provider_of(mock)}
    verify_receipt(receipt, *aa_view(receipt), providers)  # raises if not accepted

    # The signature covers every field, and another provider's key does not verify it.
    tampered = {**receipt, "amount": receipt["amount"] + 1}
    with pytest.raises(InvalidParam):
        verify_receipt(tampered, *aa_view(tampered), providers)
    twin_key = MockProcess(mock.data.parent / "commerce-mock-keys")
    with pytest.raises(InvalidParam):
        verify_receipt(receipt, *aa_view(receipt), {"laiwang-pay": provider_of(twin_key)})

    # Same key, same body: the same receipt, charged once.
    assert pay(api, "key-1", payment(payer, payee)) == receipt
    assert api.get(f"/v1/accounts/{payer_account}")["balances"] == {"CNY": -3334}
    assert api.get(f"/v1/accounts/{payee_account}")["balances"] == {"CNY": 3334}
    # Another body under that key: 409, nothing charged.
    assert error_of(pay, api, "key-1", payment(payer, payee, amount=1)) == (409, "M_CONFLICT")
    # Another key is another payment, with another receipt id.
    second = pay(api, "key-2", payment(payer, payee, amount=1))
    assert second["receipt_id"] != receipt["receipt_id"]
    assert api.get(f"/v1/accounts/{payer_account}")["balances"] == {"CNY": -3335}


def test_payment_errors(mock: MockProcess, api: CommerceClient) -> None:
    payer, payee, stranger = new_user(), new_user(), new_user()
    api.linked_account("Payer", payer)
    api.linked_account("Payee", payee)
    assert error_of(api.post, "/v1/payments", payment(payer, payee)) == (400, "M_MISSING_PARAM")
    assert error_of(pay, api, "k" * 256, payment(payer, payee)) == (400, "M_INVALID_PARAM")
    for bad in [
        payment(payer, payee, amount=1.5),
        payment(payer, payee, amount=0),
        payment(payer, payee, amount="100"),
        payment(payer, payee, currency="CNYY"),
        payment(payer, payee, room_id="not-a-room"),
        payment(payer, payee, event_id="nope"),
        payment(payer, "bob"),
        payment(payer, payer),
        {**payment(payer, payee), "tip": 1},
    ]:
        assert error_of(pay, api, f"bad-{time.monotonic_ns()}", bad) == (400, "M_INVALID_PARAM")
    assert error_of(pay, api, "unlinked-1", payment(stranger, payee)) == (404, "M_NOT_FOUND")
    assert error_of(pay, api, "unlinked-2", payment(payer, stranger)) == (404, "M_NOT_FOUND")
    # A refused payment used no key: the same key then pays.
    assert pay(api, "unlinked-1", payment(payer, payee))["payer"] == payer


def test_concurrent_identical_payments_charge_once(api: CommerceClient) -> None:
    payer, payee = new_user(), new_user()
    payer_account = api.linked_account("Payer", payer)
    body = payment(payer, payee, amount=5000)
    api.linked_account("Payee", payee)
    barrier = threading.Barrier(6)

    def one(_: int) -> dict[str, Any]:
        client = CommerceClient(api.base_url, api.api_key)
        barrier.wait()
        return pay(client, "concurrent-key", body)

    with ThreadPoolExecutor(6) as pool:
        receipts = list(pool.map(one, range(6)))
    assert len({r["receipt_id"] for r in receipts}) == 1
    assert all(r == receipts[0] for r in receipts)
    account = api.get(f"/v1/accounts/{payer_account}")
    assert account["payment_count"] == 1
    assert account["balances"] == {"CNY": -5000}


# --- options and restart --------------------------------------------------------------------


def test_api_key_and_provider_options(test_root: Path) -> None:
    mock = MockProcess(test_root / "commerce-mock-options", api_key="k3y", provider="acme-pay")
    assert mock.api_key == "k3y"
    verify_line = mock.print_("--print-verify-key")
    assert verify_line.startswith("ed25519:")
    mock.start()
    try:
        api = mock.client()
        payer, payee = new_user(), new_user()
        api.linked_account("A", payer)
        api.linked_account("B", payee)
        receipt = pay(api, "k", payment(payer, payee))
        assert receipt["provider"] == "acme-pay" and "acme-pay" in receipt["signatures"]
        verify_receipt(receipt, *aa_view(receipt), {"acme-pay": provider_of(mock, "acme-pay")})
        assert error_of(mock.client("generated-key-is-not-used").get, "/v1/shops") == (
            401,
            "M_UNKNOWN_TOKEN",
        )
    finally:
        mock.stop()


def test_restart_keeps_everything(test_root: Path) -> None:
    mock = MockProcess(test_root / "commerce-mock-restart").start()
    try:
        api = mock.client()
        api_key, verify_line = mock.api_key, mock.print_("--print-verify-key")
        alice, bob = new_user(), new_user()
        account = api.linked_account("Alice", alice)
        api.linked_account("Bob", bob)
        spare_token = api.post(f"/v1/accounts/{account}/link_token")["link_token"]
        item = api.post(
            "/v1/shops/stationery/items",
            {"title": "Pen", "price": {"amount": 500, "currency": "JPY"}},
        )
        order = api.delivered_order(account, item["item_id"])
        receipt = pay(api, "restart-key", payment(alice, bob))
        events = events_since(api, "0", limit=1000)

        mock.restart()

        assert mock.print_("--print-api-key") == api_key
        assert mock.print_("--print-verify-key") == verify_line
        assert api.get(f"/v1/links/{alice}") == {"account_id": account}
        assert api.get(f"/v1/orders/{order['order_id']}") == order
        assert api.get(f"/v1/items/{item['item_id']}") == item
        assert pay(api, "restart-key", payment(alice, bob)) == receipt
        assert api.get(f"/v1/accounts/{account}")["payment_count"] == 1
        assert events_since(api, "0", limit=1000) == events
        # Not seeded twice, and item ids go on from where they were.
        shop_items = api.get("/v1/shops/stationery")["items"]
        assert [i["item_id"] for i in shop_items].count(item["item_id"]) == 1
        assert len(shop_items) == 7
        nxt = api.post(
            "/v1/shops/stationery/items",
            {"title": "Ink", "price": {"amount": 300, "currency": "JPY"}},
        )
        assert int(nxt["item_id"][4:]) == int(item["item_id"][4:]) + 1
        # A token issued before the restart still works once.
        carol = new_user()
        assert api.post("/v1/links", {"token": spare_token, "matrix_user_id": carol}) == {
            "account_id": account
        }
    finally:
        mock.stop()


def test_junk_at_every_endpoint_is_never_a_500(mock: MockProcess, api: CommerceClient) -> None:
    account = api.linked_account("Junk", new_user())
    order = api.post("/v1/orders", {"account_id": account, "item_id": "item1"})["order_id"]
    endpoints = [
        ("GET", "/v1/shops/{x}"),
        ("POST", "/v1/shops/teahouse/items"),
        ("GET", "/v1/items/{x}"),
        ("GET", "/v1/tracks/{x}"),
        ("POST", "/v1/accounts"),
        ("GET", "/v1/accounts/{x}"),
        ("POST", "/v1/accounts/{x}/link_token"),
        ("POST", "/v1/links"),
        ("GET", "/v1/links/{x}"),
        ("DELETE", "/v1/links/{x}"),
        ("POST", "/v1/orders"),
        ("GET", "/v1/orders/{x}"),
        ("POST", f"/v1/orders/{order}/pay"),
        ("POST", "/v1/orders/{x}/deliver"),
        ("POST", "/v1/payments"),
        ("GET", "/v1/events?after={x}&timeout={x}&limit={x}"),
        ("GET", "/images/item/{x}"),
        ("GET", "/item/{x}"),
    ]
    ids = ["%00", "%ff%fe", "¹²", "a" * 3000, "@:", "%40x%3Ay%2F..", "-1", "1e9", "null"]
    bodies: list[bytes] = [
        b"null",
        b"{}",
        b'{"title": {"a": 1}, "price": {"amount": 1e400, "currency": "CNY"}}',
        b'{"display_name": "\\u0000", "token": [], "matrix_user_id": 7}',
        b'{"account_id": 1, "item_id": {}, "quantity": 99999999999999999999999}',
        b'{"payer": "@a:b", "payee": "@c:d", "amount": 10, "currency": "CNY", "room_id": "!r:b",'
        b' "event_id": "$e", "x": null}',
        b"[" * 3000,
        '{"display_name": "\U0001f600"}'.encode(),
    ]
    for method, template in endpoints:
        for ident in ids:
            path = template.replace("{x}", ident)
            for body in bodies if method != "GET" else [b""]:
                r = raw(mock, method, path, data=body, headers={"Idempotency-Key": "junk-\u00e9"})
                assert r.status_code < 500, (method, path, body[:40], r.text[:200])
                if r.headers.get("Content-Type", "").startswith("application/json"):
                    assert r.status_code == 200 or "errcode" in r.json()
