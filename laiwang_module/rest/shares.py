"""`/timeline`, `/shares/…` and `/feed` endpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from laiwang_module.rest.base import JsonDict, Router, Servlet, not_found
from rooms import shares
from rooms.validation import InvalidParam, MissingParam, is_room_id, reject_unknown_keys

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest

    from laiwang_module.handlers.shares import SharesHandler


def query_param(request: SynapseRequest, name: str) -> str | None:
    values = (request.args or {}).get(name.encode("ascii"))
    if not values:
        return None
    try:
        return values[-1].decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidParam(name, "is not valid UTF-8") from None


def parse_item_request(body: JsonDict) -> tuple[str, str | None, str | None, str | None]:
    """`POST /shares/item` `{room_id, url | item_id, order_id?}`."""
    reject_unknown_keys(body, ("room_id", "url", "item_id", "order_id"))
    room_id = body.get("room_id")
    if room_id is None:
        raise MissingParam("room_id")
    if not is_room_id(room_id):
        raise InvalidParam("room_id", "must be a Matrix room id like !abc:example.org")
    url, item_id, order_id = body.get("url"), body.get("item_id"), body.get("order_id")
    if (url is None) == (item_id is None):
        raise InvalidParam("url", "give exactly one of 'url' and 'item_id'")
    if url is not None and not shares.is_http_url(url):
        raise InvalidParam("url", "must be an http:// or https:// URL")
    for key, value in (("item_id", item_id), ("order_id", order_id)):
        if value is not None and (
            not isinstance(value, str) or not value or len(value) > shares.MAX_ID
        ):
            raise InvalidParam(
                key, f"must be a non-empty string of at most {shares.MAX_ID} characters"
            )
    return str(room_id), url, item_id, order_id


class SharesServlet(Servlet):
    def register(self, router: Router) -> None:
        router.add("GET", "/timeline", self.on_timeline)
        router.add("POST", "/shares/forward", self.on_forward)
        router.add("POST", "/shares/item", self.on_item)
        router.add("GET", "/feed", self.on_feed)

    @property
    def _handler(self) -> SharesHandler:
        return self.server.shares_handler

    async def on_timeline(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        return 200, {"room_id": await self._handler.open_timeline(user_id)}

    async def on_forward(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        room_id, event_id, comment = shares.parse_forward_request(self.json_body(request))
        return 200, {"event_id": await self._handler.forward(user_id, room_id, event_id, comment)}

    async def on_item(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        await self.auth(request)
        parse_item_request(self.json_body(request))
        # The card is resolved from the commerce service, which the commerce feature brings;
        # until then a valid request gets this answer (and changes nothing).
        if self.server.config.commerce.base_url is None:
            raise not_found(
                "Shop-item shares need the commerce service: this server has no "
                "commerce.base_url configured."
            )
        raise not_found("Shop-item shares are not available on this server yet.")

    async def on_feed(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        limit = shares.parse_feed_limit(query_param(request, "limit"))
        token = query_param(request, "from")
        before = shares.decode_cursor(token) if token is not None else None
        return 200, await self._handler.get_feed(user_id, limit, before)
