"""rooms/shares.py: posting rules, share blocks and their fallback bodies, forwards, the feed
cursor (property tests where inputs vary)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rooms import shares
from rooms.errors import InvalidParam, MissingParam, ValidationError

OWNER, FRIEND = "@alice:a.test", "@bob:b.test"
POST = "$post"

MUSIC_BLOCK = {
    "title": "Blue Moon",
    "artist": "Billie Holiday",
    "album": "Lady in Autumn",
    "duration_ms": 185000,
    "url": "https://music.example/blue-moon",
    "cover": "mxc://a.test/cover1",
}
ITEM_BLOCK: dict[str, Any] = {
    "item_id": "tea-1",
    "shop_id": "shop-1",
    "shop_name": "Tea House",
    "title": "Longjing tea",
    "price": {"amount": 9900, "currency": "CNY"},
    "url": "https://shop.example/tea-1",
    "image": "mxc://a.test/tea",
    "bought": True,
    "order_id": "o-1",
}

event_types = st.sampled_from(
    ["m.room.message", "m.reaction", "m.sticker", "m.room.encrypted", "org.example.x"]
)
rel_types = st.sampled_from([None, "m.thread", "m.annotation", "m.replace", "m.reference"])


def with_relation(rel_type: str | None, event_id: Any = POST) -> dict[str, Any]:
    content: dict[str, Any] = {"msgtype": "m.text", "body": "x"}
    if rel_type is not None:
        content["m.relates_to"] = {"rel_type": rel_type, "event_id": event_id, "key": "👍"}
    return content


# --- posting rules ------------------------------------------------------------------------


@given(event_types, rel_types, st.booleans())
def test_owner_may_send_anything(event_type, rel_type, is_state):
    assert (
        shares.posting_refusal(OWNER, OWNER, event_type, with_relation(rel_type), is_state) is None
    )


@given(event_types, rel_types)
def test_members_only_react_and_comment(event_type, rel_type):
    refusal = shares.posting_refusal(FRIEND, OWNER, event_type, with_relation(rel_type), False)
    if event_type == "m.reaction":
        allowed = rel_type == "m.annotation"
    else:
        allowed = rel_type in ("m.thread", "m.replace")
    assert (refusal is None) == allowed, (event_type, rel_type, refusal)
    if refusal is not None:
        assert isinstance(refusal, str) and refusal


def test_member_refusal_sentence_names_the_owner_and_the_way():
    refusal = shares.posting_refusal(FRIEND, OWNER, "m.room.message", with_relation(None), False)
    assert refusal is not None and OWNER in refusal and "thread" in refusal


def test_members_may_redact_and_state_is_left_to_power_levels():
    assert shares.posting_refusal(FRIEND, OWNER, "m.room.redaction", {}, False) is None
    assert shares.posting_refusal(FRIEND, OWNER, "m.room.topic", {"topic": "x"}, True) is None


def test_a_relation_without_a_valid_target_is_top_level():
    for target in (None, "not-an-event-id", 5):
        content = with_relation("m.thread", target)
        assert shares.posting_refusal(FRIEND, OWNER, "m.room.message", content, False)
    reply = {
        "msgtype": "m.text",
        "body": "x",
        "m.relates_to": {"m.in_reply_to": {"event_id": POST}},
    }
    assert shares.posting_refusal(FRIEND, OWNER, "m.room.message", reply, False)


# --- timeline state -----------------------------------------------------------------------


def test_timeline_state_counts_only_from_its_owner():
    assert shares.parse_timeline({"owner": OWNER}) == OWNER
    assert shares.parse_timeline({"owner": OWNER}, OWNER) == OWNER
    assert shares.parse_timeline({"owner": OWNER}, FRIEND) is None
    bad: Any
    for bad in (None, [], {}, {"owner": "alice"}, {"owner": 5}):
        assert shares.parse_timeline(bad) is None
    stripped = [
        {"type": "m.room.name", "state_key": "", "content": {"name": "x"}, "sender": OWNER},
        {
            "type": shares.TIMELINE_STATE,
            "state_key": "",
            "content": {"owner": OWNER},
            "sender": OWNER,
        },
    ]
    assert shares.find_timeline_in_stripped_state(stripped) == OWNER
    stripped[1]["sender"] = FRIEND
    assert shares.find_timeline_in_stripped_state(stripped) is None
    assert shares.find_timeline_in_stripped_state([]) is None


def test_timeline_room_config_is_private_and_names_the_owner():
    config = shares.timeline_room_config(OWNER, "Alice's timeline")
    assert config["preset"] == "private_chat"
    assert config["initial_state"][0]["content"] == {"owner": OWNER}
    assert config["power_level_content_override"]["invite"] == 100


# --- music --------------------------------------------------------------------------------


def test_music_roundtrip_and_body():
    music = shares.parse_music(MUSIC_BLOCK)
    assert music.block() == MUSIC_BLOCK
    assert music.body() == (
        "[Music] Blue Moon - Billie Holiday (Lady in Autumn, 3:05) https://music.example/blue-moon"
    )
    minimal = shares.parse_music({k: MUSIC_BLOCK[k] for k in ("title", "artist", "url")})
    assert minimal.body() == "[Music] Blue Moon - Billie Holiday https://music.example/blue-moon"
    content = music.content()
    shares.check_share_content(content)
    assert content["msgtype"] == shares.MSGTYPE_MUSIC


@pytest.mark.parametrize(
    ("change", "param", "error"),
    [
        ({"title": None}, "org.laiwang.share.music.title", MissingParam),
        ({"title": "  "}, "org.laiwang.share.music.title", InvalidParam),
        ({"artist": 5}, "org.laiwang.share.music.artist", InvalidParam),
        ({"url": "javascript:alert(1)"}, "org.laiwang.share.music.url", InvalidParam),
        ({"url": None}, "org.laiwang.share.music.url", MissingParam),
        ({"cover": "https://x.example/c.png"}, "org.laiwang.share.music.cover", InvalidParam),
        ({"duration_ms": 1.5}, "org.laiwang.share.music.duration_ms", InvalidParam),
        ({"duration_ms": True}, "org.laiwang.share.music.duration_ms", InvalidParam),
        ({"duration_ms": 0}, "org.laiwang.share.music.duration_ms", InvalidParam),
        ({"extra": 1}, "org.laiwang.share.music.extra", InvalidParam),
        ({"title": "x" * 301}, "org.laiwang.share.music.title", InvalidParam),
    ],
)
def test_malformed_music_is_refused(change, param, error):
    block = {k: v for k, v in {**MUSIC_BLOCK, **change}.items() if v is not None}
    content = {"msgtype": shares.MSGTYPE_MUSIC, "body": "[Music] x", shares.MSGTYPE_MUSIC: block}
    with pytest.raises(error) as e:
        shares.check_share_content(content)
    assert e.value.param == param


def test_share_needs_block_and_body():
    with pytest.raises(MissingParam):
        shares.check_share_content({"msgtype": shares.MSGTYPE_MUSIC, "body": "[Music] x"})
    with pytest.raises(InvalidParam):
        shares.check_share_content(
            {"msgtype": shares.MSGTYPE_MUSIC, "body": "[Music] x", shares.MSGTYPE_MUSIC: "x"}
        )
    with pytest.raises(InvalidParam) as e:
        shares.check_share_content(
            {"msgtype": shares.MSGTYPE_MUSIC, "body": " ", shares.MSGTYPE_MUSIC: MUSIC_BLOCK}
        )
    assert e.value.param == "body"
    # An edit into a malformed share is refused too.
    with pytest.raises(ValidationError) as edit_error:
        shares.check_share_content(
            {
                "msgtype": "m.text",
                "body": "* x",
                "m.new_content": {
                    "msgtype": shares.MSGTYPE_MUSIC,
                    "body": "x",
                    shares.MSGTYPE_MUSIC: {},
                },
            }
        )
    assert str(edit_error.value.param).startswith("m.new_content.")
    # Other messages pass untouched.
    shares.check_share_content({"msgtype": "m.text", "body": "hi"})
    shares.check_share_content({})


# --- shop items ---------------------------------------------------------------------------


def test_item_roundtrip_body_and_link_preview():
    item = shares.parse_item(ITEM_BLOCK)
    assert item.block() == ITEM_BLOCK
    assert item.body() == "[Shop] Longjing tea CNY 99.00 (bought) https://shop.example/tea-1"
    content = item.content()
    shares.check_share_content(content)
    (preview,) = content[shares.LINK_PREVIEWS]
    assert preview["matched_url"] == ITEM_BLOCK["url"]
    assert preview["og:title"] == "Longjing tea"
    assert preview["og:description"] == "Tea House · CNY 99.00"
    assert preview["og:image"] == "mxc://a.test/tea"
    jpy = shares.parse_item(
        {**ITEM_BLOCK, "price": {"amount": 500, "currency": "JPY"}, "bought": False}
    )
    assert jpy.body() == "[Shop] Longjing tea JPY 500 https://shop.example/tea-1"


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"price": {"amount": 99.0, "currency": "CNY"}}, "org.laiwang.share.item.price.amount"),
        ({"price": {"amount": "99", "currency": "CNY"}}, "org.laiwang.share.item.price.amount"),
        ({"price": {"amount": 0, "currency": "CNY"}}, "org.laiwang.share.item.price.amount"),
        ({"price": {"amount": 1, "currency": "XYZ"}}, "org.laiwang.share.item.price.currency"),
        ({"price": {"amount": 1}}, "org.laiwang.share.item.price.currency"),
        ({"price": 99}, "org.laiwang.share.item.price"),
        ({"bought": "yes"}, "org.laiwang.share.item.bought"),
        ({"bought": True, "order_id": None}, "org.laiwang.share.item.bought"),
        ({"item_id": ""}, "org.laiwang.share.item.item_id"),
        ({"image": "http://x/y.png"}, "org.laiwang.share.item.image"),
        ({"url": "shop.example/x"}, "org.laiwang.share.item.url"),
    ],
)
def test_malformed_item_is_refused(change, param):
    block = {k: v for k, v in {**ITEM_BLOCK, **change}.items() if v is not None}
    content = {"msgtype": shares.MSGTYPE_ITEM, "body": "[Shop] x", shares.MSGTYPE_ITEM: block}
    with pytest.raises(ValidationError) as e:
        shares.check_share_content(content)
    assert e.value.param == param


@pytest.mark.parametrize(
    "previews",
    [
        "https://x",
        [5],
        [{"matched_url": 5}],
        [{"og:title": {"nested": 1}}],
        [{"og:image": "https://x/y.png"}],
        [{}] * 11,
    ],
)
def test_malformed_link_previews_on_item_are_refused(previews):
    content = {**shares.parse_item(ITEM_BLOCK).content(), shares.LINK_PREVIEWS: previews}
    with pytest.raises(InvalidParam):
        shares.check_share_content(content)


# --- forwards -----------------------------------------------------------------------------


def test_forward_keeps_the_original_and_attributes_it():
    original = {
        **shares.parse_music(MUSIC_BLOCK).content(),
        "m.relates_to": {"rel_type": "m.thread", "event_id": POST},
    }
    source = shares.ForwardSource("!room:a.test", "$ev", OWNER)
    content = shares.forward_content(original, source, "listen!")
    assert "m.relates_to" not in content  # a forward is a top-level post
    assert content[shares.MSGTYPE_MUSIC] == MUSIC_BLOCK
    assert content[shares.FORWARD_BLOCK] == {**source.block(), "comment": "listen!"}
    assert content["body"] == f"listen!\nForwarded from {OWNER}: {original['body']}"
    shares.check_share_content(content)
    html = shares.forward_content(
        {
            "msgtype": "m.text",
            "body": "a<b",
            "format": "org.matrix.custom.html",
            "formatted_body": "a&lt;b",
        },
        source,
        "<script>",
    )
    assert html["formatted_body"].startswith("&lt;script&gt;<br><blockquote>")


def test_forward_request_and_block_validation():
    assert shares.parse_forward_request(
        {"room_id": "!r:a.test", "event_id": "$e", "comment": "  "}
    ) == (
        "!r:a.test",
        "$e",
        None,
    )
    for body, error in (
        ({"event_id": "$e"}, MissingParam),
        ({"room_id": "!r:a.test"}, MissingParam),
        ({"room_id": "r", "event_id": "$e"}, InvalidParam),
        ({"room_id": "!r:a.test", "event_id": "e"}, InvalidParam),
        ({"room_id": "!r:a.test", "event_id": "$e", "comment": 1}, InvalidParam),
        ({"room_id": "!r:a.test", "event_id": "$e", "comment": "x" * 2001}, InvalidParam),
        ({"room_id": "!r:a.test", "event_id": "$e", "x": 1}, InvalidParam),
    ):
        with pytest.raises(error):
            shares.parse_forward_request(body)
    for block in (
        {},
        {"room_id": "!r:a.test", "event_id": "$e"},
        {"room_id": "!r:a.test", "event_id": "$e", "sender": "bob"},
    ):
        with pytest.raises(ValidationError):
            shares.check_share_content(
                {"msgtype": "m.text", "body": "x", shares.FORWARD_BLOCK: block}
            )


def test_what_may_be_forwarded():
    assert shares.forwardable_refusal("m.room.message", {"msgtype": "m.text", "body": "x"}) is None
    assert shares.forwardable_refusal("m.reaction", {})
    assert shares.forwardable_refusal("m.room.message", {})  # redacted
    assert shares.forwardable_refusal(
        "m.room.message", {"msgtype": "org.laiwang.aa.request", "body": "x"}
    )
    edit = {
        "msgtype": "m.text",
        "body": "x",
        "m.relates_to": {"rel_type": "m.replace", "event_id": POST},
    }
    assert shares.forwardable_refusal("m.room.message", edit)


# --- the feed -----------------------------------------------------------------------------


@given(
    st.integers(min_value=0, max_value=2**62),
    st.from_regex(r"\$[A-Za-z0-9_\-|:.]{1,60}", fullmatch=True),
)
def test_cursor_roundtrip(ts, event_id):
    cursor = shares.FeedCursor(ts, event_id)
    assert shares.decode_cursor(cursor.encode()) == cursor


@given(st.text(max_size=80))
def test_cursor_garbage_is_a_clear_error(token):
    try:
        shares.decode_cursor(token)
    except InvalidParam as e:
        assert e.param == "from"


def test_feed_limit():
    assert shares.parse_feed_limit(None) == shares.DEFAULT_FEED_LIMIT
    assert shares.parse_feed_limit("100") == 100
    for bad in ("0", "101", "-1", "1.5", "x", " 5"):
        with pytest.raises(InvalidParam):
            shares.parse_feed_limit(bad)


def test_posts_and_relations_for_the_feed():
    text = {"msgtype": "m.text", "body": "x"}
    assert shares.is_post(OWNER, OWNER, "m.room.message", text)
    assert not shares.is_post(FRIEND, OWNER, "m.room.message", text)
    assert not shares.is_post(OWNER, OWNER, "m.room.message", with_relation("m.thread"))
    assert not shares.is_post(OWNER, OWNER, "m.room.message", {})
    assert not shares.is_post(OWNER, OWNER, "m.reaction", with_relation("m.annotation"))
    assert shares.feed_relation("m.reaction", with_relation("m.annotation")) == ("reaction", POST)
    assert shares.feed_relation("m.room.message", with_relation("m.thread")) == ("comment", POST)
    assert shares.feed_relation("m.room.message", with_relation("m.replace")) is None
    assert shares.feed_relation("m.room.message", text) is None


# --- the feed query (storage/shares.py's SQL, on SQLite) -----------------------------------


def _feed_db(acquainted: set[str], posts: list[tuple[str, str, int]]) -> Any:
    import sqlite3

    from laiwang_module.storage.schema.migrations import SHARES

    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE events (event_id TEXT, room_id TEXT, received_ts BIGINT)")
    for _version, statements in SHARES.migrations:
        for statement in statements:
            db.execute(statement)
    db.execute(
        "CREATE TABLE laiwang_acquaintances (user_id TEXT NOT NULL, other_id TEXT NOT NULL,"
        " room_id TEXT NOT NULL, source TEXT NOT NULL, since_ts BIGINT NOT NULL,"
        " PRIMARY KEY (user_id, other_id))"
    )
    db.executemany(
        "INSERT INTO laiwang_acquaintances VALUES ('@me', ?, '!c', 'request', 0)",
        [(a,) for a in acquainted],
    )
    db.executemany("INSERT INTO laiwang_timeline_posts VALUES (?, '!r', ?, ?)", posts)
    return db


feed_cases = st.tuples(
    st.sets(st.sampled_from(["@a", "@b", "@c", "@d", "@e"])),  # the caller's acquaintances
    st.lists(
        st.tuples(st.sampled_from(["@me", "@a", "@b", "@c", "@d", "@e", "@x"]), st.integers(0, 30)),
        max_size=60,
    ),
    st.integers(1, 7),
)


@settings(deadline=None)  # the first example imports Synapse's storage
@given(feed_cases)
def test_feed_pages_are_the_newest_posts_of_the_right_people(case):
    from laiwang_module.storage.shares import get_feed_txn

    acquainted, raw_posts, limit = case
    posts = [(f"$e{i:03d}", owner, ts) for i, (owner, ts) in enumerate(raw_posts)]
    db = _feed_db(acquainted, posts)
    expected = sorted(
        ((ts, e) for e, owner, ts in posts if owner in acquainted | {"@me"}), reverse=True
    )
    seen: list[tuple[int, str]] = []
    before = None
    while True:
        page = get_feed_txn(db.cursor(), "@me", limit, before)
        assert len(page) <= limit
        seen += [(r.ts, r.event_id) for r in page]
        if len(page) < limit:
            break
        before = (page[-1].ts, page[-1].event_id)
    assert seen == expected


def test_a_relation_counts_only_in_its_posts_room():
    """The feed query counts a reaction or comment only when it was sent in the post's room."""
    db = _feed_db(set(), [("$p", "@me", 5)])
    db.executemany(
        "INSERT INTO laiwang_timeline_relations (event_id, post_id, kind, room_id)"
        " VALUES (?, '$p', ?, ?)",
        [
            ("$r1", "reaction", "!r"),
            ("$r2", "reaction", "!elsewhere"),
            ("$c1", "comment", "!r"),
            ("$c2", "comment", "!elsewhere"),
            ("$c3", "comment", None),  # indexed before rooms were recorded, event unknown
        ],
    )
    from laiwang_module.storage.shares import get_feed_txn

    [row] = get_feed_txn(db.cursor(), "@me", 10, None)
    assert (row.reactions, row.comments) == (1, 1)


