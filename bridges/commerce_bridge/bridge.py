"""The bridge: shop rooms and ghosts, item posts and delivery notices, driven by the commerce
service's event stream.

Nothing is lost or doubled across restarts: the cursor and the set of handled events live in the
bridge's database, and an event is recorded as handled in the same transaction that moves the
cursor past it. A post may still reach the homeserver without being recorded (a crash, or an
error answer after the homeserver saved it); the homeserver's deduplication of transaction ids
does not cover that everywhere (Synapse keeps them in memory, per process: not across its
restart, nor across workers). So each attempt is recorded before sending, each post names its
event (`SOURCE_KEY`), and a retry first looks in the room for a post already made.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any, cast

from mautrix.api import Method, Path
from mautrix.appservice import AppService, IntentAPI
from mautrix.errors import MatrixRequestError, MRoomInUse
from mautrix.types import (
    ContentURI,
    EventType,
    Membership,
    RoomAlias,
    RoomCreatePreset,
    RoomDirectoryVisibility,
    RoomID,
    UserID,
)

from bridges.commerce_bridge.commerce import CommerceClient, CommerceError
from bridges.commerce_bridge.config import BridgeConfig, alias_localpart, ghost_localpart
from bridges.commerce_bridge.db import BridgeDB
from rooms.shares import Item

logger = logging.getLogger(__name__)

# Shop ids become localparts of ghosts and aliases: only what Matrix allows there.
_SHOP_ID_RE = re.compile(r"^[a-z0-9._=-]{1,100}$")
RETRY_DELAYS_S = (1, 2, 5, 10, 30)
# Top-level key of every post: the mock event it was made for, so that a retry recognises it.
# Clients and the module's share check ignore unknown top-level keys.
SOURCE_KEY = "org.laiwang.commerce.source"
# How many of its own latest messages in the room a retry reads in search of an earlier post.
LOOKBACK = 100
SHARE_HINT = (
    "Share it with your acquaintances: forward this message to your timeline, or post it with"
    ' POST /_synapse/client/laiwang/v1/shares/item {{"room_id": …, "item_id": "{item_id}",'
    ' "order_id": "{order_id}"}}.'
)


def item_card(item: dict[str, Any], image: str | None, order_id: str | None = None) -> Item:
    return Item(
        item_id=item["item_id"],
        shop_id=item["shop_id"],
        shop_name=item["shop_name"],
        title=item["title"],
        amount=item["price"]["amount"],
        currency=item["price"]["currency"],
        url=item["url"],
        bought=order_id is not None,
        image=image,
        order_id=order_id,
    )


def with_source(content: Mapping[str, Any], event_id: str) -> dict[str, Any]:
    """The content of the post for mock event `event_id`, marked with it."""
    return {**content, SOURCE_KEY: event_id}


def find_post(events: Iterable[Any], sender: str, event_id: str) -> str | None:
    """The Matrix event id of the post `sender` made for mock event `event_id` among `events`
    (a `/messages` chunk), or None."""
    for event in events:
        if not isinstance(event, Mapping):
            continue
        content = event.get("content")
        if (
            event.get("type") == "m.room.message"
            and event.get("sender") == sender
            and isinstance(content, Mapping)
            and content.get(SOURCE_KEY) == event_id
            and isinstance(event.get("event_id"), str)
        ):
            return str(event["event_id"])
    return None


class CommerceBridge:
    def __init__(
        self, config: BridgeConfig, az: AppService, db: BridgeDB, commerce: CommerceClient
    ):
        self.config = config
        self.az = az
        self.db = db
        self.commerce = commerce
        self._room_locks: dict[str, asyncio.Lock] = {}
        self._stopping = False

    @property
    def bot(self) -> IntentAPI:
        return self.az.intent

    def ghost(self, shop_id: str) -> IntentAPI:
        return self.az.intent.user(UserID(f"@{ghost_localpart(shop_id)}:{self.config.domain}"))

    # --- shop rooms -------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Register the bot and make every shop's room, retrying until the homeserver and the
        commerce service both answer."""
        failures = 0
        while True:
            try:
                await self.bot.ensure_registered()
                for shop in await self.commerce.shops():
                    if _SHOP_ID_RE.match(shop["shop_id"]):
                        await self.shop_room(shop)
                    else:
                        logger.warning("Shop id %r is not a Matrix localpart", shop["shop_id"])
                return
            except Exception:
                delay = RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S) - 1)]
                failures += 1
                logger.exception("Start-up failed; retrying in %ss", delay)
                await asyncio.sleep(delay)

    async def shop_room(self, shop: dict[str, Any]) -> RoomID:
        """The shop's room (alias `#shop_<id>`), created by its ghost on first use."""
        shop_id = shop["shop_id"]
        lock = self._room_locks.setdefault(shop_id, asyncio.Lock())
        async with lock:
            room_id = await self.db.shop_room(shop_id)
            if room_id:
                return RoomID(room_id)
            ghost = self.ghost(shop_id)
            await ghost.ensure_registered()
            await ghost.set_displayname(shop["name"])
            avatar = await self.upload(shop.get("image_url"))
            if avatar:
                await ghost.set_avatar_url(ContentURI(avatar))
            alias = RoomAlias(f"#{alias_localpart(shop_id)}:{self.config.domain}")
            try:
                room = await ghost.create_room(
                    alias_localpart=alias_localpart(shop_id),
                    visibility=RoomDirectoryVisibility.PUBLIC,
                    preset=RoomCreatePreset.PUBLIC,
                    name=shop["name"],
                    topic=shop.get("description") or None,
                    # Subscribers read; the shop (the creator) posts.
                    power_level_override={"events_default": 50},
                )
            except MRoomInUse:
                # The alias exists: a room from an earlier life of the bridge (its database
                # lost). Resolved only now, since resolving an unknown alias of our namespace
                # asks this very bridge (query_alias), which waits for this lock.
                room = (await self.bot.resolve_room_alias(alias)).room_id
            await self.db.set_shop_room(shop_id, room)
            logger.info("Shop %s has room %s (%s)", shop_id, room, alias)
            return room

    async def query_alias(self, alias: RoomAlias) -> dict[str, Any] | None:
        """The homeserver asks about an alias `#shop_<id>` that does not exist (a shop that
        appeared after start-up, say): make the shop's room if the shop exists."""
        localpart, _, domain = alias[1:].partition(":")
        shop_id = localpart.removeprefix(alias_localpart(""))
        if domain != self.config.domain or not _SHOP_ID_RE.match(shop_id):
            return None
        shop = await self.commerce.shop(shop_id)
        if shop is None:
            return None
        await self.shop_room(shop)
        return {}

    async def upload(self, url: str | None) -> str | None:
        """An image of the commerce service as an mxc:// URI, uploaded once per URL."""
        if not url:
            return None
        mxc = await self.db.image(url)
        if mxc:
            return mxc
        try:
            data, content_type = await self.commerce.download(url)
        except (CommerceError, OSError, asyncio.TimeoutError) as e:
            logger.warning("Cannot fetch image %s: %s", url, e)
            return None
        mxc = await self.bot.upload_media(data, mime_type=content_type, filename="image.png")
        await self.db.set_image(url, mxc)
        return str(mxc)

    # --- the event stream -------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the event stream until stopped; retry with backoff when anything fails."""
        failures = 0
        while not self._stopping:
            try:
                page = await self.commerce.events(
                    await self.db.cursor(), self.config.poll_timeout_ms
                )
                for event in page["events"]:
                    await self.handle(event)
                if not page["events"]:
                    await self.db.set_cursor(page["next"])
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S) - 1)]
                failures += 1
                logger.exception("Event stream failed; retrying in %ss", delay)
                await asyncio.sleep(delay)

    def stop(self) -> None:
        self._stopping = True

    async def handle(self, event: dict[str, Any]) -> None:
        event_id = str(event["id"])
        if await self.db.is_handled(event_id):
            await self.db.set_cursor(event_id)
            return
        matrix_event_id: str = ""
        try:
            if event["type"] == "item.created" and event.get("item"):
                matrix_event_id = await self.post_item(event_id, event["item"])
            elif event["type"] == "order.delivered" and event.get("order"):
                matrix_event_id = await self.announce_delivery(event_id, event["order"])
        except MatrixRequestError as e:
            # Refused for good (an owner who does not exist or cannot be invited, say): skip
            # it rather than block the stream. Anything else (the homeserver down, 5xx, 429)
            # is retried by `run`.
            if not 400 <= e.http_status < 500 or e.http_status == 429:
                raise
            logger.warning("Skipping commerce event %s: the homeserver refused it: %s", event, e)
        await self.db.mark_handled(event_id, matrix_event_id, event_id)

    async def post_item(self, event_id: str, item: dict[str, Any]) -> str:
        shop_id = item["shop_id"]
        if not _SHOP_ID_RE.match(shop_id):
            logger.warning("Skipping item %s: shop id %r is not a Matrix localpart", item, shop_id)
            return ""
        shop = await self.commerce.shop(shop_id)
        if shop is None:
            return ""
        room = await self.shop_room(shop)
        card = item_card(item, await self.upload(item.get("image_url")))
        sent = await self.send_post(self.ghost(shop_id), room, event_id, card.content())
        logger.info("Posted item %s in %s as %s", item["item_id"], room, sent)
        return str(sent)

    async def announce_delivery(self, event_id: str, order: dict[str, Any]) -> str:
        owner = order.get("matrix_user_id")
        item = order.get("item")
        if not owner or not item:
            return ""  # an account nobody linked: nobody to tell
        room = await self.dm_room(UserID(owner))
        card = item_card(item, await self.upload(item.get("image_url")), order["order_id"])
        content = card.content()
        content["body"] = f"Delivered: {card.body()}\n" + SHARE_HINT.format(
            item_id=card.item_id, order_id=order["order_id"]
        )
        sent = await self.send_post(self.bot, room, event_id, content)
        logger.info("Told %s of order %s in %s", owner, order["order_id"], room)
        return sent

    async def send_post(
        self, intent: IntentAPI, room: RoomID, event_id: str, content: Mapping[str, Any]
    ) -> str:
        """Post `content` for mock event `event_id` once: a retry returns the post an earlier
        attempt made, if the room has it."""
        if await self.db.attempted(event_id):
            earlier = await self.earlier_post(intent, room, event_id)
            if earlier is not None:
                logger.info("Event %s was already posted in %s as %s", event_id, room, earlier)
                return earlier
        # Committed before the send: whatever happens next, a retry knows to look first.
        await self.db.record_attempt(event_id, room, int(time.time() * 1000))
        sent = await intent.send_message_event(
            room,
            EventType.ROOM_MESSAGE,
            cast(Any, with_source(content, event_id)),
            txn_id=f"commerce-{event_id}",
        )
        return str(sent)

    async def earlier_post(self, intent: IntentAPI, room: RoomID, event_id: str) -> str | None:
        """The post `intent` already made in `room` for mock event `event_id`, among its latest
        `LOOKBACK` messages there."""
        query = {
            "dir": "b",
            "limit": str(LOOKBACK),
            "filter": json.dumps({"senders": [intent.mxid], "types": ["m.room.message"]}),
        }
        try:
            # Raw JSON rather than mautrix's parsed events: the marker is a key it knows nothing
            # of, and one event it cannot parse must not block the stream.
            page = await intent.api.request(
                Method.GET, Path.v3.rooms[room].messages, query_params=query
            )
        except MatrixRequestError as e:
            if not 400 <= e.http_status < 500 or e.http_status == 429:
                raise
            # Unreadable for good (no longer a member, say): the send decides what happens.
            logger.warning("Cannot read %s for an earlier post of %s: %s", room, event_id, e)
            return None
        return find_post(page.get("chunk") or [], intent.mxid, event_id)

    async def on_matrix_event(self, event: Any) -> None:
        """An owner who leaves (or rejects) their direct chat with the bot gets a new one at the
        next delivery; the bot leaves the old one."""
        if getattr(event, "type", None) != EventType.ROOM_MEMBER:
            return
        user_id, room_id = event.state_key, event.room_id
        if event.content.membership not in (Membership.LEAVE, Membership.BAN):
            return
        if await self.db.dm_room(user_id) != room_id:
            return
        await self.db.forget_dm_room(user_id, room_id)
        logger.info(
            "%s left their direct chat %s; the next delivery opens a new one", user_id, room_id
        )
        try:
            await self.bot.leave_room(room_id)
        except MatrixRequestError as e:
            logger.warning("Cannot leave %s: %s", room_id, e)

    async def dm_room(self, user_id: UserID) -> RoomID:
        room = await self.db.dm_room(user_id)
        if room:
            return RoomID(room)
        created = await self.bot.create_room(
            preset=RoomCreatePreset.TRUSTED_PRIVATE,
            is_direct=True,
            invitees=[user_id],
            name="Shop deliveries",
        )
        await self.db.set_dm_room(user_id, created)
        return created
