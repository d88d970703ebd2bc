"""Contact requests, the acquaintance index and the acquaintances-only policy, on real servers."""

from __future__ import annotations

from functools import partial

import pytest
import yaml

from tests.harness.client import MatrixClient, MatrixError, wait_until
from tests.harness.servers import TestHomeserver, execute, start_all
from tests.harness.social import make_acquainted


def contacts(user: MatrixClient) -> dict[str, dict]:
    return {c["user_id"]: c for c in user.laiwang("GET", "/contacts")["contacts"]}


def forbidden(call) -> str:
    with pytest.raises(MatrixError) as e:
        call()
    assert (e.value.status, e.value.errcode) == (403, "M_FORBIDDEN"), e.value.body
    return str(e.value.body["error"])


def test_request_accept_by_plain_join(hs1):
    alice, bob = hs1.new_user("alice"), hs1.new_user("bob")
    bob.laiwang("PUT", "/settings", {"accept_requests_from": "anyone"})
    room = alice.laiwang("POST", "/contacts/requests", {"user_id": bob.user_id, "message": "hi!"})[
        "room_id"
    ]
    state = alice.state(room, "org.laiwang.acquaintance")
    assert state == {"requester": alice.user_id, "target": bob.user_id, "message": "hi!"}
    # Asking again returns the same room.
    again = alice.laiwang("POST", "/contacts/requests", {"user_id": bob.user_id})
    assert again["room_id"] == room

    incoming = bob.laiwang("GET", "/contacts/requests")["incoming"]
    assert [(r["user_id"], r["room_id"], r["message"]) for r in incoming] == [
        (alice.user_id, room, "hi!")
    ]
    outgoing = alice.laiwang("GET", "/contacts/requests")["outgoing"]
    assert [r["user_id"] for r in outgoing] == [bob.user_id]
    assert contacts(alice) == {}

    bob.join(room)  # any client can accept: a plain join
    mine = wait_until(lambda: contacts(alice).get(bob.user_id))
    assert mine["room_id"] == room and mine["source"] == "request" and mine["since_ts"] > 0
    assert contacts(bob)[alice.user_id]["room_id"] == room
    assert bob.laiwang("GET", "/contacts/requests") == {"incoming": [], "outgoing": []}
    # The requester's client sees it as a direct chat.
    m_direct = alice.call("GET", f"/_matrix/client/v3/user/{alice.user_id}/account_data/m.direct")
    assert room in m_direct[bob.user_id]


def test_strangers_cannot_invite_acquaintances_can(hs1):
    alice, bob, mallory = hs1.new_user("alice"), hs1.new_user("bob"), hs1.new_user("mallory")
    make_acquainted(alice, bob)
    room = mallory.create_room(preset="private_chat")
    reason = forbidden(lambda: mallory.invite(room, bob.user_id))
    assert "not an acquaintance" in reason
    # createRoom with a stranger in `invite` is refused as a whole.
    forbidden(lambda: mallory.create_room(preset="private_chat", invite=[bob.user_id]))
    # An acquaintance may invite, also at creation.
    group = alice.create_room(preset="private_chat", invite=[bob.user_id])
    wait_until(lambda: group in bob.invited_rooms())


def test_request_policy_settings(hs1):
    alice = hs1.new_user("alice")
    nobody, book = hs1.new_user("nobody"), hs1.new_user("book")
    nobody.laiwang("PUT", "/settings", {"accept_requests_from": "nobody"})
    assert "does not accept contact requests" in forbidden(
        lambda: alice.laiwang("POST", "/contacts/requests", {"user_id": nobody.user_id})
    )
    # The default is address_book: alice is not in book's address book.
    forbidden(lambda: alice.laiwang("POST", "/contacts/requests", {"user_id": book.user_id}))
    # A forged request room (state naming someone else as requester) does not get through.
    room = alice.create_room(
        preset="private_chat",
        initial_state=[
            {
                "type": "org.laiwang.acquaintance",
                "state_key": "",
                "content": {"requester": book.user_id, "target": nobody.user_id},
            }
        ],
    )
    forbidden(lambda: alice.invite(room, nobody.user_id))
    assert alice.laiwang("GET", "/contacts/requests")["outgoing"] == []


def test_ignored_users_can_never_reach(hs1):
    alice, bob = hs1.new_user("alice"), hs1.new_user("bob")
    bob.laiwang("PUT", "/settings", {"accept_requests_from": "anyone"})
    bob.set_account_data("m.ignored_user_list", {"ignored_users": {alice.user_id: {}}})
    assert "does not accept invites" in forbidden(
        lambda: alice.laiwang("POST", "/contacts/requests", {"user_id": bob.user_id})
    )


