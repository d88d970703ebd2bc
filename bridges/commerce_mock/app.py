"""The mock's HTTP routes (aiohttp): JSON under `/v1` with bearer auth, and the public pages and
images that item and track URLs point to.

Errors are `{"errcode", "error"}` with the statuses of the module's own endpoints, raised as the
kinds of `rooms.errors` and answered by one middleware, which checks in this order: path and
method (404/405 `M_UNRECOGNIZED`), the bearer token (401), the body (413, 400), then the fields
and the rules. Bad input never reaches a 500.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attr
from aiohttp import web
from signedjson.types import SigningKey

from bridges.commerce_mock import catalogue, receipts
from bridges.commerce_mock.store import (
    ITEM_CREATED,
    Event,
    IdempotencyConflict,
    Item,
    Order,
    Shop,
    Store,
    Track,
)
from rooms.errors import (
    BadJson,
    Conflict,
    InvalidParam,
    LaiwangError,
    MissingParam,
    NotFound,
    NotJson,
    TooLarge,
)
from rooms.money import format_amount, require_amount, require_currency
from rooms.shares import is_http_url
from rooms.validation import (
    check_event_id,
    check_user_id,
    reject_unknown_keys,
    require,
    require_int,
    require_room_id,
    require_str,
    require_user_id,
)

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_BODY_BYTES = 64 * 1024
LINK_TOKEN_TTL_MS = 10 * 60 * 1000
MAX_POLL_TIMEOUT_MS = 60_000
DEFAULT_EVENT_LIMIT, MAX_EVENT_LIMIT = 100, 1000
MAX_QUANTITY = 99
MAX_TITLE = 200
MAX_IDEMPOTENCY_KEY = 255
# A long poll also rereads the table this often, so writes by another process are seen.
POLL_RECHECK_S = 1.0


def now_ms() -> int:
    return int(time.time() * 1000)


@attr.s(auto_attribs=True)
class MockConfig:
    api_key: str
    provider: str
    public_url: str  # where the mock's pages and images are reached, no trailing slash
    signing_key: SigningKey
    link_token_ttl_ms: int = LINK_TOKEN_TTL_MS
    clock: Callable[[], int] = now_ms


def _error(status: int, errcode: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"errcode": errcode, "error": message, **extra}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except LaiwangError as e:
        return _error(e.status, e.errcode, e.sentence, **e.extra)
    except web.HTTPRequestEntityTooLarge:
        return _error(413, "M_TOO_LARGE", f"Request body is larger than {MAX_BODY_BYTES} bytes")
    except web.HTTPMethodNotAllowed:
        return _error(405, "M_UNRECOGNIZED", "Method not allowed on this path")
    except web.HTTPNotFound:
        return _error(404, "M_UNRECOGNIZED", "Unrecognized request")
    except web.HTTPException:
        raise
    except Exception:
        logger.exception("Unhandled error on %s %s", request.method, request.path)
        return _error(500, "M_UNKNOWN", "Internal error")


def auth_middleware(api_key: str) -> Any:
    expected = f"Bearer {api_key}".encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Path and method first (an unknown route answers 404/405 before the token).
        routing_error = request.match_info.http_exception
        if routing_error is not None:
            raise routing_error
        if request.path.startswith("/v1/"):
            header = request.headers.get("Authorization")
            if header is None:
                raise _auth_error("M_MISSING_TOKEN", "Missing bearer token")
            if not hmac.compare_digest(header.encode(), expected):
                raise _auth_error("M_UNKNOWN_TOKEN", "Unrecognised bearer token")
        return await handler(request)

    return middleware


def _auth_error(errcode: str, message: str) -> LaiwangError:
    error = LaiwangError(message, errcode=errcode)
    error.status = 401
    return error


async def json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if len(raw) > MAX_BODY_BYTES:
        raise TooLarge(f"Request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise NotJson("Request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadJson(None, "Request body must be a JSON object")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _query_int(request: web.Request, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise InvalidParam(name, "must be a non-negative integer")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise InvalidParam(name, f"must be between {minimum} and {maximum}")
    return value


def _title(body: Mapping[str, Any], key: str) -> str:
    value = require_str(body, key, max_len=MAX_TITLE)
    if not value.strip():
        raise InvalidParam(key, "must not be empty")
    return value


class CommerceMock:
    """The routes, over one Store."""

    def __init__(self, store: Store, config: MockConfig):
        self.store = store
        self.config = config
        self._new_event = asyncio.Event()

    # --- rendering --------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.config.public_url}{path}"

    def shop_json(self, shop: Shop) -> dict[str, Any]:
        return {
            "shop_id": shop.shop_id,
            "name": shop.name,
            "description": shop.description,
            "currency": shop.currency,
            "url": self._url(f"/shop/{shop.shop_id}"),
            "image_url": self._url(f"/images/shop/{shop.shop_id}.png"),
        }

    def item_json(self, item: Item) -> dict[str, Any]:
        return {
            "item_id": item.item_id,
            "shop_id": item.shop_id,
            "shop_name": item.shop_name,
            "title": item.title,
            "price": {"amount": item.amount, "currency": item.currency},
            "url": self._url(f"/item/{item.item_id}"),
            "image_url": item.image_url or self._url(f"/images/item/{item.item_id}.png"),
            "created_ts": item.created_ts,
        }

    def track_json(self, track: Track) -> dict[str, Any]:
        return {
            "track_id": track.track_id,
            "title": track.title,
            "artist": track.artist,
            "album": track.album,
            "duration_ms": track.duration_ms,
            "url": self._url(f"/track/{track.track_id}"),
            "cover_url": self._url(f"/images/track/{track.track_id}.png"),
        }

    def order_json(self, order: Order) -> dict[str, Any]:
        out: dict[str, Any] = {
            "order_id": order.order_id,
            "account_id": order.account_id,
            "matrix_user_id": order.matrix_user_id,
            "item_id": order.item_id,
            "quantity": order.quantity,
            "total": {"amount": order.amount, "currency": order.currency},
            "state": order.state,
            "created_ts": order.created_ts,
            "paid_ts": order.paid_ts,
            "delivered_ts": order.delivered_ts,
        }
        item = self.store.get_item(order.item_id)
        if item is not None:
            out["item"] = self.item_json(item)
        return out

    def event_json(self, event: Event) -> dict[str, Any]:
        out: dict[str, Any] = {"id": str(event.id), "type": event.type, "ts": event.ts}
        if event.type == ITEM_CREATED:
            item = self.store.get_item(event.ref)
            out["item"] = self.item_json(item) if item else None
        else:
            order = self.store.get_order(event.ref)
            if order is not None:
                # Whoever the account was linked to when it was delivered.
                out["order"] = {**self.order_json(order), "matrix_user_id": event.matrix_user_id}
        return out

    # --- catalogue --------------------------------------------------------------------------

    def _shop(self, shop_id: str) -> Shop:
        shop = self.store.get_shop(shop_id)
        if shop is None:
            raise NotFound(f"No shop {shop_id!r}")
        return shop

    def _item(self, item_id: str) -> Item:
        item = self.store.get_item(item_id)
        if item is None:
            raise NotFound(f"No item {item_id!r}")
        return item

    async def list_shops(self, request: web.Request) -> web.Response:
        return web.json_response({"shops": [self.shop_json(s) for s in self.store.list_shops()]})

    async def get_shop(self, request: web.Request) -> web.Response:
        shop = self._shop(request.match_info["shop_id"])
        items = [self.item_json(i) for i in self.store.shop_items(shop.shop_id)]
        return web.json_response({**self.shop_json(shop), "items": items})

    async def add_item(self, request: web.Request) -> web.Response:
        shop = self._shop(request.match_info["shop_id"])
        body = await json_body(request)
        reject_unknown_keys(body, ("title", "price", "image_url"))
        title = _title(body, "title")
        price = require(body, "price")
        if not isinstance(price, dict):
            raise InvalidParam("price", "must be an object {amount, currency}")
        reject_unknown_keys(price, ("amount", "currency"), "price")
        if price.get("currency") is None:
            raise MissingParam("price.currency")
        currency = require_currency(price["currency"], "price.currency")
        if price.get("amount") is None:
            raise MissingParam("price.amount")
        amount = require_amount(price["amount"], currency, "price.amount")
        image_url = body.get("image_url")
        if image_url is not None and not is_http_url(image_url):
            raise InvalidParam("image_url", "must be an http:// or https:// URL")
        item = self.store.add_item(
            shop.shop_id, title, amount, currency, image_url, self.config.clock()
        )
        self._notify()
        return web.json_response(self.item_json(item))

    async def get_item(self, request: web.Request) -> web.Response:
        return web.json_response(self.item_json(self._item(request.match_info["item_id"])))

    async def list_tracks(self, request: web.Request) -> web.Response:
        tracks = [self.track_json(t) for t in self.store.list_tracks()]
        return web.json_response({"tracks": tracks})

    async def get_track(self, request: web.Request) -> web.Response:
        track = self.store.get_track(request.match_info["track_id"])
        if track is None:
            raise NotFound(f"No track {request.match_info['track_id']!r}")
        return web.json_response(self.track_json(track))

    # --- accounts and links -----------------------------------------------------------------

    def _new_token(self) -> tuple[str, int]:
        return secrets.token_urlsafe(24), self.config.clock() + self.config.link_token_ttl_ms

    async def create_account(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        reject_unknown_keys(body, ("display_name",))
        display_name = _title(body, "display_name")
        account_id = "acct_" + secrets.token_hex(8)
        token, expires_ts = self._new_token()
        self.store.create_account(account_id, display_name, token, expires_ts, self.config.clock())
        return web.json_response(
            {"account_id": account_id, "link_token": token, "expires_ts": expires_ts}
        )

    def _account_id(self, request: web.Request) -> str:
        account = self.store.get_account(request.match_info["account_id"])
        if account is None:
            raise NotFound(f"No account {request.match_info['account_id']!r}")
        return account.account_id

    async def get_account(self, request: web.Request) -> web.Response:
        account = self.store.get_account(self._account_id(request))
        assert account is not None
        return web.json_response(
            {
                "account_id": account.account_id,
                "display_name": account.display_name,
                "matrix_user_id": account.matrix_user_id,
                "balances": self.store.balances(account.account_id),
                "payment_count": self.store.payment_count(account.account_id),
            }
        )

    async def new_link_token(self, request: web.Request) -> web.Response:
        account_id = self._account_id(request)
        token, expires_ts = self._new_token()
        self.store.add_link_token(account_id, token, expires_ts)
        return web.json_response(
            {"account_id": account_id, "link_token": token, "expires_ts": expires_ts}
        )

    async def link(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        reject_unknown_keys(body, ("token", "matrix_user_id"))
        token = require_str(body, "token", max_len=255)
        matrix_user_id = require_user_id(body, "matrix_user_id")
        account_id = self.store.link(token, matrix_user_id, self.config.clock())
        if account_id is None:
            raise InvalidParam("token", "is unknown, already used or expired")
        return web.json_response({"account_id": account_id})

    def _linked_user(self, request: web.Request) -> str:
        return check_user_id(request.match_info["matrix_user_id"], "matrix_user_id")

    async def get_link(self, request: web.Request) -> web.Response:
        user_id = self._linked_user(request)
        account_id = self.store.account_of_user(user_id)
        if account_id is None:
            raise NotFound(f"No account is linked to {user_id}")
        return web.json_response({"account_id": account_id})

    async def unlink(self, request: web.Request) -> web.Response:
        user_id = self._linked_user(request)
        if not self.store.unlink(user_id):
            raise NotFound(f"No account is linked to {user_id}")
        return web.json_response({})

    # --- orders -----------------------------------------------------------------------------

    def _order(self, request: web.Request) -> Order:
        order = self.store.get_order(request.match_info["order_id"])
        if order is None:
            raise NotFound(f"No order {request.match_info['order_id']!r}")
        return order

    async def create_order(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        reject_unknown_keys(body, ("account_id", "item_id", "quantity"))
        account_id = require_str(body, "account_id", max_len=255)
        item_id = require_str(body, "item_id", max_len=255)
        quantity = (
            require_int(body, "quantity", minimum=1, maximum=MAX_QUANTITY)
            if body.get("quantity") is not None
            else 1
        )
        if self.store.get_account(account_id) is None:
            raise NotFound(f"No account {account_id!r}")
        item = self._item(item_id)
        order_id = "ord_" + secrets.token_hex(8)
        self.store.create_order(order_id, account_id, item, quantity, self.config.clock())
        order = self.store.get_order(order_id)
        assert order is not None
        return web.json_response(self.order_json(order))

    async def get_order(self, request: web.Request) -> web.Response:
        return web.json_response(self.order_json(self._order(request)))

    async def pay_order(self, request: web.Request) -> web.Response:
        order = self._order(request)
        # Paying a paid or delivered order again changes nothing and answers its state.
        self.store.pay_order(order.order_id, self.config.clock())
        return web.json_response(self.order_json(self._order(request)))

    async def deliver_order(self, request: web.Request) -> web.Response:
        order = self._order(request)
        if order.state == "created":
            raise Conflict("The order is not paid yet")
        if self.store.deliver_order(order.order_id, self.config.clock()):
            self._notify()
        return web.json_response(self.order_json(self._order(request)))

    # --- payments ---------------------------------------------------------------------------

    async def get_payment(self, request: web.Request) -> web.Response:
        """Whether a payment was made under a key, for a caller that lost the answer (its
        process died between the charge and storing the receipt)."""
        receipt = self.store.receipt_of(request.match_info["key"])
        if receipt is None:
            raise NotFound("No payment under this key")
        return web.json_response({"receipt": receipt})

    async def pay(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            raise MissingParam("Idempotency-Key")
        if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY or not key.isprintable():
            raise InvalidParam("Idempotency-Key", f"must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
        body = await json_body(request)
        reject_unknown_keys(body, ("payer", "payee", "amount", "currency", "room_id", "event_id"))
        payer = require_user_id(body, "payer")
        payee = require_user_id(body, "payee")
        currency = require_currency(require(body, "currency"))
        amount = require_amount(require(body, "amount"), currency, "amount")
        room_id = require_room_id(body, "room_id")
        event_id = check_event_id(require(body, "event_id"), "event_id")
        if payer == payee:
            raise InvalidParam("payee", "must differ from the payer")
        fields = {
            "payer": payer,
            "payee": payee,
            "amount": amount,
            "currency": currency,
            "room_id": room_id,
            "event_id": event_id,
        }
        request_hash = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
        try:
            # A replay answers even if the accounts were unlinked since.
            receipt = self.store.replay(key, request_hash)
            if receipt is None:
                payer_account = self.store.account_of_user(payer)
                if payer_account is None:
                    raise NotFound("The payer has no linked commerce account", param="payer")
                payee_account = self.store.account_of_user(payee)
                if payee_account is None:
                    raise NotFound("The payee has no linked commerce account", param="payee")
                receipt = self.store.charge(
                    key,
                    request_hash,
                    payer_account,
                    payee_account,
                    amount,
                    currency,
                    lambda: receipts.signed_receipt(
                        receipt_id=receipts.new_receipt_id(),
                        provider=self.config.provider,
                        key=self.config.signing_key,
                        payer=payer,
                        payee=payee,
                        amount=amount,
                        currency=currency,
                        room_id=room_id,
                        event_id=event_id,
                    ),
                    self.config.clock(),
                ).receipt
        except IdempotencyConflict:
            raise Conflict("This Idempotency-Key was used for a different payment") from None
        return web.json_response({"receipt": receipt})

    # --- events -----------------------------------------------------------------------------

    def _notify(self) -> None:
        self._new_event.set()
        self._new_event = asyncio.Event()

    async def events(self, request: web.Request) -> web.Response:
        after = _query_int(request, "after", 0, 0, 2**62)
        timeout_ms = _query_int(request, "timeout", 0, 0, MAX_POLL_TIMEOUT_MS)
        limit = _query_int(request, "limit", DEFAULT_EVENT_LIMIT, 1, MAX_EVENT_LIMIT)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        while True:
            waiter = self._new_event
            found = self.store.events_after(after, limit)
            remaining = deadline - loop.time()
            if found or remaining <= 0:
                break
            try:
                await asyncio.wait_for(waiter.wait(), min(remaining, POLL_RECHECK_S))
            except asyncio.TimeoutError:
                pass
        next_cursor = found[-1].id if found else after
        return web.json_response(
            {"events": [self.event_json(e) for e in found], "next": str(next_cursor)}
        )

    # --- public pages -----------------------------------------------------------------------

    async def image(self, request: web.Request) -> web.Response:
        kind, name = request.match_info["kind"], request.match_info["name"]
        ident = name.removesuffix(".png")
        exists = {
            "shop": self.store.get_shop,
            "item": self.store.get_item,
            "track": self.store.get_track,
        }.get(kind)
        if not name.endswith(".png") or exists is None or exists(ident) is None:
            raise NotFound("No such image")
        return web.Response(
            body=catalogue.png_for(kind, ident),
            content_type="image/png",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    def _page(self, title: str, description: str, image: str, url: str) -> web.Response:
        t, d = html.escape(title), html.escape(description)
        page = (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{t}</title>"
            f"<meta property='og:title' content='{t}'>"
            f"<meta property='og:description' content='{d}'>"
            f"<meta property='og:image' content='{html.escape(image)}'>"
            f"<meta property='og:url' content='{html.escape(url)}'>"
            f"</head><body><h1>{t}</h1><p>{d}</p>"
            f"<img src='{html.escape(image)}' alt='{t}'></body></html>"
        )
        return web.Response(text=page, content_type="text/html")

    async def item_page(self, request: web.Request) -> web.Response:
        item = self.item_json(self._item(request.match_info["item_id"]))
        price = format_amount(item["price"]["amount"], item["price"]["currency"])
        description = f"{item['shop_name']} · {price}"
        return self._page(item["title"], description, item["image_url"], item["url"])

    async def track_page(self, request: web.Request) -> web.Response:
        found = self.store.get_track(request.match_info["track_id"])
        if found is None:
            raise NotFound("No such track")
        track = self.track_json(found)
        description = f"{track['artist']} · {track['album']}"
        return self._page(track["title"], description, track["cover_url"], track["url"])

    async def shop_page(self, request: web.Request) -> web.Response:
        shop = self.shop_json(self._shop(request.match_info["shop_id"]))
        return self._page(shop["name"], shop["description"], shop["image_url"], shop["url"])

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})


def make_app(store: Store, config: MockConfig) -> web.Application:
    mock = CommerceMock(store, config)
    app = web.Application(
        middlewares=[errors_middleware, auth_middleware(config.api_key)],
        client_max_size=MAX_BODY_BYTES,
    )
    app["mock"] = mock
    app.router.add_routes(
        [
            web.get("/v1/shops", mock.list_shops),
            web.get("/v1/shops/{shop_id}", mock.get_shop),
            web.post("/v1/shops/{shop_id}/items", mock.add_item),
            web.get("/v1/items/{item_id}", mock.get_item),
            web.get("/v1/tracks", mock.list_tracks),
            web.get("/v1/tracks/{track_id}", mock.get_track),
            web.post("/v1/accounts", mock.create_account),
            web.get("/v1/accounts/{account_id}", mock.get_account),
            web.post("/v1/accounts/{account_id}/link_token", mock.new_link_token),
            web.post("/v1/links", mock.link),
            web.get("/v1/links/{matrix_user_id}", mock.get_link),
            web.delete("/v1/links/{matrix_user_id}", mock.unlink),
            web.post("/v1/orders", mock.create_order),
            web.get("/v1/orders/{order_id}", mock.get_order),
            web.post("/v1/orders/{order_id}/pay", mock.pay_order),
            web.post("/v1/orders/{order_id}/deliver", mock.deliver_order),
            web.post("/v1/payments", mock.pay),
            web.get("/v1/payments/{key}", mock.get_payment),
            web.get("/v1/events", mock.events),
            web.get("/health", mock.health),
            web.get("/images/{kind}/{name}", mock.image),
            web.get("/item/{item_id}", mock.item_page),
            web.get("/track/{track_id}", mock.track_page),
            web.get("/shop/{shop_id}", mock.shop_page),
        ]
    )
    return app
