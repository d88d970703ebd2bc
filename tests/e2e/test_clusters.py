"""Clusters on real homeservers: chains of friends, joining by asking, strangers kept out."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from tests.e2e.test_aa import stays
from tests.harness.client import MatrixClient, MatrixError, wait_until
from tests.harness.servers import TestHomeserver, start_all
from tests.harness.social import make_acquainted


def error_of(call: Callable[[], Any]) -> tuple[int, str | None, str]:
    with pytest.raises(MatrixError) as e:
        call()
    return e.value.status, e.value.errcode, str(e.value.body.get("error"))


def tree(user: MatrixClient, room: str) -> dict[str, Any]:
    return user.laiwang("GET", f"/clusters/{quote(room)}/tree")


def shape(t: dict[str, Any]) -> dict[str, tuple[str | None, int]]:
    return {n["user_id"]: (n["invited_by"], n["depth"]) for n in t["nodes"]}


def join_by_asking(user: MatrixClient, room: str, via: list[str] | None = None) -> dict:
    body = {"via": via} if via else {}
    return user.laiwang("POST", f"/clusters/{quote(room)}/join", body)


def knock(user: MatrixClient, room: str) -> None:
    user.call("POST", f"/_matrix/client/v3/knock/{quote(room)}", {})


def discovered(user: MatrixClient) -> dict[str, dict[str, Any]]:
    return {c["room_id"]: c for c in user.laiwang("GET", "/clusters/discover")["clusters"]}


def test_chain_of_friends(hs1):
    a, b, c, d, e = (hs1.new_user(n) for n in "abcde")
    stranger = hs1.new_user("stranger")
    make_acquainted(a, b)
    make_acquainted(b, c)
    make_acquainted(c, d)
    make_acquainted(d, e)
    make_acquainted(c, e)

    room = a.laiwang("POST", "/clusters", {"topic": "  Weekend hiking ", "invite": [b.user_id]})[
        "room_id"
    ]
    assert a.state(room, "org.laiwang.cluster") == {"topic": "Weekend hiking", "creator": a.user_id}
    assert a.state(room, "m.room.topic")["topic"] == "Weekend hiking"
    assert a.state(room, "m.room.join_rules")["join_rule"] == "knock"
    assert a.state(room, "m.room.power_levels")["invite"] == 0

    # A brings B (the invite at creation), B brings C with any client (a plain invite).
    wait_until(lambda: room in b.invited_rooms())
    b.join(room)
    b.invite(room, c.user_id)
    c.join(room)
    # B cannot bring a stranger: the acquaintances-only policy holds inside clusters.
    status, errcode, reason = error_of(lambda: b.invite(room, stranger.user_id))
    assert (status, errcode) == (403, "M_FORBIDDEN") and "not an acquaintance" in reason

    # E knows C (and D): the cluster shows up in E's discovery; D's too, through C.
    wait_until(lambda: room in discovered(d))
    found = discovered(e)[room]
    assert found["acquaintances"] == [c.user_id] and found["member_count"] == 3
    assert found["topic"] == "Weekend hiking" and found["last_active_ts"] > 0

    # C's friend D joins by asking: C (on this server) lets D in.
    assert join_by_asking(d, room) == {"room_id": room}
    assert d.user_id in a.joined_members(room)
    t = tree(a, room)
    assert shape(t) == {
        a.user_id: (None, 0),
        b.user_id: (a.user_id, 1),
        c.user_id: (b.user_id, 2),
        d.user_id: (c.user_id, 3),
    }
    assert (t["size"], t["max_depth"]) == (4, 3)
    assert [n["user_id"] for n in t["nodes"]] == [a.user_id, b.user_id, c.user_id, d.user_id]
    assert all(n["joined_ts"] > 0 for n in t["nodes"])
    # Asking again when joined is a no-op.
    assert join_by_asking(d, room) == {"room_id": room}

    assert sorted(discovered(e)[room]["acquaintances"]) == sorted([c.user_id, d.user_id])
    assert room not in discovered(d)  # D is in now
    mine = {x["room_id"]: x for x in d.laiwang("GET", "/clusters")["clusters"]}
    assert mine[room]["topic"] == "Weekend hiking" and mine[room]["member_count"] == 4

    # Leaving and kicks: the tree and discovery follow them.
    d.leave(room)
    wait_until(lambda: d.user_id not in shape(tree(a, room)))
    assert discovered(e)[room]["acquaintances"] == [c.user_id]
    assert room not in {x["room_id"] for x in d.laiwang("GET", "/clusters")["clusters"]}
    # A ban hides the cluster from the banned user's discovery, though C is still in it.
    a.call("POST", f"/_matrix/client/v3/rooms/{quote(room)}/ban", {"user_id": e.user_id})
    wait_until(lambda: room not in discovered(e))
    status, errcode, _ = error_of(lambda: join_by_asking(e, room))
    assert (status, errcode) == (403, "M_FORBIDDEN")
    a.call("POST", f"/_matrix/client/v3/rooms/{quote(room)}/kick", {"user_id": c.user_id})
    wait_until(lambda: c.user_id not in shape(tree(a, room)))
    assert room not in discovered(d)  # no acquaintance of D is left in it
    assert tree(a, room)["size"] == 2


def test_stranger_is_refused_and_bad_input(hs1):
    a, b = hs1.new_user("a"), hs1.new_user("b")
    stranger = hs1.new_user("stranger")
    make_acquainted(a, b)
    room = a.laiwang("POST", "/clusters", {"topic": "Board games"})["room_id"]

    # Refused by the endpoint and by a plain /join.
    status, errcode, reason = error_of(lambda: join_by_asking(stranger, room))
    assert (status, errcode) == (403, "M_FORBIDDEN") and "acquaintance" in reason
    status, errcode, _ = error_of(lambda: stranger.join(room))
    assert (status, errcode) == (403, "M_FORBIDDEN")
    assert a.membership(room, stranger.user_id) is None
    # A stranger's knock is left for the members: not approved, even when a friend's knock
    # after it is.
    knock(stranger, room)
    assert join_by_asking(b, room) == {"room_id": room}
    assert a.state(room, "m.room.member", stranger.user_id)["membership"] == "knock"
    # Nor does the stranger see the tree.
    assert error_of(lambda: tree(stranger, room))[:2] == (403, "M_FORBIDDEN")

    # Creating a cluster that invites a stranger: a clear 403, and no room.
    status, errcode, reason = error_of(
        lambda: a.laiwang("POST", "/clusters", {"topic": "x", "invite": [stranger.user_id]})
    )
    assert (status, errcode) == (403, "M_FORBIDDEN") and "acquaintance" in reason
    assert a.laiwang("GET", "/clusters")["clusters"][0]["room_id"] == room

    # Bad input.
    bad_bodies: list[tuple[dict[str, Any], str]] = [
        ({}, "M_MISSING_PARAM"),
        ({"topic": ""}, "M_INVALID_PARAM"),
        ({"topic": "   "}, "M_INVALID_PARAM"),
        ({"topic": "x" * 201}, "M_INVALID_PARAM"),
        ({"topic": 3}, "M_INVALID_PARAM"),
        ({"topic": "t", "invite": "nope"}, "M_INVALID_PARAM"),
        ({"topic": "t", "invite": ["bob"]}, "M_INVALID_PARAM"),
    ]
    for body, expected in bad_bodies:
        r = a.laiwang_raw("POST", "/clusters", body)
        assert (r.status_code, r.json()["errcode"]) == (400, expected), (body, r.text)
    status, errcode, _ = error_of(lambda: a.laiwang("POST", "/clusters", {"topic": "x" * 70000}))
    assert (status, errcode) == (413, "M_TOO_LARGE")
    r = a.laiwang_raw("POST", "/clusters", data=b"{not json")
    assert (r.status_code, r.json()["errcode"]) == (400, "M_NOT_JSON")
    unknown = f"!nosuchroom:{hs1.server_name}"
    assert error_of(lambda: join_by_asking(b, unknown))[:2] == (404, "M_NOT_FOUND")
    assert error_of(lambda: tree(a, unknown))[:2] == (404, "M_NOT_FOUND")
    plain = a.create_room(preset="private_chat")
    assert error_of(lambda: join_by_asking(b, plain))[:2] == (404, "M_NOT_FOUND")
    assert error_of(lambda: tree(a, plain))[:2] == (404, "M_NOT_FOUND")
    assert error_of(lambda: join_by_asking(b, "not-a-room"))[:2] == (400, "M_INVALID_PARAM")
    assert error_of(lambda: join_by_asking(b, room, via=["bad host"]))[:2] == (
        400,
        "M_INVALID_PARAM",
    )
    status, errcode, _ = error_of(lambda: a.laiwang("GET", "/clusters/discover?limit=0"))
    assert (status, errcode) == (400, "M_INVALID_PARAM")


def test_friend_on_another_server_joins_by_asking(hs1, hs2):
    a, b = hs1.new_user("a"), hs1.new_user("b")
    d = hs2.new_user("d")  # B's friend on the second server
    make_acquainted(a, b)
    make_acquainted(b, d)
    room = a.laiwang("POST", "/clusters", {"topic": "Jazz", "invite": [b.user_id]})["room_id"]
    wait_until(lambda: room in b.invited_rooms())
    b.join(room)

    # hs2 is not in the room: D knocks over federation, hs1 (B's server) approves in B's name,
    # and hs2 joins D once the invite arrives.
    assert join_by_asking(d, room, via=[hs1.server_name]) == {"room_id": room}
    assert d.user_id in a.joined_members(room)
    invite = a.state(room, "m.room.member", d.user_id)
    assert invite["membership"] == "join"
    expected = {a.user_id: (None, 0), b.user_id: (a.user_id, 1), d.user_id: (b.user_id, 2)}
    assert shape(tree(a, room)) == expected
    # The second server derives the same tree from the room's state (a partial-state join).
    wait_until(lambda: shape(tree(d, room)) == expected, timeout=60)
    assert room in {x["room_id"] for x in d.laiwang("GET", "/clusters")["clusters"]}
    # It is kept in the database: the same after a restart.
    hs2.restart()
    assert shape(tree(d, room)) == expected


def test_local_caller_whose_only_friend_in_the_cluster_is_remote(hs1, hs2):
    a = hs1.new_user("a")
    x = hs2.new_user("x")  # a member on the second server
    y = hs1.new_user("y")  # knows only X; hs1 is in the room (A)
    make_acquainted(a, x)
    make_acquainted(x, y)
    room = a.laiwang("POST", "/clusters", {"topic": "Chess", "invite": [x.user_id]})["room_id"]
    wait_until(lambda: room in x.invited_rooms(), timeout=60)
    x.join_invited(room, via=[hs1.server_name])
    wait_until(lambda: x.user_id in a.joined_members(room), timeout=60)
    wait_until(lambda: x.user_id in shape(tree(a, room)))

    # Y's knock is a normal event in the room; X's server approves it in X's name.
    assert join_by_asking(y, room) == {"room_id": room}
    assert shape(tree(a, room))[y.user_id] == (x.user_id, 2)


@pytest.mark.postgres
def test_a_knock_is_approved_once_with_workers(worker_homeserver):
    """Both processes are notified of the knock; only one lets the knocker in."""
    main, worker = worker_homeserver
    a, b = main.new_user("a"), main.new_user("b")
    b_on_worker = MatrixClient(worker.base_url, b.user_id, b.access_token)
    make_acquainted(a, b)
    room = a.laiwang("POST", "/clusters", {"topic": "Workers"})["room_id"]
    # B asks with any client's "ask to join" (a plain knock): A's server lets B in, in A's name.
    knock(b_on_worker, room)
    wait_until(lambda: room in b.invited_rooms(), timeout=60)
    b.join(room)
    events = a.messages(room, limit=100)
    invites = [
        ev
        for ev in events
        if ev["type"] == "m.room.member"
        and ev["state_key"] == b.user_id
        and ev["content"]["membership"] == "invite"
    ]
    assert [ev["sender"] for ev in invites] == [a.user_id]
    assert shape(tree(b_on_worker, room))[b.user_id] == (a.user_id, 1)


@pytest.fixture(scope="module")
def impatient_pair(test_root):
    """Two federating servers whose join-by-asking waits 3 s for an approval."""
    config = {"clusters": {"knock_wait": "3s"}}
    servers = start_all(
        [
            TestHomeserver(test_root / "hs-knock1", federation=True, module_config=config),
            TestHomeserver(test_root / "hs-knock2", federation=True, module_config=config),
        ]
    )
    yield servers[0], servers[1]
    for s in servers:
        s.stop()


def test_stranger_on_another_server_is_left_knocking(impatient_pair):
    one, two = impatient_pair
    a = one.new_user("a")
    stranger = two.new_user("stranger")
    room = a.laiwang("POST", "/clusters", {"topic": "Private"})["room_id"]
    # The stranger's server is not in the room: it knocks, nobody approves, 403 after the wait.
    status, errcode, reason = error_of(
        lambda: join_by_asking(stranger, room, via=[one.server_name])
    )
    assert (status, errcode) == (403, "M_FORBIDDEN") and "knock waits" in reason
    # The knock stays for the members to decide; it was not approved.
    assert a.state(room, "m.room.member", stranger.user_id)["membership"] == "knock"
    status, errcode, _ = error_of(lambda: stranger.join(room, via=[one.server_name]))
    assert status == 403
    # A room that is not a cluster: 404, and the knock is withdrawn on the caller's server
    # (Synapse cannot yet rescind a knock over federation: the room's side still shows it).
    plain = a.create_room(preset="private_chat", initial_state=[
        {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}])  # fmt: skip
    status, errcode, reason = error_of(
        lambda: join_by_asking(stranger, plain, via=[one.server_name])
    )
    assert (status, errcode) == (404, "M_NOT_FOUND"), reason
    assert "not a cluster" in reason


# --- forged clusters, and a sender's clock ---------------------------------------------------


def listed(user: MatrixClient) -> dict[str, dict[str, Any]]:
    return {c["room_id"]: c for c in user.laiwang("GET", "/clusters")["clusters"]}


def forged_state(topic: str, creator: str) -> list[dict[str, Any]]:
    return [{"type": "org.laiwang.cluster", "state_key": "",
             "content": {"topic": topic, "creator": creator}}]  # fmt: skip


def test_a_local_stranger_cannot_pass_a_room_off_as_the_victims_cluster(hs1):
    """Mallory makes a room whose cluster state names vic as its creator (once in the initial
    state, once set later) and vic ends up a member (here by her own join; the attack rode on
    joins nobody chose). Neither room is a cluster: not listed as vic's, not in her friend's
    discovery, and not joinable by asking."""
    vic, fred, mallory = hs1.new_user("vic"), hs1.new_user("fred"), hs1.new_user("mallory")
    make_acquainted(vic, fred)
    make_acquainted(mallory, fred)
    at_creation = mallory.create_room(
        preset="public_chat", initial_state=forged_state("Vic's hiking club", vic.user_id)
    )
    later = mallory.create_room(preset="public_chat")
    mallory.put_state(later, "org.laiwang.cluster",
                      {"topic": "Vic's book club", "creator": vic.user_id})  # fmt: skip
    for room in (at_creation, later):
        vic.join(room)
    # A genuine cluster made afterwards, with vic in it: once it shows, the forged ones had
    # their turn on this server.
    genuine = mallory.laiwang("POST", "/clusters", {"topic": "Mallory's own"})["room_id"]
    wait_until(lambda: genuine in listed(mallory) and genuine in discovered(fred))
    for room in (at_creation, later):
        assert room not in listed(vic) and room not in listed(mallory)
        assert room not in discovered(fred) and room not in discovered(vic)
        status, errcode, _ = error_of(lambda room=room: join_by_asking(fred, room))  # type: ignore[misc]
        assert (status, errcode) == (404, "M_NOT_FOUND")
        assert fred.membership(room, fred.user_id) is None
    assert listed(vic) == {}


def test_a_malicious_server_cannot_forge_clusters_nor_rank_by_its_clock(hs1, attacker):
    """Pete's server (a plain Synapse) makes a room naming vic as the cluster's creator, and a
    genuine cluster of pete's whose events it stamps hours ahead. Vic is in both. The forged
    room is no cluster on vic's server; the genuine one ranks by when vic's server received its
    events, not by pete's clock."""
    vic, fred = hs1.new_user("vic"), hs1.new_user("fred")
    pete = attacker.new_user("pete")
    make_acquainted(vic, fred)
    forged = pete.create_room(
        preset="public_chat", initial_state=forged_state("Vic's hiking club", vic.user_id)
    )
    genuine = pete.create_room(
        preset="public_chat", initial_state=forged_state("Pete's club", pete.user_id)
    )
    for room in (forged, genuine):
        vic.join(room, via=[attacker.server_name])
    wait_until(lambda: genuine in listed(vic) and genuine in discovered(fred), timeout=60)
    assert forged not in listed(vic) and forged not in discovered(fred)
    status, errcode, _ = error_of(lambda: join_by_asking(fred, forged))
    assert (status, errcode) == (404, "M_NOT_FOUND")
    assert fred.membership(forged, fred.user_id) is None

    # Twelve hours ahead: further than the attacker's signing key is valid (a day here; at
    # most 7 days in any room version that checks it) and the event fails its signature check.
    future = int(time.time() * 1000) + 12 * 3600 * 1000
    txn = uuid.uuid4().hex
    sent = attacker.impersonate(pete).call(
        "PUT", f"/_matrix/client/v3/rooms/{quote(genuine)}/send/m.room.message/{txn}",
        {"msgtype": "m.text", "body": "from the future"}, params={"ts": future},
    )["event_id"]  # fmt: skip
    wait_until(lambda: vic.event(genuine, sent), timeout=60)
    assert vic.event(genuine, sent)["origin_server_ts"] == future

    def capped() -> bool:
        now = int(time.time() * 1000)
        return (
            listed(vic)[genuine]["last_active_ts"] <= now
            and discovered(fred)[genuine]["last_active_ts"] <= now
        )

    stays(capped)
    assert forged not in listed(vic) and forged not in discovered(fred)


# --- read your own writes: on `lagging`, the index follows the rooms seconds late ------------


def test_a_cluster_join_holds_for_the_very_next_call(lagging):
    """Right after a cluster is made, an acquaintance of its creator may join by asking; right
    after a join returns (by asking, or a plain join of an invite), the joiner sees the tree
    with themselves in it."""
    _, late = lagging
    for i in range(3):
        a = late.new_user("a")
        by_asking, invited = late.new_user(f"asker{i}"), late.new_user(f"invited{i}")
        make_acquainted(a, by_asking)
        make_acquainted(a, invited)
        room = a.laiwang("POST", "/clusters", {"topic": "Right away"})["room_id"]
        assert join_by_asking(by_asking, room) == {"room_id": room}
        assert shape(tree(by_asking, room))[by_asking.user_id] == (a.user_id, 1)
        a.invite(room, invited.user_id)
        invited.join(room)
        assert shape(tree(invited, room))[invited.user_id] == (a.user_id, 1)
        listing = late.new_user(f"listing{i}")
        make_acquainted(a, listing)
        a.invite(room, listing.user_id)
        listing.join(room)
        assert listed(listing)[room]["member_count"] == 4