def test_decline_and_remove_and_kick(hs1):
    alice, bob, carol = hs1.new_user("alice"), hs1.new_user("bob"), hs1.new_user("carol")
    bob.laiwang("PUT", "/settings", {"accept_requests_from": "anyone"})
    room = alice.laiwang("POST", "/contacts/requests", {"user_id": bob.user_id})["room_id"]
    bob.leave(room)  # rejecting the invite declines
    wait_until(lambda: bob.laiwang("GET", "/contacts/requests")["incoming"] == [])
    assert contacts(alice) == {} and contacts(bob) == {}

    make_acquainted(alice, carol)
    alice.laiwang("DELETE", f"/contacts/{carol.user_id}")
    assert contacts(alice) == {}
    wait_until(lambda: contacts(carol) == {})
    with pytest.raises(MatrixError) as e:
        alice.laiwang("DELETE", f"/contacts/{carol.user_id}")
    assert (e.value.status, e.value.errcode) == (404, "M_NOT_FOUND")

    dave = hs1.new_user("dave")
    room = make_acquainted(alice, dave)
    alice.call("POST", f"/_matrix/client/v3/rooms/{room}/kick", {"user_id": dave.user_id})
    wait_until(lambda: contacts(alice) == {} and contacts(dave) == {})
    # After it ended, a stranger again.
    forbidden(lambda: alice.create_room(preset="private_chat", invite=[dave.user_id]))


def test_asking_back_accepts(hs1):
    alice, bob = hs1.new_user("alice"), hs1.new_user("bob")
    alice.laiwang("PUT", "/settings", {"accept_requests_from": "anyone"})
    bob.laiwang("PUT", "/settings", {"accept_requests_from": "anyone"})
    room = alice.laiwang("POST", "/contacts/requests", {"user_id": bob.user_id})["room_id"]
    assert bob.laiwang("POST", "/contacts/requests", {"user_id": alice.user_id})["room_id"] == room
    wait_until(lambda: alice.user_id in contacts(bob) and bob.user_id in contacts(alice))


def test_admin_is_exempt_and_import(hs1):
    admin, bob = hs1.new_user("admin", admin=True), hs1.new_user("bob")
    room = admin.create_room(preset="trusted_private_chat", is_direct=True, invite=[bob.user_id])
    bob.join(room)
    admin.set_account_data("m.direct", {bob.user_id: [room]})
    assert admin.laiwang("POST", "/contacts/import") == {"imported": 1, "skipped": 0}
    assert contacts(admin)[bob.user_id]["source"] == "import"
    # The room now carries the acquaintance state, so bob's side knows it too.
    wait_until(lambda: admin.user_id in contacts(bob))
    assert admin.laiwang("POST", "/contacts/import", {}) == {"imported": 0, "skipped": 0}


def test_user_directory_hides_strangers(hs1):
    alice, bob, stranger = hs1.new_user("alice"), hs1.new_user("bob"), hs1.new_user("zed")
    public = stranger.create_room(preset="public_chat")
    alice.join(public)
    # alice shares a public room with the stranger, but the stranger is not found by name...
    make_acquainted(alice, bob)

    def search(term: str) -> set[str]:
        r = alice.call("POST", "/_matrix/client/v3/user_directory/search", {"search_term": term})
        return {u["user_id"] for u in r["results"]}

    assert bob.user_id in wait_until(lambda: search(bob.user_id.split(":")[0][1:]) or None)
    # (sharing a room counts, as in Synapse; a stranger only in public rooms does not)
    alice.leave(public)
    wait_until(lambda: stranger.user_id not in search(stranger.user_id.split(":")[0][1:]))


@pytest.mark.parametrize(
    "body, status, errcode",
    [
        (b"{", 400, "M_NOT_JSON"),
        (b"[]", 400, "M_BAD_JSON"),
        (b"{}", 400, "M_MISSING_PARAM"),
        (b'{"user_id": 5}', 400, "M_INVALID_PARAM"),
        (b'{"user_id": "bob"}', 400, "M_INVALID_PARAM"),
        (b'{"user_id": "@x:y", "message": 7}', 400, "M_INVALID_PARAM"),
        (b'{"user_id": "@x:y", "colour": "red"}', 400, "M_INVALID_PARAM"),
    ],
)
def test_request_bad_input(hs1, body, status, errcode):
    alice = hs1.new_user("alice")
    r = alice.laiwang_raw("POST", "/contacts/requests", data=body)
    assert (r.status_code, r.json()["errcode"]) == (status, errcode)
    assert alice.laiwang("GET", "/contacts/requests")["outgoing"] == []


