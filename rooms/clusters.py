"""Clusters (扎堆): topic rooms that grow through friends of members. Pure code.

A cluster is a room whose state holds `org.laiwang.cluster` (state key "") `{"topic", "creator"}`,
with join rule `knock` and power levels that let every member invite. Members invite their own
acquaintances; an acquaintance of any member joins by asking (a knock approved in that member's
name). This module holds the shapes, the request validation, the createRoom body, the invitation
tree and the discovery ranking; the module and the bridge share it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attr

from rooms.errors import InvalidParam
from rooms.validation import (
    is_server_name,
    is_user_id,
    own_join,
    parse_bounded_int,
    reject_unknown_keys,
    require,
)

CLUSTER_STATE = "org.laiwang.cluster"
MAX_TOPIC_LEN = 200  # characters, after trimming; also the room name, which Synapse caps at 255
MAX_INVITES = 100
MAX_VIA = 10
DEFAULT_DISCOVER_LIMIT = 20
MAX_DISCOVER_LIMIT = 100

# A server name: a DNS name, IPv4 or [IPv6] literal, with an optional port.


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Cluster:
    """The content of an `org.laiwang.cluster` state event."""

    topic: str
    creator: str

    def to_content(self) -> dict[str, Any]:
        return {"topic": self.topic, "creator": self.creator}


def parse_cluster(content: Any) -> Cluster | None:
    """The cluster a state event's content describes, or None if it is not a valid one."""
    if not isinstance(content, Mapping):
        return None
    topic, creator = content.get("topic"), content.get("creator")
    if not isinstance(topic, str) or not is_user_id(creator):
        return None
    topic = topic.strip()
    if not topic or len(topic) > MAX_TOPIC_LEN:
        return None
    return Cluster(topic, str(creator))


def genuine_cluster(
    content: Any, state_sender: str | None, room_creator: str | None
) -> Cluster | None:
    """The cluster a room is, or None when it is none: its `org.laiwang.cluster` content names as
    `creator` the user who sent that state AND created the room (the sender of
    `m.room.create`). Anyone with power in a room can write any content; only this equality
    stops a room from passing as a cluster somebody else created (listed as theirs, ranked in
    their acquaintances' discovery)."""
    cluster = parse_cluster(content)
    if cluster is None or not cluster.creator == state_sender == room_creator:
        return None
    return cluster


def find_cluster_in_stripped_state(stripped: Iterable[Any]) -> Cluster | None:
    """The cluster named in an invite's or knock's stripped state, if the room is a genuine one
    (stripped state carries each event's sender, as the room's server claims it)."""
    found: dict[str, Mapping[str, Any]] = {}
    for ev in stripped:
        if isinstance(ev, Mapping) and ev.get("state_key") == "":
            kind = ev.get("type")
            if kind in (CLUSTER_STATE, "m.room.create") and isinstance(kind, str):
                found[kind] = ev
    state, create = found.get(CLUSTER_STATE), found.get("m.room.create")
    if state is None or create is None:
        return None
    return genuine_cluster(state.get("content"), state.get("sender"), create.get("sender"))


def counted_membership(membership: str, sender: str, state_key: str) -> str:
    """The membership the cluster index records: a join counts only when the user sent it
    themselves (a join sent by anyone else is no choice of theirs; Matrix's auth rules already
    refuse such joins, and this rule holds without relying on it)."""
    if membership == "join" and not own_join(membership, sender, state_key):
        return "unchosen"
    return membership


def member_count_delta(previous: str | None, current: str) -> int:
    """How a membership transition changes a cluster's member count (joined members only)."""
    return (current == "join") - (previous == "join")


# --- request bodies ---


