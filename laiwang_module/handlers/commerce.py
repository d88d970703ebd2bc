"""Commerce: account links, shop subscriptions, item and music cards, provider charges.

The commerce service (laiwang_module/commerce_service.py) holds the links, the catalogue, the
orders and the money; this handler maps them onto Matrix. A subscription is membership of the
shop's room, which the commerce bridge keeps under `#shop_<shop_id>:<this server>`. A card's
image is copied into the media repository once per image URL and reused. A provider charge is
keyed by (room, request, payer), so every retry, on any worker, charges at most once; it is
recorded before the charge and given its receipt after; the background job finishes a payment whose
process died in between (a receipt without its event, or a charge whose receipt was never stored,
looked up at the service by its key).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import attr
from synapse.api.errors import SynapseError

from laiwang_module.commerce_service import CommerceService
from laiwang_module.crash_points import crash_point
from laiwang_module.storage.commerce import PendingPayment
from laiwang_module.synapse_compat import is_joined, upload_media
from rooms import commerce
from rooms.aa import RequestView
from rooms.commerce import COMMERCE_NOT_LINKED, CardShareRequest
from rooms.errors import Conflict, Forbidden, NotFound

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer

logger = logging.getLogger(__name__)

JOB_INTERVAL_MS = 10 * 1000


def not_enabled() -> NotFound:
    return NotFound(
        "This server has no commerce service (commerce.base_url is not configured)",
    )


class CommerceHandler:
    def __init__(self, server: LaiwangServer):
        self._server = server
        self._api = server.api
        self._store = server.store
        self._config = server.config.commerce
        self._service = CommerceService(self._config, server.api) if self._config.enabled else None

    @property
    def enabled(self) -> bool:
        return self._service is not None

    def service(self) -> CommerceService:
        if self._service is None:
            raise not_enabled()
        return self._service

    # --- links --------------------------------------------------------------------------

    async def link(self, user_id: str, token: str) -> dict[str, Any]:
        """Bind the caller to the account a one-time link token names. Raises InvalidParam
        (unknown, used or expired token), Unavailable."""
        return {"account_id": await self.service().link(token, user_id)}

    async def get_link(self, user_id: str) -> dict[str, Any]:
        """Raises NotFound when the caller has no linked account."""
        account_id = await self.service().linked_account(user_id)
        if account_id is None:
            raise NotFound("You have no linked commerce account")
        return {"account_id": account_id}

    async def unlink(self, user_id: str) -> None:
        """Raises NotFound when the caller has no linked account."""
        if not await self.service().unlink(user_id):
            raise NotFound("You have no linked commerce account")

    # --- subscriptions ------------------------------------------------------------------

    async def _shop_room(self, shop_id: str) -> str | None:
        alias = commerce.shop_alias(shop_id, self._api.server_name)
        try:
            room_id, _ = await self._api.lookup_room_alias(alias)
        except SynapseError:
            return None
        return str(room_id)

    async def subscriptions(self, user_id: str) -> dict[str, Any]:
        """The shops whose room the caller is joined to."""
        out = []
        for shop in await self.service().shops():
            shop_id = shop.get("shop_id")
            if not isinstance(shop_id, str) or not commerce.is_catalogue_id(shop_id):
                continue
            room_id = await self._shop_room(shop_id)
            if room_id is not None and await is_joined(self._api, user_id, room_id):
                out.append({"shop_id": shop_id, "name": shop.get("name"), "room_id": room_id})
        return {"subscriptions": out}

    async def subscribe(self, user_id: str, shop_id: str) -> dict[str, Any]:
        """Join the shop's room. Raises NotFound (no such shop, or the bridge has not made its
        room yet)."""
        shop = await self.service().shop(shop_id)
        room_id = await self._shop_room(shop_id)
        if room_id is None:
            raise NotFound(
                "This shop has no room on this server yet (the commerce bridge makes it)"
            )
        await self._api.update_room_membership(user_id, user_id, room_id, "join")
        # Listed in the user's Laiwang space, out of their chats (not awaited: the space may
        # have to be made first).
        self._api.run_as_background_process(
            "laiwang_space_add", self._server.spaces_handler.add_shop, user_id, room_id
        )
        return {"shop_id": shop_id, "name": shop.get("name"), "room_id": room_id}

    async def unsubscribe(self, user_id: str, shop_id: str) -> None:
        """Leave the shop's room (nothing to do when not in it). Raises NotFound (no room)."""
        room_id = await self._shop_room(shop_id)
        if room_id is None:
            raise NotFound("This shop has no room on this server")
        membership = await self._server.shares_handler.membership(room_id, user_id)
        if membership in ("join", "invite", "knock"):
            await self._api.update_room_membership(user_id, user_id, room_id, "leave")

    # --- cards --------------------------------------------------------------------------

    def _service_urls(self) -> tuple[str, ...]:
        return (self.service().base_url,)

    def _card_id(self, req: CardShareRequest, kind: str, public_urls: tuple[str, ...]) -> str:
        if req.catalogue_id is not None:
            return req.catalogue_id
        assert req.url is not None
        return commerce.catalogue_id_from_url(req.url, kind, self._service_urls() + public_urls)

    async def _image(self, user_id: str, url: Any) -> str | None:
        """The mxc copy of a card's image (made once per URL); None when the card has none."""
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return None
        known = await self._store.get_commerce_media(url)
        if known is not None:
            return known
        content, content_type = await self.service().fetch_image(url)
        name = url.rsplit("/", 1)[-1][:64] or "image"
        mxc = await upload_media(self._api, user_id, content, content_type, name)
        return await self._store.add_commerce_media(url, mxc)

    async def _public_urls(self) -> tuple[str, ...]:
        # The public base the service's cards name (its pages may be on another host than
        # its API): learnt from a shop's card, so a URL a person pastes is recognised.
        shops = await self.service().shops()
        bases = []
        for shop in shops[:1]:
            url = shop.get("url")
            if isinstance(url, str) and "/shop/" in url:
                bases.append(url.split("/shop/", 1)[0])
        return tuple(bases)

    async def share_item(self, user_id: str, req: CardShareRequest) -> dict[str, Any]:
        """Post an item card into a room the caller is joined to; `bought` when the order is
        the caller's purchase of it. Raises Forbidden (not joined; someone else's order),
        NotFound (no such item or order), InvalidParam (a URL of something else),
        Unavailable."""
        await self._server.shares_handler.require_joined(user_id, req.room_id)
        public = () if req.catalogue_id is not None else await self._public_urls()
        item_id = self._card_id(req, "item", public)
        item = await self.service().item(item_id)
        bought = False
        if req.order_id is not None:
            order = await self.service().order(req.order_id)
            if order is None:
                raise NotFound("There is no such order")
            if not commerce.order_is_callers(order, user_id, item_id):
                raise Forbidden("That order is not your purchase of this item", param="order_id")
            bought = True
        image = await self._image(user_id, item.get("image_url"))
        share = commerce.item_share(item, image=image, order_id=req.order_id, bought=bought)
        event_id = await self._server.shares_handler.post(user_id, req.room_id, share.content())
        return {"event_id": event_id}

    async def share_music(self, user_id: str, req: CardShareRequest) -> dict[str, Any]:
        """Post a track's music card into a room the caller is joined to. Raises as
        share_item."""
        await self._server.shares_handler.require_joined(user_id, req.room_id)
        public = () if req.catalogue_id is not None else await self._public_urls()
        track_id = self._card_id(req, "track", public)
        track = await self.service().track(track_id)
        cover = await self._image(user_id, track.get("cover_url"))
        share = commerce.music_share(track, cover=cover)
        event_id = await self._server.shares_handler.post(user_id, req.room_id, share.content())
        return {"event_id": event_id}

    # --- provider payments --------------------------------------------------------------

    async def charge(self, request: RequestView, payer: str) -> tuple[str, dict[str, Any]]:
        """Charge the payer's share through the service, at most once per share, and return
        (idempotency key, signed receipt). Raises Conflict (`ORG.LAIWANG.COMMERCE_NOT_LINKED`:
        the payer or the payee has no linked account; nothing is charged), Unavailable (the
        service did not answer in time: nothing is posted; a retry finishes the same charge)."""
        service = self.service()
        for who, user in (("payee", request.payee), ("payer", payer)):
            if await service.linked_account(user) is None:
                raise Conflict(
                    f"The {who} has no linked commerce account: nothing was charged",
                    errcode=COMMERCE_NOT_LINKED,
                    user_id=user,
                )
        key = commerce.payment_idempotency_key(request.room_id, request.event_id, payer)
        pending = await self._store.start_commerce_payment(
            key, request.room_id, request.event_id, payer
        )
        if pending.receipt is not None:
            return key, pending.receipt
        body = commerce.payment_body(
            request.room_id,
            request.event_id,
            payer,
            request.payee,
            request.shares[payer],
            request.currency,
        )
        receipt = await service.pay(key, body)
        crash_point(self._server.config.testing, "payment_answered", payer)
        await self._store.set_commerce_receipt(key, receipt)
        crash_point(self._server.config.testing, "payment_charged", payer)
        return key, receipt

    async def payment_sent(self, key: str, payment_event_id: str) -> None:
        await self._store.finish_commerce_payment(key, payment_event_id)

    async def finish_payments(self) -> None:
        """The background job: finish every provider payment whose `pay` died mid-way
        (`upkeep.unfinished_after`). A charge with a receipt and no event gets its event; an
        attempt without a receipt is looked up at the service by its key: charged (the process
        died before storing the receipt) it is finished the same way, never charged it is
        forgotten (the payer was answered an error, or nothing)."""
        now = int(self._api.get_current_time_msec())
        unfinished_before = now - self._server.config.upkeep.unfinished_after_ms
        for pending in await self._store.get_uncharged_payments(unfinished_before):
            try:
                receipt = await self.service().payment(pending.idempotency_key)
                if receipt is None:
                    await self._store.forget_uncharged_payment(
                        pending.idempotency_key, unfinished_before
                    )
                else:
                    await self._store.set_commerce_receipt(pending.idempotency_key, receipt)
                    await self._finish(attr.evolve(pending, receipt=receipt))
            except Exception:
                logger.exception("laiwang commerce: could not look up an unfinished payment")
        for pending in await self._store.get_charged_unsent_payments(unfinished_before):
            try:
                await self._finish(pending)
            except Exception:
                logger.exception("laiwang commerce: could not finish a provider payment")

    async def _finish(self, pending: PendingPayment) -> None:
        assert pending.receipt is not None
        event_id = await self._server.aa_handler.complete_provider_payment(
            pending.room_id, pending.request_event_id, pending.payer, pending.receipt
        )
        await self._store.finish_commerce_payment(pending.idempotency_key, event_id or "-")
