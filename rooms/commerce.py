"""Commerce: how the commerce service's catalogue, accounts and payments map onto Matrix.

Pure rules shared by the module (its `/commerce/…` and `/shares/{item,music}` endpoints, AA
provider payments) and the commerce bridge: request bodies, shop room aliases, catalogue URLs,
the card of an item or a track as a share, and the idempotency key of a provider payment. The
commerce service is trusted for what it sells, not for the shape of what it answers: a card
that would not pass the share rules is refused here (BadGateway), before anything is sent.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import attr
from canonicaljson import encode_canonical_json

from rooms.errors import BadGateway, InvalidParam, MissingParam, ValidationError
from rooms.shares import MAX_URL, Item, Music, is_http_url, parse_item, parse_music
from rooms.validation import is_room_id, reject_unknown_keys

# Errcodes of the commerce endpoints (docs/api/commerce.md).
COMMERCE_UNAVAILABLE = "ORG.LAIWANG.COMMERCE_UNAVAILABLE"
COMMERCE_NOT_LINKED = "ORG.LAIWANG.COMMERCE_NOT_LINKED"

# Catalogue and shop ids as the service gives them; they become room alias localparts.
_ID_RE = re.compile(r"^[A-Za-z0-9._=\-]{1,64}$")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")
SHOP_ALIAS_PREFIX = "shop_"


def is_catalogue_id(value: Any) -> bool:
    return isinstance(value, str) and _ID_RE.match(value) is not None


def check_shop_id(value: Any) -> str:
    """A shop id from a path."""
    if not is_catalogue_id(value):
        raise InvalidParam("shop_id", "must be a shop id of the commerce service")
    return str(value)


def shop_alias(shop_id: str, server_name: str) -> str:
    """The alias of a shop's room, kept by the commerce bridge on the homeserver's domain."""
    return f"#{SHOP_ALIAS_PREFIX}{shop_id}:{server_name}"


def parse_link_body(body: Mapping[str, Any]) -> str:
    """`POST /commerce/link` `{"token"}`: the one-time link token from the shop's site."""
    reject_unknown_keys(body, ("token",))
    token = body.get("token")
    if token is None:
        raise MissingParam("token")
    if not isinstance(token, str) or not _TOKEN_RE.match(token):
        raise InvalidParam("token", "must be the link token the shop gave you")
    return token


def catalogue_id_from_url(url: str, kind: str, service_urls: tuple[str, ...]) -> str:
    """The id in `<service>/<kind>/<id>`, for a URL on one of the service's own bases (its
    API base or the public base its cards name). Anything else is not a card of this service."""
    parts = urlsplit(url)
    for base in service_urls:
        b = urlsplit(base)
        if (parts.scheme, parts.netloc.lower()) != (b.scheme, b.netloc.lower()):
            continue
        prefix = b.path.rstrip("/") + f"/{kind}/"
        if parts.path.startswith(prefix):
            candidate = unquote(parts.path[len(prefix) :])
            if is_catalogue_id(candidate):
                return candidate
    raise InvalidParam("url", f"is not a {kind} of this server's commerce service")


@attr.s(frozen=True, slots=True, auto_attribs=True)
class CardShareRequest:
    """`POST /shares/item` or `/shares/music`: a catalogue entry, by id or by its URL."""

    room_id: str
    catalogue_id: str | None
    url: str | None
    order_id: str | None = None