def test_request_to_self_unknown_and_long_message(hs1):
    alice = hs1.new_user("alice")
    for body, errcode in (
        ({"user_id": alice.user_id}, "M_INVALID_PARAM"),
        ({"user_id": hs1.user_id("nosuchuser")}, "M_NOT_FOUND"),
        ({"user_id": hs1.user_id("x"), "message": "m" * 501}, "M_INVALID_PARAM"),
    ):
        r = alice.laiwang_raw("POST", "/contacts/requests", body)
        assert r.json()["errcode"] == errcode, r.json()
    r = alice.laiwang_raw("DELETE", "/contacts/not-a-user")
    assert r.json()["errcode"] == "M_INVALID_PARAM"
    assert alice.laiwang("GET", "/contacts/requests")["outgoing"] == []


def test_rebuild_is_admin_only_and_keeps_the_index(hs1):
    alice, bob = hs1.new_user("alice"), hs1.new_user("bob")
    make_acquainted(alice, bob)
    forbidden(lambda: alice.laiwang("POST", "/admin/contacts/rebuild", {}))
    admin = hs1.new_user("admin", admin=True)
    assert admin.laiwang("POST", "/admin/contacts/rebuild", {})["rooms"] >= 1
    assert bob.user_id in contacts(alice)


@pytest.mark.federation
def test_contact_request_across_servers(hs1, hs2):
    alice, bob = hs1.new_user("alice"), hs2.new_user("bob")
    bob.laiwang("PUT", "/settings", {"accept_requests_from": "anyone"})
    room = alice.laiwang("POST", "/contacts/requests", {"user_id": bob.user_id})["room_id"]
    wait_until(lambda: room in bob.invited_rooms(), timeout=60)
    incoming = wait_until(lambda: bob.laiwang("GET", "/contacts/requests")["incoming"])
    assert incoming[0]["user_id"] == alice.user_id
    bob.join(room, via=[hs1.server_name])
    wait_until(lambda: bob.user_id in contacts(alice), timeout=60)
    wait_until(lambda: alice.user_id in contacts(bob), timeout=60)


@pytest.mark.federation
def test_remote_stranger_is_refused(hs1, hs2):
    alice, stranger = hs1.new_user("alice"), hs2.new_user("stranger")
    room = stranger.create_room(preset="private_chat")
    with pytest.raises(MatrixError) as e:
        stranger.invite(room, alice.user_id)
    assert (e.value.status, e.value.errcode) == (403, "M_FORBIDDEN"), e.value.body
    assert room not in alice.invited_rooms()
    # and a contact request from the stranger meets alice's address_book default
    with pytest.raises(MatrixError) as e:
        stranger.laiwang("POST", "/contacts/requests", {"user_id": alice.user_id})
    assert (e.value.status, e.value.errcode) == (403, "M_FORBIDDEN"), e.value.body
    assert stranger.laiwang("GET", "/contacts/requests")["outgoing"] == []


@pytest.mark.federation
def test_remote_decline_and_leave_follow_membership(hs1, hs2):
    alice, bob, carol = hs1.new_user("alice"), hs2.new_user("bob"), hs2.new_user("carol")
    bob.laiwang("PUT", "/settings", {"accept_requests_from": "anyone"})
    room = alice.laiwang("POST", "/contacts/requests", {"user_id": bob.user_id})["room_id"]
    wait_until(lambda: room in bob.invited_rooms(), timeout=60)
    bob.leave(room)  # reject the invite from another server
    wait_until(lambda: bob.laiwang("GET", "/contacts/requests")["incoming"] == [])
    wait_until(lambda: alice.laiwang("GET", "/contacts/requests")["outgoing"] == [], timeout=60)
    assert contacts(alice) == {}

    room = make_acquainted(alice, carol)
    carol.leave(room)  # leaving the direct chat ends it on both servers
    wait_until(lambda: contacts(carol) == {})
    wait_until(lambda: contacts(alice) == {}, timeout=60)


def test_index_is_rebuilt_from_the_rooms_after_loss(hs1):
    alice, bob = hs1.new_user("alice"), hs1.new_user("bob")
    room = make_acquainted(alice, bob)
    # Lose the module's records of this pair (Synapse keeps running; SQLite allows the write).
    execute(hs1, "DELETE FROM laiwang_contact_rooms WHERE room_id = ?", room)
    execute(hs1, "DELETE FROM laiwang_acquaintances WHERE room_id = ?", room)
    assert contacts(alice) == {}
    admin = hs1.new_user("admin", admin=True)
    admin.laiwang("POST", "/admin/contacts/rebuild", {})
    assert contacts(alice)[bob.user_id]["room_id"] == room
    assert contacts(bob)[alice.user_id]["room_id"] == room