def test_relations_indexed_before_get_their_room_from_synapses_events():
    """Migration 2 fills the room of relations indexed earlier from Synapse's `events`."""
    import sqlite3

    from laiwang_module.storage.schema.migrations import SHARES

    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE events (event_id TEXT, room_id TEXT, received_ts BIGINT)")
    db.executemany(
        "INSERT INTO events VALUES (?, ?, ?)",
        [("$r1", "!r", 10), ("$r2", "!other", 10), ("$p1", "!r", 100), ("$p2", "!r", 100)],
    )
    (_, first), (_, second) = SHARES.migrations[:2]
    for statement in first:
        db.execute(statement)
    db.executemany("INSERT INTO laiwang_timeline_relations VALUES (?, '$p1', 'reaction')", [
        ("$r1",), ("$r2",), ("$gone",)
    ])  # fmt: skip
    db.executemany(
        "INSERT INTO laiwang_timeline_posts VALUES (?, '!r', '@me', ?)",
        [("$p1", 50), ("$p2", 100 + 20 * 3600 * 1000), ("$unknown", 7)],
    )
    for statement in second:
        db.execute(statement)
    rooms = dict(db.execute("SELECT event_id, room_id FROM laiwang_timeline_relations"))
    assert rooms == {"$r1": "!r", "$r2": "!other", "$gone": None}
    # Posts dated after their reception are ranked as received; the others keep their time.
    posts = dict(db.execute("SELECT event_id, ts FROM laiwang_timeline_posts"))
    assert posts == {"$p1": 50, "$p2": 100, "$unknown": 7}