def validate_topic(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidParam("topic", "must be a string")
    topic = value.strip()
    if not topic:
        raise InvalidParam("topic", "must not be empty")
    if len(topic) > MAX_TOPIC_LEN:
        raise InvalidParam("topic", f"must be at most {MAX_TOPIC_LEN} characters")
    return topic


def validate_create_body(body: Mapping[str, Any], caller: str) -> tuple[str, list[str]]:
    """`POST /clusters` → (topic, invitees without duplicates, in the order given)."""
    reject_unknown_keys(body, ("topic", "invite"))
    topic = validate_topic(require(body, "topic"))
    raw = body.get("invite")
    if raw is None:
        return topic, []
    if not isinstance(raw, list):
        raise InvalidParam("invite", "must be a list of user ids")
    if len(raw) > MAX_INVITES:
        raise InvalidParam("invite", f"must name at most {MAX_INVITES} users")
    invitees: list[str] = []
    for user_id in raw:
        if not is_user_id(user_id):
            raise InvalidParam("invite", "must hold Matrix user ids like @alice:example.org")
        if user_id == caller:
            raise InvalidParam("invite", "must not name yourself: you are the creator")
        if user_id not in invitees:
            invitees.append(user_id)
    return topic, invitees


def validate_join_body(body: Mapping[str, Any]) -> list[str]:
    """`POST /clusters/{room_id}/join` → the `via` servers (possibly none)."""
    reject_unknown_keys(body, ("via",))
    raw = body.get("via")
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_VIA:
        raise InvalidParam("via", f"must be a list of at most {MAX_VIA} server names")
    via: list[str] = []
    for name in raw:
        if not is_server_name(name):
            raise InvalidParam("via", "must hold server names like example.org or host:8448")
        if name not in via:
            via.append(name)
    return via


def validate_limit(raw: str | None) -> int:
    """The `limit` query parameter of `GET /clusters/discover`."""
    if raw is None:
        return DEFAULT_DISCOVER_LIMIT
    return parse_bounded_int(raw, "limit", minimum=1, maximum=MAX_DISCOVER_LIMIT)


def create_room_config(cluster: Cluster) -> dict[str, Any]:
    """The `/createRoom` body of a new cluster (invites are sent one by one afterwards)."""
    return {
        "preset": "private_chat",
        "name": cluster.topic,
        "topic": cluster.topic,
        "initial_state": [
            {"type": CLUSTER_STATE, "state_key": "", "content": cluster.to_content()},
            # Knock: strangers cannot /join; acquaintances of members ask and are let in.
            {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}},
        ],
        # Every member may invite (their own acquaintances: the policy refuses strangers).
        "power_level_content_override": {"invite": 0},
    }


# --- the invitation tree ---


@attr.s(frozen=True, slots=True, auto_attribs=True)
class MemberRow:
    """What this server recorded of one user in a cluster (also after they left)."""

    user_id: str
    invited_by: str | None
    joined_ts: int
    joined: bool = True


@attr.s(frozen=True, slots=True, auto_attribs=True)
class TreeNode:
    user_id: str
    invited_by: str | None
    joined_ts: int
    depth: int

    def to_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "invited_by": self.invited_by,
            "joined_ts": self.joined_ts,
            "depth": self.depth,
        }


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Tree:
    nodes: list[TreeNode]
    size: int
    max_depth: int

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes": [n.to_json() for n in self.nodes],
            "size": self.size,
            "max_depth": self.max_depth,
        }


def compute_depths(inviters: Mapping[str, str | None]) -> dict[str, int]:
    """Depth of every user: 0 for someone nobody brought, else 1 + their inviter's depth.

    An inviter with no row of their own counts as a root (their invitee has depth 1). A cycle
    (A brought B, B later brought A back after A left) is cut where the walk meets it: that
    user counts as a root.
    """
    depth: dict[str, int] = {}
    for start in inviters:
        path: list[str] = []  # path[k + 1] brought path[k]
        index: dict[str, int] = {}
        user = start
        while True:
            if user in depth:
                base = depth[user]
                break
            if user not in inviters:  # someone we have no row of: a root above the path
                base = 0
                break
            if user in index:  # a cycle: `user` becomes a root, the rest of the loop hangs off it
                i = index[user]
                depth[user] = base = 0
                for u in reversed(path[i + 1 :]):
                    base += 1
                    depth[u] = base
                base, path = 0, path[:i]
                break
            index[user] = len(path)
            path.append(user)
            inviter = inviters[user]
            if inviter is None:
                base = -1
                break
            user = inviter
        for u in reversed(path):
            base += 1
            depth[u] = base
    return depth


def compute_tree(rows: Iterable[MemberRow]) -> Tree:
    """The invitation tree of the joined members; departed members still link the chain."""
    rows = list(rows)
    inviters = {r.user_id: r.invited_by for r in rows}
    depths = compute_depths(inviters)
    nodes = [
        TreeNode(r.user_id, r.invited_by, r.joined_ts, depths[r.user_id]) for r in rows if r.joined
    ]
    nodes.sort(key=lambda n: (n.depth, n.joined_ts, n.user_id))
    return Tree(nodes, len(nodes), max((n.depth for n in nodes), default=0))


# --- discovery ---


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Candidate:
    room_id: str
    topic: str
    member_count: int
    last_active_ts: int
    acquaintances: Sequence[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "room_id": self.room_id,
            "topic": self.topic,
            "member_count": self.member_count,
            "acquaintances": sorted(self.acquaintances),
            "last_active_ts": self.last_active_ts,
        }


def discovery_key(acquaintance_count: int, last_active_ts: int, room_id: str) -> tuple[Any, ...]:
    """Most acquaintances first, then most recently active (the room id breaks ties)."""
    return (-acquaintance_count, -last_active_ts, room_id)


def rank(candidates: Iterable[Candidate], limit: int) -> list[Candidate]:
    ordered = sorted(
        (c for c in candidates if c.acquaintances),
        key=lambda c: discovery_key(len(c.acquaintances), c.last_active_ts, c.room_id),
    )
    return ordered[:limit]
