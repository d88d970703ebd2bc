"""The module's own process killed in the middle of each multi-step operation.

One homeserver whose module dies (as `kill -9` does: `os._exit`, no shutdown) at a named point of
an operation for users whose id contains a marker (`testing.crash_at`): between creating a
timeline room and recording it, between recording it and adding the owner's acquaintances,
between claiming a knock and inviting the knocker, between a provider charge and storing its
receipt, and between storing the receipt and sending the payment event. After the restart
nothing is left half-done: the job (`upkeep.unfinished_after`, 3 s here) or the user's next call
finishes the operation, once, and never makes a second room, invite or charge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devtools.commerce import CommerceClient, MockProcess
from laiwang_module.crash_points import KILLED
from rooms.shares import TIMELINE_ROOM_TYPE
from tests.conftest import commerce_config
from tests.e2e.test_aa import ask, path
from tests.e2e.test_clusters import knock, shape, tree
from tests.e2e.test_commerce import linked, payment_events, payments_of
from tests.harness.client import MatrixClient, MatrixError, wait_until
from tests.harness.servers import TestHomeserver, sql, start_again, start_all
from tests.harness.social import make_acquainted

CRASH_AT = {
    "timeline_created": "tlcreated",
    "timeline_recorded": "tlrecorded",
    "knock_claimed": "knockee",
    "payment_answered": "answered",
    "payment_charged": "charged",
}


@pytest.fixture(scope="module")
def crashy(test_root: Path, commerce_mock: MockProcess) -> Iterator[TestHomeserver]:
    config: dict[str, Any] = {
        **commerce_config(commerce_mock),
        "testing": {"crash_at": CRASH_AT},
        "upkeep": {"retry_interval": "1s", "unfinished_after": "3s"},
    }
    server = TestHomeserver(test_root / "hs-crashy", module_config=config)
    start_all([server])
    yield server
    server.stop()


@pytest.fixture
def shop(commerce_mock: MockProcess) -> CommerceClient:
    return commerce_mock.client()


def dies(hs: TestHomeserver, action: Callable[[], object]) -> None:
    """Run the action, which kills the server's process at a crash point (its request may or may
    not have been answered by then); start the server again on the same data."""
    try:
        action()
    except (requests.ConnectionError, MatrixError):
        pass
    proc = hs.process.proc
    assert proc is not None
    assert proc.wait(timeout=60) == KILLED, "the crash point was not reached"
    start_again([hs])


def timeline_rooms(user: MatrixClient) -> list[str]:
    """The rooms the user is joined to that are made as timelines (whatever the module
    recorded)."""
    rooms = user.call("GET", "/_matrix/client/v3/joined_rooms")["joined_rooms"]
    return [r for r in rooms if user.state(r, "m.room.create").get("type") == TIMELINE_ROOM_TYPE]


def creations(hs: TestHomeserver, owner: MatrixClient) -> int:
    query = "SELECT COUNT(*) FROM laiwang_timeline_creations WHERE owner = ?"
    return int(sql(hs, query, owner.user_id)[0][0])


@pytest.mark.parametrize("marker", ["tlcreated", "tlrecorded"])
def test_a_timeline_creation_killed_midway_is_finished_with_one_room(
    crashy: TestHomeserver, marker: str
) -> None:
    """Killed after the room was made (not yet recorded), or after it was recorded (no member
    added yet): the job adopts that room and adds the acquaintances; no second room."""
    owner, friend = crashy.new_user(marker), crashy.new_user("friend")
    make_acquainted(owner, friend)
    dies(crashy, lambda: owner.laiwang("GET", "/timeline"))
    [room] = timeline_rooms(owner)
    # The job finishes it without any call of the owner's.
    wait_until(lambda: creations(crashy, owner) == 0 or None, timeout=60)
    recorded = sql(crashy, "SELECT room_id FROM laiwang_timelines WHERE owner = ?", owner.user_id)
    assert recorded == [(room,)]
    wait_until(lambda: friend.user_id in owner.joined_members(room) or None, timeout=60)
    assert owner.laiwang("GET", "/timeline")["room_id"] == room
    assert timeline_rooms(owner) == [room]
    # The timeline is in the owner's space, as a timeline made in one go is.
    [(space,)] = sql(crashy, "SELECT room_id FROM laiwang_spaces WHERE user_id = ?", owner.user_id)
    assert owner.state(space, "m.space.child", room)["via"] == [crashy.server_name]


def test_a_timeline_whose_creation_died_is_adopted_by_the_owners_next_call(
    crashy: TestHomeserver,
) -> None:
    """The owner asks again at once after the restart, before the job's turn: the call adopts
    the room the dead creation made instead of making a second."""
    owner = crashy.new_user("tlcreated")
    dies(crashy, lambda: owner.laiwang("GET", "/timeline"))
    [room] = timeline_rooms(owner)
    assert owner.laiwang("GET", "/timeline")["room_id"] == room
    wait_until(lambda: creations(crashy, owner) == 0 or None, timeout=60)
    assert timeline_rooms(owner) == [room]


def test_a_knock_approval_killed_after_the_claim_is_finished_once(
    crashy: TestHomeserver,
) -> None:
    """Killed between the claim (which keeps other workers off the knock) and the invite: the
    job retakes the claim and lets the knocker in, with one invite in the member's name."""
    member, knocker = crashy.new_user("member"), crashy.new_user("knockee")
    make_acquainted(member, knocker)
    room = member.laiwang("POST", "/clusters", {"topic": "Night market"})["room_id"]
    dies(crashy, lambda: knock(knocker, room))
    wait_until(lambda: room in knocker.invited_rooms() or None, timeout=60)
    knocker.join(room)
    invites = [
        ev
        for ev in member.messages(room, limit=100)
        if ev["type"] == "m.room.member"
        and ev["state_key"] == knocker.user_id
        and ev["content"]["membership"] == "invite"
    ]
    assert [ev["sender"] for ev in invites] == [member.user_id]
    query = "SELECT approver, decided_ts IS NOT NULL FROM laiwang_cluster_knocks WHERE room_id = ?"
    assert [(a, bool(d)) for a, d in sql(crashy, query, room)] == [(member.user_id, True)]
    wait_until(lambda: shape(tree(member, room)).get(knocker.user_id) == (member.user_id, 1))