# --- remote timelines ----------------------------------------------------------------------


def test_a_timeline_is_real_only_when_its_owner_made_it():
    content = {"owner": OWNER}
    assert shares.is_real_timeline(OWNER, OWNER, content, OWNER)
    # Someone else created the room, or sent the state, or it names someone else, or is gone.
    assert not shares.is_real_timeline(OWNER, FRIEND, content, OWNER)
    assert not shares.is_real_timeline(OWNER, OWNER, content, FRIEND)
    assert not shares.is_real_timeline(OWNER, OWNER, {"owner": FRIEND}, FRIEND)
    assert not shares.is_real_timeline(OWNER, OWNER, {"owner": FRIEND}, OWNER)
    assert not shares.is_real_timeline(OWNER, OWNER, {}, OWNER)
    assert not shares.is_real_timeline(OWNER, OWNER, None, None)
    assert not shares.is_real_timeline(OWNER, None, content, OWNER)


def test_the_creator_in_stripped_state():
    create = {"type": "m.room.create", "state_key": "", "sender": OWNER, "content": {}}
    assert shares.stripped_creator([{"type": "m.room.name"}, create]) == OWNER
    assert shares.stripped_creator([]) is None
    assert shares.stripped_creator([{**create, "sender": "nobody"}]) is None
    assert shares.stripped_creator(["junk", {**create, "sender": 5}]) is None