def test_request_to_an_unreachable_server_leaves_nothing_behind(hs1):
    alice = hs1.new_user("alice")
    # Port 9 on loopback: nothing listens there (the discard port).
    r = alice.laiwang_raw("POST", "/contacts/requests", {"user_id": "@bob:127.0.0.1:9"})
    assert (r.status_code, r.json()["errcode"]) == (502, "M_UNKNOWN"), r.json()
    assert alice.laiwang("GET", "/contacts/requests")["outgoing"] == []
    assert contacts(alice) == {}


def test_appservice_users_are_exempt(tmp_path):
    """A bridge's users (the AS sender and its exclusive namespace) may invite anyone."""
    registration = {
        "id": "laiwang-test-bridge",
        "url": None,
        "as_token": "as-token-for-tests",
        "hs_token": "hs-token-for-tests",
        "sender_localpart": "shopbot",
        "namespaces": {"users": [{"exclusive": True, "regex": "@shop_.*"}]},
    }
    reg_file = tmp_path / "registration.yaml"
    reg_file.write_text(yaml.safe_dump(registration))
    server = start_all(
        [TestHomeserver(tmp_path / "hs", extra={"app_service_config_files": [str(reg_file)]})]
    )[0]
    try:
        alice = server.new_user("alice")
        bot = MatrixClient(server.base_url, server.user_id("shopbot"), "as-token-for-tests")
        room = bot.create_room(preset="private_chat", invite=[alice.user_id])
        wait_until(lambda: room in alice.invited_rooms())
        # A ghost user in the bridge's namespace, acting through the AS token.
        bot.call(
            "POST",
            "/_matrix/client/v3/register",
            {"type": "m.login.application_service", "username": "shop_42"},
        )
        ghost = server.user_id("shop_42")
        ghost_room = bot.call(
            "POST",
            "/_matrix/client/v3/createRoom",
            {"preset": "private_chat", "invite": [alice.user_id]},
            params={"user_id": ghost},
        )["room_id"]
        wait_until(lambda: ghost_room in alice.invited_rooms())
        # ...while an ordinary user still may not.
        zed = server.new_user("zed")
        forbidden(lambda: zed.create_room(preset="private_chat", invite=[alice.user_id]))
    finally:
        server.stop()


# --- read your own writes: on `lagging`, the index follows the rooms seconds late ------------


def _ask_and_accept(a: MatrixClient, b: MatrixClient) -> str:
    b.laiwang("PUT", "/settings", {"accept_requests_from": "anyone"})
    room = str(a.laiwang("POST", "/contacts/requests", {"user_id": b.user_id})["room_id"])
    wait_until(lambda: room in b.invited_rooms(), timeout=60)
    b.join_invited(room, via=[a.user_id.split(":", 1)[1]])
    return room


@pytest.mark.parametrize("remote", [False, True], ids=["same-server", "across-servers"])
def test_an_accepted_request_holds_for_the_very_next_invite(lagging, remote):
    """Right after B's join returns, A's invite of B to a new group is allowed: the invite check
    decides from the contact room when the index has not caught up yet."""
    prompt, late = lagging
    for _ in range(3):
        a = (prompt if remote else late).new_user("a")
        b = late.new_user("b")
        _ask_and_accept(a, b)
        group = a.create_room(preset="private_chat")
        a.invite(group, b.user_id)  # no waiting: it must not be refused as a stranger's
        wait_until(partial(_invited, b, group), timeout=60)


def _invited(user: MatrixClient, room: str) -> bool:
    return room in user.invited_rooms()


@pytest.mark.parametrize("remote", [False, True], ids=["same-server", "across-servers"])
def test_an_accepted_request_is_listed_by_the_very_next_read(lagging, remote):
    prompt, late = lagging
    for _ in range(3):
        a = (prompt if remote else late).new_user("a")
        b = late.new_user("b")
        room = _ask_and_accept(a, b)
        assert contacts(b)[a.user_id]["room_id"] == room
        assert b.laiwang("GET", "/contacts/requests")["incoming"] == []


def test_an_ended_acquaintance_holds_for_the_very_next_request(lagging):
    """Right after A leaves the contact room with a plain leave, asking B again makes a new
    request rather than answering with the room A just left."""
    _, late = lagging
    for _ in range(3):
        a, b = late.new_user("a"), late.new_user("b")
        room = make_acquainted(a, b)
        a.leave(room)
        again = a.laiwang("POST", "/contacts/requests", {"user_id": b.user_id})["room_id"]
        assert again != room
        assert a.state(again, "org.laiwang.acquaintance")["target"] == b.user_id
