"""The pure cluster code in rooms/clusters.py: bodies, the createRoom body, tree, ranking."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rooms import clusters
from rooms.clusters import Candidate, MemberRow, compute_depths, compute_tree
from rooms.errors import InvalidParam, MissingParam, ValidationError

A, B, C, D, E = (f"@{n}:a.test" for n in "abcde")


def test_create_body_topic_rules():
    assert clusters.validate_create_body({"topic": "  Hiking  "}, A) == ("Hiking", [])
    with pytest.raises(MissingParam):
        clusters.validate_create_body({}, A)
    for bad, errcode in (
        ("", "M_INVALID_PARAM"),
        ("   ", "M_INVALID_PARAM"),
        (5, "M_INVALID_PARAM"),
        (None, "M_MISSING_PARAM"),
        (["x"], "M_INVALID_PARAM"),
        ("x" * (clusters.MAX_TOPIC_LEN + 1), "M_INVALID_PARAM"),
    ):
        with pytest.raises(ValidationError) as e:
            clusters.validate_create_body({"topic": bad}, A)
        assert (e.value.status, e.value.errcode) == (400, errcode)
    assert clusters.validate_create_body({"topic": "x" * clusters.MAX_TOPIC_LEN}, A)[0]


def test_create_body_invites():
    topic, invitees = clusters.validate_create_body({"topic": "t", "invite": [B, C, B]}, A)
    assert invitees == [B, C]
    for bad in ("@b:a.test", [A], ["bob"], [5], [None]):
        with pytest.raises(InvalidParam):
            clusters.validate_create_body({"topic": "t", "invite": bad}, A)
    many = [f"@u{i}:a.test" for i in range(clusters.MAX_INVITES + 1)]
    with pytest.raises(InvalidParam):
        clusters.validate_create_body({"topic": "t", "invite": many}, A)
    with pytest.raises(InvalidParam):
        clusters.validate_create_body({"topic": "t", "extra": 1}, A)


def test_join_body_and_limit():
    assert clusters.validate_join_body({}) == []
    assert clusters.validate_join_body({"via": ["a.test", "localhost:8448", "a.test"]}) == [
        "a.test",
        "localhost:8448",
    ]
    assert clusters.validate_join_body({"via": ["[::1]:8448"]}) == ["[::1]:8448"]
    for bad in ("a.test", ["a b"], [""], [3], ["x/y"], ["h"] * 11):
        with pytest.raises(InvalidParam):
            clusters.validate_join_body({"via": bad})
    assert clusters.validate_limit(None) == clusters.DEFAULT_DISCOVER_LIMIT
    assert clusters.validate_limit("5") == 5
    for bad in ("0", "-1", "x", "1000", ""):
        with pytest.raises(InvalidParam):
            clusters.validate_limit(bad)


def test_create_room_config_and_state():
    cluster = clusters.Cluster("Hiking", A)
    config = clusters.create_room_config(cluster)
    assert config["power_level_content_override"] == {"invite": 0}
    assert config["topic"] == "Hiking"
    state = {(e["type"], e["state_key"]): e["content"] for e in config["initial_state"]}
    assert state[("m.room.join_rules", "")] == {"join_rule": "knock"}
    assert clusters.parse_cluster(state[(clusters.CLUSTER_STATE, "")]) == cluster
    create = {"type": "m.room.create", "state_key": "", "sender": A, "content": {}}
    stripped = [
        create,
        {"type": clusters.CLUSTER_STATE, "state_key": "", "sender": A,
         "content": cluster.to_content()},
    ]  # fmt: skip
    assert clusters.find_cluster_in_stripped_state(stripped) == cluster
    # Without the create event, or with state sent by somebody else, it is no cluster.
    assert clusters.find_cluster_in_stripped_state(stripped[1:]) is None
    forged = [create, {**stripped[1], "sender": B}]
    assert clusters.find_cluster_in_stripped_state(forged) is None
    assert clusters.find_cluster_in_stripped_state([{"type": "m.room.name"}]) is None
    for bad in (None, {}, {"topic": "", "creator": A}, {"topic": "t", "creator": "x"}):
        assert clusters.parse_cluster(bad) is None


def test_tree_of_a_chain_with_departures():
    rows = [
        MemberRow(A, None, 1),
        MemberRow(B, A, 2),
        MemberRow(C, B, 3, joined=False),  # C left: still links D to the chain
        MemberRow(D, C, 4),
    ]
    tree = compute_tree(rows)
    assert [(n.user_id, n.invited_by, n.depth) for n in tree.nodes] == [
        (A, None, 0),
        (B, A, 1),
        (D, C, 3),
    ]
    assert (tree.size, tree.max_depth) == (3, 3)
    assert tree.to_json()["nodes"][0] == {
        "user_id": A,
        "invited_by": None,
        "joined_ts": 1,
        "depth": 0,
    }


def test_depths_unknown_inviter_and_cycles():
    assert compute_depths({B: "@ghost:x.test"}) == {B: 1}
    # A brought B, then B brought A back: the cycle is cut, nobody loops forever.
    assert compute_depths({A: B, B: A, C: A}) == {A: 0, B: 1, C: 1}
    assert compute_tree([]).to_json() == {"nodes": [], "size": 0, "max_depth": 0}


@st.composite
def forests(draw):
    """A random forest: each user brought by an earlier one (or by nobody)."""
    n = draw(st.integers(1, 40))
    users = [f"@u{i}:a.test" for i in range(n)]
    inviters: dict[str, str | None] = {}
    for i, u in enumerate(users):
        parent = draw(st.one_of(st.none(), st.integers(0, i - 1))) if i else None
        inviters[u] = users[parent] if parent is not None else None
    order = draw(st.permutations(users))
    return {u: inviters[u] for u in order}


@given(forests())
def test_depth_is_one_more_than_the_inviters(inviters):
    depths = compute_depths(inviters)
    assert set(depths) == set(inviters)
    for user, inviter in inviters.items():
        assert depths[user] == (0 if inviter is None else depths[inviter] + 1)


@given(st.dictionaries(st.sampled_from([A, B, C, D, E]), st.sampled_from([A, B, C, D, E, None])))
def test_depths_terminate_on_any_graph(inviters):
    depths = compute_depths(inviters)
    assert set(depths) == set(inviters)
    assert all(0 <= d <= len(inviters) for d in depths.values())


def test_ranking_most_acquaintances_then_most_recent():
    cands = [
        Candidate("!old:a", "t", 9, 100, [A, B]),
        Candidate("!new:a", "t", 3, 500, [A, B]),
        Candidate("!many:a", "t", 3, 1, [A, B, C]),
        Candidate("!none:a", "t", 3, 999, []),
    ]
    random.Random(1).shuffle(cands)
    assert [c.room_id for c in clusters.rank(cands, 10)] == ["!many:a", "!new:a", "!old:a"]
    assert [c.room_id for c in clusters.rank(cands, 1)] == ["!many:a"]
    assert Candidate("!r:a", "t", 2, 5, [B, A]).to_json()["acquaintances"] == [A, B]


def test_knock_wait_config():
    from synapse.config._base import ConfigError

    from laiwang_module.config import parse_config

    assert parse_config({}).clusters.knock_wait_ms == 30_000
    assert parse_config({"clusters": {"knock_wait": "5s"}}).clusters.knock_wait_ms == 5_000
    assert parse_config({"clusters": {"knock_wait": 1500}}).clusters.knock_wait_ms == 1_500
    for raw, path in (
        ({"clusters": {"knock_wait": "soon"}}, ("clusters", "knock_wait")),
        ({"clusters": {"knock_wait": 0}}, ("clusters", "knock_wait")),
        ({"clusters": {"wait": "5s"}}, ("clusters", "wait")),
        ({"clusters": []}, ("clusters",)),
    ):
        with pytest.raises(ConfigError) as e:
            parse_config(raw)
        assert tuple(e.value.path or ()) == path


# --- trust: forged clusters, the sender's clock, memberships nobody chose ---

user_ids = st.sampled_from([A, B, C, None, "not a user"])


@given(creator=user_ids, state_sender=user_ids, room_creator=user_ids)
def test_a_cluster_is_genuine_only_when_its_creator_made_the_room_and_the_state(
    creator, state_sender, room_creator
):
    content = {"topic": "Hiking", "creator": creator}
    found = clusters.genuine_cluster(content, state_sender, room_creator)
    if creator in (A, B, C) and creator == state_sender == room_creator:
        assert found == clusters.Cluster("Hiking", creator)
    else:
        assert found is None


def test_a_forged_creator_is_refused():
    # B's room (B created it and sent the state) that says A created the cluster.
    assert clusters.genuine_cluster({"topic": "t", "creator": A}, B, B) is None
    # A's name in state that B sent into a room A created (B had the power to).
    assert clusters.genuine_cluster({"topic": "t", "creator": A}, B, A) is None
    # Garbage content is no cluster whoever sent it.
    assert clusters.genuine_cluster({"topic": "", "creator": A}, A, A) is None


@given(
    membership=st.sampled_from(["join", "leave", "invite", "knock", "ban"]),
    sender=st.sampled_from([A, B]),
    target=st.sampled_from([A, B]),
)
def test_only_own_joins_count(membership, sender, target):
    counted = clusters.counted_membership(membership, sender, target)
    if membership == "join":
        assert counted == ("join" if sender == target else "unchosen")
    else:
        assert counted == membership
    assert clusters.member_count_delta(None, counted) == (counted == "join")


@given(st.lists(st.tuples(st.sampled_from([A, B, C, D]),
                          st.sampled_from(["join", "leave", "invite", "ban", "unchosen"]))))  # fmt: skip
def test_member_count_follows_transitions(history):
    rows: dict[str, str] = {}
    count = 0
    for user, membership in history:
        count += clusters.member_count_delta(rows.get(user), membership)
        rows[user] = membership
        assert count == sum(1 for m in rows.values() if m == "join")


# --- the index's work per membership event (handlers/clusters.py with fakes) ---


class Ev:
    """The parts of a Synapse event the cluster index reads."""

    def __init__(self, event_id, type, sender, state_key=None, content=None, auth=(), ts=0):
        self.event_id, self.type, self.sender, self.state_key = event_id, type, sender, state_key
        self.content, self.origin_server_ts, self._auth = content or {}, ts, list(auth)
        self.room_id = "!r:a.test"

    @property
    def membership(self):
        return self.content.get("membership")

    def auth_event_ids(self):
        return self._auth


class FakeStore:
    def __init__(self):
        self.rows, self.writes, self.forgotten, self.recorded = {}, 0, 0, []

    async def record_cluster(self, room_id, topic, creator, created_ts, ts):
        self.recorded.append(ts)
        return False

    async def get_cluster(self, room_id):
        return object() if self.recorded else None

    async def get_member_row(self, room_id, user_id):
        return self.rows.get(user_id)

    async def update_cluster_members(self, room_id, updates, only_missing=False):
        from laiwang_module.storage.clusters import MemberRecord

        for u in updates:
            self.writes += 1
            self.rows[u.user_id] = MemberRecord(u.membership, u.invited_by, u.event_id)

    async def forget_cluster(self, room_id):
        self.forgotten += 1


def fake_handler(monkeypatch, events):
    from types import SimpleNamespace

    from laiwang_module.handlers import clusters as handler_module

    fetches = []

    async def get_events(api, ids):
        fetches.append(list(ids))
        return {i: events[i] for i in ids if i in events}

    monkeypatch.setattr(handler_module, "get_events", get_events)
    api = SimpleNamespace(get_current_time_msec=lambda: 5_000,
                          run_as_background_process=lambda *a: None)  # fmt: skip
    server = SimpleNamespace(api=api, store=FakeStore(), config=SimpleNamespace(
        clusters=SimpleNamespace(knock_wait_ms=1000)))  # fmt: skip
    handler = handler_module.ClustersHandler(server)  # type: ignore[arg-type]
    return handler, server.store, fetches


def run(coro):
    import asyncio

    return asyncio.run(coro)


def test_the_index_walks_the_auth_chain_only_for_a_new_join(monkeypatch):
    create = Ev("$create", "m.room.create", A, "")
    state_ev = Ev("$c", clusters.CLUSTER_STATE, A, "", {"topic": "t", "creator": A})
    invite = Ev("$inv", "m.room.member", A, B, {"membership": "invite"})
    join = Ev("$j1", "m.room.member", B, B, {"membership": "join"}, auth=["$inv"], ts=10_000)
    rename = Ev("$j2", "m.room.member", B, B, {"membership": "join", "displayname": "b"},
                auth=["$j1"])  # fmt: skip
    events = {e.event_id: e for e in (invite, join, rename)}
    handler, store, fetches = fake_handler(monkeypatch, events)

    def state(member):
        return {("m.room.create", ""): create, (clusters.CLUSTER_STATE, ""): state_ev,
                ("m.room.member", B): member}  # fmt: skip

    run(handler.on_event(join, state(join)))
    assert len(fetches) == 1 and store.rows[B].invited_by == A
    # Activity is capped at this server's clock (5,000), not the sender's (10,000).
    assert store.recorded == [5_000]
    # The same event again (a re-delivery, another worker): no fetch, no write.
    run(handler.on_event(join, state(join)))
    assert (len(fetches), store.writes) == (1, 1)
    # A profile change keeps the inviter without walking back to the invite.
    run(handler.on_event(rename, state(rename)))
    assert len(fetches) == 1 and store.rows[B].invited_by == A and store.writes == 2
    # Cluster state that another member rewrote: no cluster any more, dropped from the index.
    forged = Ev("$c2", clusters.CLUSTER_STATE, B, "", {"topic": "t", "creator": A})
    run(handler.on_event(forged, {**state(rename), (clusters.CLUSTER_STATE, ""): forged}))
    assert store.forgotten == 1 and store.writes == 2