@given(
    st.one_of(st.none(), st.integers(0, 10**7)),
    st.integers(0, 3 * shares.MAX_ACCEPTS_PER_WINDOW),
    st.integers(0, 10**7),
)
def test_accepting_is_bounded(previous, recent, now):
    allowed = shares.accept_allowed(previous, recent, now)
    if recent >= shares.MAX_ACCEPTS_PER_WINDOW:
        assert not allowed
    elif previous is None:
        assert allowed
    else:
        assert allowed == (now - previous >= shares.REACCEPT_AFTER_MS)


def _accepts_db() -> Any:
    import sqlite3

    from laiwang_module.storage.schema.migrations import SHARES

    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE events (event_id TEXT, room_id TEXT, received_ts BIGINT)")
    for _version, statements in SHARES.migrations:
        for statement in statements:
            db.execute(statement)
    return db


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 15), st.integers(0, 30_000)), max_size=40))
def test_the_accept_bound_holds_in_the_database(attempts):
    """However invites come (rooms, times), no more than MAX_ACCEPTS_PER_WINDOW joins in any
    window, and the same room again only after REACCEPT_AFTER_MS."""
    from laiwang_module.storage.shares import claim_accept_txn

    db = _accepts_db()
    now, accepted = 0, []
    for room, step in attempts:
        now += step
        room_id = f"!r{room}"
        if claim_accept_txn(
            db.cursor(), "@me", "@owner", room_id, now, now - shares.ACCEPT_WINDOW_MS
        ):
            accepted.append((now, room_id))
    for now, room_id in accepted:
        window = [a for a in accepted if now - shares.ACCEPT_WINDOW_MS < a[0] <= now]
        assert len(window) <= shares.MAX_ACCEPTS_PER_WINDOW
        same = [t for t, r in accepted if r == room_id and t < now]
        assert all(now - t >= shares.REACCEPT_AFTER_MS for t in same)


