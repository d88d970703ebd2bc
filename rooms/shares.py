"""Shares: the timeline room, music and shop-item share events, forwards and the posting rules.

Pure code (no I/O): the REST endpoints and the event check (`check_event_for_spam`, which runs
for local and federated events alike) call the same functions here.

- A user's timeline is a private room whose state `org.laiwang.timeline` (state key "") is
  `{"owner": <user id>}`, sent by the owner. Only the owner posts top-level messages; the other
  members (the owner's acquaintances) react (`m.reaction`) and comment (thread replies).
- Shares are `m.room.message` events with a custom msgtype, a block named after it and a human
  `body` for every other client.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from collections.abc import Iterable, Mapping
from typing import Any

import attr

from rooms.errors import InvalidParam, MissingParam
from rooms.money import format_amount, require_amount, require_currency
from rooms.validation import (
    is_ascii_digits,
    is_event_id,
    is_room_id,
    is_user_id,
    parse_bounded_int,
    reject_unknown_keys,
)

TIMELINE_STATE = "org.laiwang.timeline"
MSGTYPE_MUSIC = "org.laiwang.share.music"
MSGTYPE_ITEM = "org.laiwang.share.item"
SHARE_MSGTYPES = (MSGTYPE_MUSIC, MSGTYPE_ITEM)
FORWARD_BLOCK = "org.laiwang.forward"
LINK_PREVIEWS = "com.beeper.linkpreviews"  # MSC4095 bundled link previews

MAX_TEXT = 300
MAX_ID = 255
MAX_URL = 2048
MAX_BODY = 4000
MAX_COMMENT = 2000
MAX_PREVIEWS = 10
MAX_DURATION_MS = 24 * 3600 * 1000

# What may be forwarded: ordinary messages and shares. AA events and other custom msgtypes
# carry meaning in their own room (a bill, a payment) that a copy would only counterfeit.
FORWARDABLE_MSGTYPES = frozenset(
    {"m.text", "m.notice", "m.emote", "m.image", "m.file", "m.audio", "m.video", "m.location"}
) | frozenset(SHARE_MSGTYPES)

# Relation types a member who is not the owner may use in a timeline.
THREAD = "m.thread"
ANNOTATION = "m.annotation"
REPLACE = "m.replace"

_MXC_RE = re.compile(r"^mxc://[A-Za-z0-9.\-:\[\]]+/[A-Za-z0-9_\-]+$")
_URL_RE = re.compile(r"^https?://[^\s/?#]+[^\s]*$", re.IGNORECASE)


# --- the timeline room ----------------------------------------------------------------------


def timeline_content(owner: str) -> dict[str, Any]:
    return {"owner": owner}


def parse_timeline(content: Any, sender: Any = None) -> str | None:
    """The owner a `org.laiwang.timeline` state content names, or None.

    With `sender` given, the state only counts when the owner sent it (nobody else can make a
    room someone's timeline)."""
    if not isinstance(content, Mapping):
        return None
    owner = content.get("owner")
    if not is_user_id(owner):
        return None
    if sender is not None and sender != owner:
        return None
    return str(owner)


def find_timeline_in_stripped_state(stripped: Iterable[Any]) -> str | None:
    """The owner of a timeline named in an invite's stripped state (`invite_room_state`)."""
    for ev in stripped:
        if (
            isinstance(ev, Mapping)
            and ev.get("type") == TIMELINE_STATE
            and ev.get("state_key") == ""
        ):
            return parse_timeline(ev.get("content"), ev.get("sender"))
    return None


def stripped_creator(stripped: Iterable[Any]) -> str | None:
    """The sender of the `m.room.create` event in an invite's stripped state, if it is there."""
    for ev in stripped:
        if isinstance(ev, Mapping) and ev.get("type") == "m.room.create":
            sender = ev.get("sender")
            return str(sender) if is_user_id(sender) else None
    return None


def is_real_timeline(
    owner: str, creator: str | None, timeline_content: Any, timeline_sender: str | None
) -> bool:
    """Whether a room's actual state (read after joining it) makes it `owner`'s timeline: the
    owner created the room and the `org.laiwang.timeline` state naming them is theirs. (An
    invite's stripped state is whatever the inviting server says; this is what the room says.)
    """
    return (
        creator == owner
        and timeline_sender is not None
        and parse_timeline(timeline_content, timeline_sender) == owner
    )


# Automatic acceptance of remote timeline invites, per invitee: at most this many joins (new
# rooms, or the same room again) in a window, and the same room again only after a pause. A
# legitimate flow needs one join per acquaintance, once.
ACCEPT_WINDOW_MS = 3600 * 1000
MAX_ACCEPTS_PER_WINDOW = 10
REACCEPT_AFTER_MS = 60 * 1000


def accept_allowed(previous_ts: int | None, recent_accepts: int, now: int) -> bool:
    """Whether the server may join its user to a remote timeline on its own now, given when it
    last did so for this room (None: never) and how many such joins it made for the user in
    the last `ACCEPT_WINDOW_MS`."""
    if recent_accepts >= MAX_ACCEPTS_PER_WINDOW:
        return False
    return previous_ts is None or now - previous_ts >= REACCEPT_AFTER_MS


def timeline_room_config(owner: str, name: str) -> dict[str, Any]:
    """The /createRoom body of a user's timeline: private, history visible to members (so a new
    acquaintance sees earlier posts), only the owner changes state or invites."""
    return {
        "preset": "private_chat",
        "name": name,
        "topic": "Posts to acquaintances. Acquaintances react and comment in threads.",
        "initial_state": [
            {"type": TIMELINE_STATE, "state_key": "", "content": timeline_content(owner)}
        ],
        "power_level_content_override": {
            "events_default": 0,  # members react and comment; the posting rules do the rest
            "state_default": 100,
            "invite": 100,
            "kick": 100,
            "ban": 100,
            "redact": 100,
        },
    }


# --- relations ------------------------------------------------------------------------------


def relation(content: Any) -> tuple[str | None, str | None]:
    """(rel_type, event_id) of an event's `m.relates_to`, or (None, None)."""
    if not isinstance(content, Mapping):
        return None, None
    rel = content.get("m.relates_to")
    if not isinstance(rel, Mapping):
        return None, None
    rel_type, event_id = rel.get("rel_type"), rel.get("event_id")
    return (
        rel_type if isinstance(rel_type, str) else None,
        event_id if is_event_id(event_id) else None,
    )


# --- posting rules --------------------------------------------------------------------------


def posting_refusal(
    sender: str, owner: str, event_type: str, content: Mapping[str, Any], is_state: bool
) -> str | None:
    """Why `sender` may not send this event in `owner`'s timeline, or None if they may.

    State events are left to the power levels. The owner may send anything. Others may react
    (an `m.annotation` reaction), comment (any event in a thread: `rel_type` `m.thread`), edit
    their comments (`m.replace`: clients apply an edit only from the original sender), and
    redact their own events (power levels decide about others')."""
    if is_state or sender == owner:
        return None
    if event_type == "m.room.redaction":
        return None
    rel_type, target = relation(content)
    if event_type == "m.reaction":
        if rel_type == ANNOTATION and target is not None:
            return None
        return "A reaction must be an m.annotation relation to an event."
    if rel_type in (THREAD, REPLACE) and target is not None:
        return None
    return (
        f"Only {owner} posts in their timeline: you may react (m.reaction) or comment in a "
        "thread (m.relates_to rel_type m.thread)."
    )


# --- field helpers --------------------------------------------------------------------------


def _text(block: Mapping[str, Any], key: str, prefix: str, *, max_len: int = MAX_TEXT) -> str:
    value = block.get(key)
    if value is None:
        raise MissingParam(f"{prefix}.{key}")
    if not isinstance(value, str) or not value.strip():
        raise InvalidParam(f"{prefix}.{key}", "must be a non-empty string")
    if len(value) > max_len:
        raise InvalidParam(f"{prefix}.{key}", f"must be at most {max_len} characters")
    return value


def _optional_text(
    block: Mapping[str, Any], key: str, prefix: str, *, max_len: int = MAX_TEXT
) -> str | None:
    return None if block.get(key) is None else _text(block, key, prefix, max_len=max_len)


def is_http_url(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= MAX_URL and bool(_URL_RE.match(value))


def is_mxc(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= MAX_URL and bool(_MXC_RE.match(value))


def _url(block: Mapping[str, Any], key: str, prefix: str) -> str:
    value = block.get(key)
    if value is None:
        raise MissingParam(f"{prefix}.{key}")
    if not is_http_url(value):
        raise InvalidParam(f"{prefix}.{key}", "must be an http:// or https:// URL")
    return str(value)


def _optional_mxc(block: Mapping[str, Any], key: str, prefix: str) -> str | None:
    value = block.get(key)
    if value is None:
        return None
    if not is_mxc(value):
        raise InvalidParam(f"{prefix}.{key}", "must be an mxc:// content URI")
    return str(value)


def _block(content: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    block = content.get(name)
    if block is None:
        raise MissingParam(name)
    if not isinstance(block, Mapping):
        raise InvalidParam(name, "must be an object")
    return block


# --- music ----------------------------------------------------------------------------------


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Music:
    title: str
    artist: str
    url: str
    album: str | None = None
    duration_ms: int | None = None
    cover: str | None = None

    def block(self) -> dict[str, Any]:
        out: dict[str, Any] = {"title": self.title, "artist": self.artist, "url": self.url}
        for key in ("album", "duration_ms", "cover"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def body(self) -> str:
        return music_body(self)

    def content(self) -> dict[str, Any]:
        return {"msgtype": MSGTYPE_MUSIC, "body": self.body(), MSGTYPE_MUSIC: self.block()}


def parse_music(block: Any, prefix: str = MSGTYPE_MUSIC) -> Music:
    if not isinstance(block, Mapping):
        raise InvalidParam(prefix, "must be an object")
    reject_unknown_keys(block, ("title", "artist", "album", "duration_ms", "url", "cover"), prefix)
    duration = block.get("duration_ms")
    if duration is not None and (
        isinstance(duration, bool)
        or not isinstance(duration, int)
        or not 0 < duration <= MAX_DURATION_MS
    ):
        raise InvalidParam(
            f"{prefix}.duration_ms", f"must be an integer from 1 to {MAX_DURATION_MS}"
        )
    return Music(
        title=_text(block, "title", prefix),
        artist=_text(block, "artist", prefix),
        url=_url(block, "url", prefix),
        album=_optional_text(block, "album", prefix),
        duration_ms=duration,
        cover=_optional_mxc(block, "cover", prefix),
    )


def _duration(ms: int) -> str:
    minutes, seconds = divmod(ms // 1000, 60)
    return f"{minutes}:{seconds:02d}"


def music_body(music: Music) -> str:
    """'[Music] Title - Artist (Album, 3:45) https://…' for clients that draw no card."""
    extra = [
        x for x in (music.album, _duration(music.duration_ms) if music.duration_ms else None) if x
    ]
    detail = f" ({', '.join(extra)})" if extra else ""
    return f"[Music] {music.title} - {music.artist}{detail} {music.url}"


# --- shop items -----------------------------------------------------------------------------


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Item:
    item_id: str
    shop_id: str
    shop_name: str
    title: str
    amount: int
    currency: str
    url: str
    bought: bool
    image: str | None = None
    order_id: str | None = None

    def block(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "item_id": self.item_id,
            "shop_id": self.shop_id,
            "shop_name": self.shop_name,
            "title": self.title,
            "price": {"amount": self.amount, "currency": self.currency},
            "url": self.url,
            "bought": self.bought,
        }
        if self.image is not None:
            out["image"] = self.image
        if self.order_id is not None:
            out["order_id"] = self.order_id
        return out

    def body(self) -> str:
        return item_body(self)

    def link_previews(self) -> list[dict[str, Any]]:
        """MSC4095 bundled preview, so clients that draw link previews draw the card."""
        preview: dict[str, Any] = {
            "matched_url": self.url,
            "og:url": self.url,
            "og:title": self.title,
            "og:description": f"{self.shop_name} · {format_amount(self.amount, self.currency)}",
        }
        if self.image is not None:
            preview["og:image"] = self.image
        return [preview]

    def content(self) -> dict[str, Any]:
        return {
            "msgtype": MSGTYPE_ITEM,
            "body": self.body(),
            MSGTYPE_ITEM: self.block(),
            LINK_PREVIEWS: self.link_previews(),
        }


def parse_item(block: Any, prefix: str = MSGTYPE_ITEM) -> Item:
    if not isinstance(block, Mapping):
        raise InvalidParam(prefix, "must be an object")
    reject_unknown_keys(
        block,
        ("item_id", "shop_id", "shop_name", "title", "price", "url", "image", "bought", "order_id"),
        prefix,
    )
    price = block.get("price")
    if price is None:
        raise MissingParam(f"{prefix}.price")
    if not isinstance(price, Mapping):
        raise InvalidParam(f"{prefix}.price", "must be an object {amount, currency}")
    reject_unknown_keys(price, ("amount", "currency"), f"{prefix}.price")
    if price.get("currency") is None:
        raise MissingParam(f"{prefix}.price.currency")
    currency = require_currency(price["currency"], f"{prefix}.price.currency")
    if price.get("amount") is None:
        raise MissingParam(f"{prefix}.price.amount")
    amount = require_amount(price["amount"], currency, f"{prefix}.price.amount")
    bought = block.get("bought")
    if bought is None:
        raise MissingParam(f"{prefix}.bought")
    if not isinstance(bought, bool):
        raise InvalidParam(f"{prefix}.bought", "must be true or false")
    order_id = _optional_text(block, "order_id", prefix, max_len=MAX_ID)
    if bought and order_id is None:
        raise InvalidParam(f"{prefix}.bought", "is true only with the order_id of the purchase")
    return Item(
        item_id=_text(block, "item_id", prefix, max_len=MAX_ID),
        shop_id=_text(block, "shop_id", prefix, max_len=MAX_ID),
        shop_name=_text(block, "shop_name", prefix),
        title=_text(block, "title", prefix),
        amount=amount,
        currency=currency,
        url=_url(block, "url", prefix),
        bought=bought,
        image=_optional_mxc(block, "image", prefix),
        order_id=order_id,
    )


def item_body(item: Item) -> str:
    """'[Shop] Title CNY 99.00 https://…' (and 'bought' when the sharer bought it)."""
    bought = " (bought)" if item.bought else ""
    return f"[Shop] {item.title} {format_amount(item.amount, item.currency)}{bought} {item.url}"


def check_link_previews(value: Any) -> None:
    """The shape of MSC4095's `com.beeper.linkpreviews`: a list of objects whose `matched_url`
    is a string and whose `og:*` values are strings or integers."""
    if not isinstance(value, (list, tuple)):
        raise InvalidParam(LINK_PREVIEWS, "must be a list of link previews")
    if len(value) > MAX_PREVIEWS:
        raise InvalidParam(LINK_PREVIEWS, f"must have at most {MAX_PREVIEWS} previews")
    for i, preview in enumerate(value):
        where = f"{LINK_PREVIEWS}[{i}]"
        if not isinstance(preview, Mapping):
            raise InvalidParam(where, "must be an object")
        matched = preview.get("matched_url")
        if matched is not None and not isinstance(matched, str):
            raise InvalidParam(f"{where}.matched_url", "must be a string")
        for key, v in preview.items():
            if key.startswith("og:") and (isinstance(v, bool) or not isinstance(v, (str, int))):
                raise InvalidParam(f"{where}.{key}", "must be a string or an integer")
        image = preview.get("og:image")
        if image is not None and not is_mxc(image):
            raise InvalidParam(f"{where}.og:image", "must be an mxc:// content URI")


# --- forwards -------------------------------------------------------------------------------


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ForwardSource:
    room_id: str
    event_id: str
    sender: str

    def block(self) -> dict[str, Any]:
        return {"room_id": self.room_id, "event_id": self.event_id, "sender": self.sender}


def parse_forward_block(block: Any) -> ForwardSource:
    if not isinstance(block, Mapping):
        raise InvalidParam(FORWARD_BLOCK, "must be an object {room_id, event_id, sender}")
    reject_unknown_keys(block, ("room_id", "event_id", "sender", "comment"), FORWARD_BLOCK)
    for key, check in (("room_id", is_room_id), ("event_id", is_event_id), ("sender", is_user_id)):
        if block.get(key) is None:
            raise MissingParam(f"{FORWARD_BLOCK}.{key}")
        if not check(block[key]):
            raise InvalidParam(
                f"{FORWARD_BLOCK}.{key}", f"must be a Matrix {key.replace('_', ' ')}"
            )
    comment = block.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
        raise InvalidParam(
            f"{FORWARD_BLOCK}.comment", f"must be a string of at most {MAX_COMMENT} characters"
        )
    return ForwardSource(str(block["room_id"]), str(block["event_id"]), str(block["sender"]))


def parse_forward_request(body: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """`POST /shares/forward` `{room_id, event_id, comment?}`."""
    reject_unknown_keys(body, ("room_id", "event_id", "comment"), "body")
    for key, check, what in (
        ("room_id", is_room_id, "a Matrix room id like !abc:example.org"),
        ("event_id", is_event_id, "a Matrix event id like $abc"),
    ):
        if body.get(key) is None:
            raise MissingParam(key)
        if not check(body[key]):
            raise InvalidParam(key, f"must be {what}")
    comment = body.get("comment")
    if comment is not None:
        if not isinstance(comment, str):
            raise InvalidParam("comment", "must be a string")
        if len(comment) > MAX_COMMENT:
            raise InvalidParam("comment", f"must be at most {MAX_COMMENT} characters")
        comment = comment.strip() or None
    return str(body["room_id"]), str(body["event_id"]), comment


# `unsigned` of a forward from a remote sender that this server could not verify.
FORWARD_VERIFIED = "org.laiwang.forward.verified"


def server_of(user_id: str) -> str:
    """The server part of a user id (`@a:hs` → `hs`)."""
    return user_id.partition(":")[2]


def forward_checkable(source: ForwardSource, local_server: str, room_creator: str | None) -> bool:
    """Whether this server can vouch for a remote sender's forward: it names a sender of this
    server, or a room of this server (created by one of its users; `room_creator` is None for
    a room this server does not know). Anything else this server has no authority on."""
    return server_of(source.sender) == local_server or (
        room_creator is not None and server_of(room_creator) == local_server
    )


def forward_matches(
    source: ForwardSource,
    room_id: str,
    sender: str,
    event_type: str,
    content: Mapping[str, Any],
) -> bool:
    """Whether the event this server holds under the forward's event id is what the forward
    says: in the named room, from the named sender, and a message that may be forwarded."""
    return (
        room_id == source.room_id
        and sender == source.sender
        and forwardable_refusal(event_type, content) is None
    )


def forwardable_refusal(event_type: str, content: Mapping[str, Any]) -> str | None:
    """Why an event may not be forwarded, or None."""
    if event_type != "m.room.message":
        return "Only messages can be forwarded."
    if not content:
        return "This message was deleted."
    msgtype = content.get("msgtype")
    if msgtype not in FORWARDABLE_MSGTYPES:
        return f"Messages of type {msgtype!r} cannot be forwarded."
    if relation(content)[0] == REPLACE:
        return "An edit cannot be forwarded: forward the message it edits."
    return None


def forward_content(
    original: Mapping[str, Any],
    source: ForwardSource,
    comment: str | None,
) -> dict[str, Any]:
    """The original content, made top-level (no relation), with the forward block and an
    attribution line in `body` (and `formatted_body`) for clients that know nothing of it."""
    content = {k: v for k, v in original.items() if k not in ("m.relates_to", "m.new_content")}
    content.pop(FORWARD_BLOCK, None)
    block = source.block()
    if comment:
        block["comment"] = comment
    content[FORWARD_BLOCK] = block
    body = original.get("body") if isinstance(original.get("body"), str) else ""
    lead = f"{comment}\n" if comment else ""
    content["body"] = f"{lead}Forwarded from {source.sender}: {body}"[:MAX_BODY]
    formatted = original.get("formatted_body")
    if original.get("format") == "org.matrix.custom.html" and isinstance(formatted, str):
        html_lead = f"{html.escape(comment)}<br>" if comment else ""
        content["formatted_body"] = (
            f"{html_lead}<blockquote><p>Forwarded from {html.escape(source.sender)}</p>"
            f"{formatted}</blockquote>"
        )
    return content


# --- share events ---------------------------------------------------------------------------


def check_share_content(content: Mapping[str, Any]) -> None:
    """Validate a message's share blocks (raises ValidationError): a music or item share must
    carry a valid block and a `body`; a forward block must name its source. Edits are checked
    on their `m.new_content`."""
    for where, part in (("", content), ("m.new_content.", content.get("m.new_content"))):
        if not isinstance(part, Mapping):
            continue
        msgtype = part.get("msgtype")
        if msgtype in SHARE_MSGTYPES:
            body = part.get("body")
            if not isinstance(body, str) or not body.strip():
                raise InvalidParam(f"{where}body", "must be a non-empty line for other clients")
            if len(body) > MAX_BODY:
                raise InvalidParam(f"{where}body", f"must be at most {MAX_BODY} characters")
            block = _block(part, str(msgtype))
            if msgtype == MSGTYPE_MUSIC:
                parse_music(block, f"{where}{MSGTYPE_MUSIC}")
            else:
                parse_item(block, f"{where}{MSGTYPE_ITEM}")
                if part.get(LINK_PREVIEWS) is not None:
                    check_link_previews(part[LINK_PREVIEWS])
        if part.get(FORWARD_BLOCK) is not None:
            parse_forward_block(part[FORWARD_BLOCK])


# --- the feed -------------------------------------------------------------------------------

DEFAULT_FEED_LIMIT = 20
MAX_FEED_LIMIT = 100


@attr.s(frozen=True, slots=True, auto_attribs=True, order=True)
class FeedCursor:
    """A position in the feed: posts strictly older than (ts, event_id) come next."""

    ts: int
    event_id: str

    def encode(self) -> str:
        raw = f"{self.ts}|{self.event_id}".encode()
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(token: str) -> FeedCursor:
    bad = InvalidParam("from", "is not a pagination token this endpoint gave out")
    if not token or len(token) > 1024:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    ts, sep, event_id = raw.partition("|")
    if not sep or not is_ascii_digits(ts) or not is_event_id(event_id):
        raise bad
    return FeedCursor(int(ts), event_id)


def parse_feed_limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_FEED_LIMIT
    return parse_bounded_int(value, "limit", minimum=1, maximum=MAX_FEED_LIMIT)


def is_post(sender: str, owner: str, event_type: str, content: Mapping[str, Any]) -> bool:
    """Whether an event is a post of the timeline (what the feed lists): a top-level message
    of the owner (not a comment, reply in a thread, or edit)."""
    return (
        event_type == "m.room.message"
        and sender == owner
        and relation(content)[0] not in (THREAD, REPLACE)
        and bool(content)
    )


def feed_relation(event_type: str, content: Mapping[str, Any]) -> tuple[str, str] | None:
    """("reaction" | "comment", post id) when an event counts towards a post, else None."""
    rel_type, target = relation(content)
    if target is None:
        return None
    if event_type == "m.reaction" and rel_type == ANNOTATION:
        return "reaction", target
    if rel_type == THREAD and event_type in ("m.room.message", "m.room.encrypted", "m.sticker"):
        return "comment", target
    return None