@pytest.mark.parametrize("marker", ["answered", "charged"])
def test_a_provider_payment_killed_after_the_charge_posts_its_event_once(
    crashy: TestHomeserver, shop: CommerceClient, marker: str
) -> None:
    """Killed after the service charged, before its receipt was stored (the job asks the
    service by the payment's key), or after it was stored, before the payment event: the job
    sends the event in the payer's name; the payer's retry answers that payment; one charge."""
    payee, payer = crashy.new_user("payee"), crashy.new_user(marker)
    room = payee.create_room(preset="public_chat")
    payer.join(room)
    linked(shop, payee)
    account = linked(shop, payer)
    request = ask(payee, room, [payee.user_id, payer.user_id])["event_id"]
    pay = path(room, request, "pay")
    dies(crashy, lambda: payer.laiwang("POST", pay, {"method": "provider"}))
    assert payments_of(shop, account) == 1
    # The dead `pay` left its slot taken: the job takes it over after `unfinished_after`.
    [event] = wait_until(lambda: payment_events(payer, room) or None, timeout=90)
    assert event["sender"] == payer.user_id
    assert payer.laiwang("POST", pay, {"method": "provider"})["event_id"] == event["event_id"]
    assert payments_of(shop, account) == 1 and len(payment_events(payer, room)) == 1
    wait_until(lambda: payee.laiwang("GET", path(room, request))["state"] == "settled" or None)