# --- forwards from remote senders ----------------------------------------------------------


def test_which_forwards_this_server_can_vouch_for():
    def checkable(sender: str, creator: str | None) -> bool:
        return shares.forward_checkable(shares.ForwardSource("!r", "$e", sender), "a.test", creator)

    assert checkable("@x:a.test", None)  # a sender of this server, any room
    assert checkable("@x:c.test", "@y:a.test")  # a room created here
    assert not checkable("@x:c.test", "@y:c.test")
    assert not checkable("@x:c.test", None)  # a room this server does not know
    assert not checkable("@x:a.test.evil", "@y:a.test:8448")
    assert shares.forward_checkable(
        shares.ForwardSource("!r", "$e", "@x:c"), "localhost:8448", "@y:localhost:8448"
    )


def test_a_forward_matches_only_the_event_it_names():
    src = shares.ForwardSource("!r:a.test", "$e", OWNER)
    text = {"msgtype": "m.text", "body": "hi"}
    assert shares.forward_matches(src, "!r:a.test", OWNER, "m.room.message", text)
    assert not shares.forward_matches(src, "!other:a.test", OWNER, "m.room.message", text)
    assert not shares.forward_matches(src, "!r:a.test", FRIEND, "m.room.message", text)
    assert not shares.forward_matches(src, "!r:a.test", OWNER, "m.reaction", text)
    assert not shares.forward_matches(src, "!r:a.test", OWNER, "m.room.message", {})
    bill = {"msgtype": "org.laiwang.aa.request", "body": "pay"}
    assert not shares.forward_matches(src, "!r:a.test", OWNER, "m.room.message", bill)