def _card_request(
    body: Mapping[str, Any], id_key: str, extra: tuple[str, ...] = ()
) -> CardShareRequest:
    reject_unknown_keys(body, ("room_id", "url", id_key, *extra))
    room_id = body.get("room_id")
    if room_id is None:
        raise MissingParam("room_id")
    if not is_room_id(room_id):
        raise InvalidParam("room_id", "must be a Matrix room id like !abc:example.org")
    url, catalogue_id = body.get("url"), body.get(id_key)
    if (url is None) == (catalogue_id is None):
        raise InvalidParam("url", f"give exactly one of 'url' and '{id_key}'")
    if url is not None and not is_http_url(url):
        raise InvalidParam(
            "url", f"must be an http:// or https:// URL of at most {MAX_URL} characters"
        )
    if catalogue_id is not None and not is_catalogue_id(catalogue_id):
        raise InvalidParam(id_key, "must be an id of the commerce service's catalogue")
    order_id = body.get("order_id")
    if order_id is not None and not is_catalogue_id(order_id):
        raise InvalidParam("order_id", "must be an order id of the commerce service")
    return CardShareRequest(str(room_id), catalogue_id, url, order_id)


def parse_item_share_request(body: Mapping[str, Any]) -> CardShareRequest:
    """`POST /shares/item` `{room_id, item_id | url, order_id?}`."""
    return _card_request(body, "item_id", ("order_id",))


def parse_music_share_request(body: Mapping[str, Any]) -> CardShareRequest:
    """`POST /shares/music` `{room_id, track_id | url}`."""
    return _card_request(body, "track_id")


def _field(card: Mapping[str, Any], key: str) -> Any:
    value = card.get(key)
    if value is None:
        raise BadGateway(f"The commerce service's card has no {key!r}")
    return value


def item_share(
    item: Mapping[str, Any], *, image: str | None, order_id: str | None, bought: bool
) -> Item:
    """The share of an item card (`GET /v1/items/{id}`) as the share rules accept it."""
    price = _field(item, "price")
    block: dict[str, Any] = {
        "item_id": _field(item, "item_id"),
        "shop_id": _field(item, "shop_id"),
        "shop_name": _field(item, "shop_name"),
        "title": _field(item, "title"),
        "price": {"amount": price.get("amount"), "currency": price.get("currency")}
        if isinstance(price, Mapping)
        else price,
        "url": _field(item, "url"),
        "bought": bought,
    }
    if image is not None:
        block["image"] = image
    if order_id is not None:
        block["order_id"] = order_id
    try:
        return parse_item(block)
    except ValidationError as e:
        raise BadGateway(
            f"The commerce service's item card cannot be shared ({e.sentence})"
        ) from None


def music_share(track: Mapping[str, Any], *, cover: str | None) -> Music:
    """The share of a track card (`GET /v1/tracks/{id}`)."""
    block: dict[str, Any] = {
        "title": _field(track, "title"),
        "artist": _field(track, "artist"),
        "url": _field(track, "url"),
    }
    for key in ("album", "duration_ms"):
        if track.get(key) is not None:
            block[key] = track[key]
    if cover is not None:
        block["cover"] = cover
    try:
        return parse_music(block)
    except ValidationError as e:
        raise BadGateway(
            f"The commerce service's track card cannot be shared ({e.sentence})"
        ) from None


def order_is_callers(order: Mapping[str, Any], user_id: str, item_id: str) -> bool:
    """Whether an order (`GET /v1/orders/{id}`) is the caller's purchase of this item: the
    service names the Matrix user its account is linked to now."""
    return order.get("matrix_user_id") == user_id and order.get("item_id") == item_id


def payment_idempotency_key(room_id: str, request_event_id: str, payer: str) -> str:
    """One charge per share: every retry, on every worker, after any restart, sends this key, and
    the service charges a key once."""
    digest = hashlib.sha256(encode_canonical_json(["aa-pay", room_id, request_event_id, payer]))
    return "laiwang-aa-" + digest.hexdigest()


def payment_body(
    room_id: str, request_event_id: str, payer: str, payee: str, amount: int, currency: str
) -> dict[str, Any]:
    """`POST /v1/payments`: what the receipt will name, so the AA rules accept it."""
    return {
        "payer": payer,
        "payee": payee,
        "amount": amount,
        "currency": currency,
        "room_id": room_id,
        "event_id": request_event_id,
    }
