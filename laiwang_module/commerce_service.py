"""The commerce service's HTTP API (docs/api/commerce.md), as the module calls it.

Every call goes through Synapse's outgoing HTTP client (its IP range blocklist applies: a
private or loopback service needs `ip_range_whitelist`) and is bounded by `commerce.timeout`
as a whole, connection, headers and body: a caller gets 503
`ORG.LAIWANG.COMMERCE_UNAVAILABLE` within it and the Synapse request thread is never blocked.
The service's own 4xx errors keep their status and errcode (a used link token is the caller's
mistake); anything else it answers is a 502.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

from synapse.module_api import ModuleApi
from twisted.web.http_headers import Headers

from laiwang_module.config import CommerceConfig
from laiwang_module.synapse_compat import read_response_body, with_timeout
from rooms.commerce import COMMERCE_UNAVAILABLE
from rooms.errors import (
    BadGateway,
    Conflict,
    Forbidden,
    InvalidParam,
    LaiwangError,
    NotFound,
    Unavailable,
)

logger = logging.getLogger(__name__)

MAX_JSON_BYTES = 1024 * 1024
CARD_TTL_MS = 30 * 1000
MAX_CARDS = 1000
MAX_IMAGE_BYTES = 5 * 1024 * 1024
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")

# The service's 4xx answers that are the caller's business, by status.
_PASSED_ON: dict[int, type[LaiwangError]] = {
    400: InvalidParam,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
}


class ServiceAnswer(Exception):
    """A non-2xx answer of the service: its status and Matrix-style error body."""

    def __init__(self, status: int, body: Any):
        self.status = status
        self.errcode = body.get("errcode") if isinstance(body, dict) else None
        self.error = body.get("error") if isinstance(body, dict) else None
        super().__init__(f"{status} {self.errcode}")

    def as_error(self) -> LaiwangError:
        kind = _PASSED_ON.get(self.status)
        message = self.error if isinstance(self.error, str) else "Refused by the commerce service"
        if kind is None:
            return BadGateway(f"The commerce service answered {self.status}")
        if kind is InvalidParam:
            return InvalidParam(None, message, errcode=self.errcode or "M_INVALID_PARAM")
        return kind(message, errcode=self.errcode or kind.errcode)


def unavailable() -> Unavailable:
    return Unavailable(
        "The commerce service is not available right now; nothing was done, try again later",
        errcode=COMMERCE_UNAVAILABLE,
    )


class CommerceService:
    def __init__(self, config: CommerceConfig, api: ModuleApi):
        assert config.base_url is not None and config.api_key is not None
        self.base_url = config.base_url
        self._auth = f"Bearer {config.api_key}".encode()
        self._timeout_s = config.timeout_ms / 1000
        self._api = api
        # Not authoritative (a copy of the service's catalogue): safe on every worker.
        self._cards: dict[str, tuple[int, dict[str, Any]]] = {}

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """JSON in, JSON out. Raises ServiceAnswer for a non-2xx answer, Unavailable when the
        service does not answer in time, BadGateway for an answer that is not JSON."""
        all_headers = {b"Authorization": [self._auth], b"Accept": [b"application/json"]}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            all_headers[b"Content-Type"] = [b"application/json"]
        for name, value in (headers or {}).items():
            all_headers[name.encode()] = [value.encode()]

        async def call() -> tuple[int, bytes]:
            response = await self._api.http_client.request(
                method, self.base_url + path, data=data, headers=Headers(all_headers)
            )
            return response.code, await read_response_body(response, MAX_JSON_BYTES)

        try:
            status, raw = await with_timeout(self._api, call, self._timeout_s)
        except Exception as e:
            # A timeout, a refused connection, a blocked address: the same to the caller.
            logger.warning("commerce service %s %s: %s", method, path.split("?")[0], e)
            raise unavailable() from e
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            raise BadGateway("The commerce service answered something that is not JSON") from None
        if not 200 <= status < 300:
            if status >= 500:
                logger.warning("commerce service %s %s answered %s", method, path, status)
                raise unavailable()
            raise ServiceAnswer(status, answer)
        return answer

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """A call whose refusals are passed on to the caller as they are."""
        try:
            return await self._call(method, path, body)
        except ServiceAnswer as e:
            raise e.as_error() from None

    # --- accounts ---

    async def link(self, token: str, user_id: str) -> str:
        answer = await self.call("POST", "/v1/links", {"token": token, "matrix_user_id": user_id})
        return str(answer["account_id"])

    async def linked_account(self, user_id: str) -> str | None:
        answer = await self._get_unless_missing(f"/v1/links/{quote(user_id, safe='')}")
        return None if answer is None else str(answer["account_id"])

    async def _get_unless_missing(self, path: str) -> Any:
        """The service's answer to a GET, or None when it answers 404 (no such thing)."""
        try:
            return await self._call("GET", path)
        except ServiceAnswer as e:
            if e.status == 404:
                return None
            raise e.as_error() from None

    async def unlink(self, user_id: str) -> bool:
        try:
            await self._call("DELETE", f"/v1/links/{quote(user_id, safe='')}")
        except ServiceAnswer as e:
            if e.status == 404:
                return False
            raise e.as_error() from None
        return True

    # --- catalogue and orders ---

    async def shops(self) -> list[dict[str, Any]]:
        return list((await self.call("GET", "/v1/shops")).get("shops", []))

    async def shop(self, shop_id: str) -> dict[str, Any]:
        return dict(await self.call("GET", f"/v1/shops/{quote(shop_id, safe='')}"))

    async def _card(self, path: str) -> dict[str, Any]:
        """A catalogue card, kept for CARD_TTL_MS: a card shared several times in a row (a
        popular item) costs one call; prices and titles may lag by that much."""
        now = int(self._api.get_current_time_msec())
        kept = self._cards.get(path)
        if kept is not None and kept[0] > now:
            return dict(kept[1])
        card = dict(await self.call("GET", path))
        if len(self._cards) >= MAX_CARDS:
            self._cards.clear()
        self._cards[path] = (now + CARD_TTL_MS, card)
        return dict(card)

    async def item(self, item_id: str) -> dict[str, Any]:
        return await self._card(f"/v1/items/{quote(item_id, safe='')}")

    async def track(self, track_id: str) -> dict[str, Any]:
        return await self._card(f"/v1/tracks/{quote(track_id, safe='')}")

    async def order(self, order_id: str) -> dict[str, Any] | None:
        answer = await self._get_unless_missing(f"/v1/orders/{quote(order_id, safe='')}")
        return None if answer is None else dict(answer)

    # --- payments ---

    async def pay(self, idempotency_key: str, body: dict[str, Any]) -> dict[str, Any]:
        """Charge once per key: the same key always answers the same receipt."""
        try:
            answer = await self._call(
                "POST", "/v1/payments", body, headers={"Idempotency-Key": idempotency_key}
            )
        except ServiceAnswer as e:
            raise e.as_error() from None
        return _receipt_of(answer)

    async def payment(self, idempotency_key: str) -> dict[str, Any] | None:
        """The receipt of the charge made under this key, or None if none was made."""
        answer = await self._get_unless_missing(f"/v1/payments/{quote(idempotency_key, safe='')}")
        return None if answer is None else _receipt_of(answer)

    # --- public files (images of cards) ---

    async def fetch_image(self, url: str) -> tuple[bytes, str]:
        """An image a card names (served by the service, no key needed): its bytes and type."""

        async def call() -> tuple[int, str, bytes]:
            response = await self._api.http_client.request("GET", url)
            types = response.headers.getRawHeaders(b"Content-Type") or [b""]
            body = await read_response_body(response, MAX_IMAGE_BYTES)
            return response.code, types[0].decode("latin-1").split(";")[0].strip(), body

        try:
            status, content_type, body = await with_timeout(self._api, call, self._timeout_s)
        except Exception as e:
            logger.warning("commerce image fetch failed: %s", e)
            raise unavailable() from e
        if status != 200 or content_type not in IMAGE_TYPES or not body:
            raise BadGateway("The commerce service's card names an image it does not serve")
        return body, content_type


def _receipt_of(answer: Any) -> dict[str, Any]:
    """The receipt in the service's answer about a payment (502 if it has none)."""
    receipt = answer.get("receipt") if isinstance(answer, dict) else None
    if not isinstance(receipt, dict):
        raise BadGateway("The commerce service answered a payment without a receipt")
    return receipt
