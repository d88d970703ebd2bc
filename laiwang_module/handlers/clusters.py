"""Clusters: creation, joining by asking, knock approval, the membership index, the tree.

Joining by asking (`join`):
- this server is in the room: if a local member is an acquaintance of the caller, that member
  invites the caller and the caller joins at once; if only remote members are, the caller knocks
  (a normal room event) and a server of such a member approves it; if none is, 403.
- this server is not in the room: the caller knocks over federation (`via`); a server that has a
  member who is an acquaintance of the caller approves it by inviting in that member's name. The
  invite reaches this server out of band (no `on_new_event` for it), so the endpoint polls the
  caller's invites until it arrives, then joins; if none arrives in time, 403 and the knock stays
  for the members to decide.

Knock approval (`on_knock`) runs in the background on the room's side, once per knock event
across workers (a claim row in the database), and never for strangers.

The membership index follows each membership event from the room's current state, and a new
cluster's members are read once from the room's full state (after a partial-state join too);
`invited_by` comes from the join event's auth events (the invite it rests on), so every server in
the room derives the same tree, also for members who arrived over federation.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from synapse.api.errors import SynapseError
from synapse.events import EventBase
from synapse.types import StateMap

from laiwang_module.crash_points import crash_point
from laiwang_module.handlers.contacts import known_request
from laiwang_module.storage.clusters import ClusterRow, MemberRecord, MemberUpdate
from laiwang_module.synapse_compat import (
    get_events,
    invited_room_ids,
    is_host_in_room,
    is_shadow_banned,
    joined_users,
)
from rooms.clock import sort_ts
from rooms.clusters import (
    CLUSTER_STATE,
    Candidate,
    Cluster,
    Tree,
    compute_tree,
    counted_membership,
    create_room_config,
    find_cluster_in_stripped_state,
    genuine_cluster,
)
from rooms.errors import Forbidden, NotFound

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.25
# How far back a member's joins are followed to find the invite they rest on.
MAX_AUTH_WALK = 20


def cluster_of(state: StateMap[EventBase]) -> Cluster | None:
    """The genuine cluster a room's state makes it, or None (`rooms.clusters.genuine_cluster`)."""
    cluster_event = state.get((CLUSTER_STATE, ""))
    create = state.get(("m.room.create", ""))
    if cluster_event is None or create is None:
        return None
    return genuine_cluster(cluster_event.content, cluster_event.sender, create.sender)


class ClustersHandler:
    def __init__(self, server: LaiwangServer):
        self._server = server
        self._api = server.api
        self._store = server.store
        self._config = server.config
        self.knock_wait_s = server.config.clusters.knock_wait_ms / 1000

    def _now(self) -> int:
        return int(self._api.get_current_time_msec())

    def _is_mine(self, user_id: str) -> bool:
        return bool(self._api.is_mine(user_id))

    # --- creation ---

    async def create(self, caller: str, topic: str, invitees: list[str]) -> tuple[str, dict]:
        """Create a cluster and invite the caller's acquaintances; returns (room_id, failures),
        the invites that failed once the room exists. Raises Forbidden, before any room is
        made, when an invitee is not the caller's acquaintance."""
        for invitee in invitees:
            reason = await self._invite_refusal(caller, invitee)
            if reason is not None:
                raise Forbidden(reason)
        cluster = Cluster(topic, caller)
        room_id, _ = await self._api.create_room(caller, create_room_config(cluster))
        now = self._now()
        await self._store.record_cluster(room_id, topic, caller, now, now)
        await self.sync_members(room_id)
        failures: dict[str, str] = {}
        if await is_shadow_banned(self._api, caller):
            # As Synapse's /createRoom: the room is made, the invites reach no one, and the
            # answer says they all went out.
            return room_id, failures
        for invitee in invitees:
            try:
                await self._api.update_room_membership(caller, invitee, room_id, "invite")
            except SynapseError as e:
                # The room exists now: report the invite that failed rather than fail it all.
                logger.info("cluster %s: invite of %s failed: %s", room_id, invitee, e)
                failures[invitee] = e.msg
        return room_id, failures

    async def _invite_refusal(self, inviter: str, invitee: str) -> str | None:
        """Why a member may not invite invitee into a cluster (the acquaintances-only policy);
        remote invitees are checked here too, since their server's refusal comes too late."""
        handler = self._server.contacts_handler
        if self._is_mine(invitee):
            refusal = await handler.invite_refusal(inviter, invitee, known_request(None))
            return None if refusal is None else refusal.sentence
        if not self._config.acquaintances_only or await self._store.are_acquainted(
            inviter, invitee
        ):
            return None
        if await self._api.is_user_admin(inviter):
            return None
        return (
            f"{invitee} is not an acquaintance of {inviter}: members invite only their own "
            "acquaintances into a cluster."
        )

    # --- lookups ---

    async def _cluster_state(self, room_id: str) -> Cluster | None:
        """The room's cluster from its current state, if it is a genuine one."""
        state = await self._api.get_room_state(
            room_id, [(CLUSTER_STATE, ""), ("m.room.create", "")]
        )
        return cluster_of(state)

    async def _require_cluster(self, room_id: str) -> ClusterRow:
        """The cluster, if this server knows it (404 for an unknown room, a plain room, or one
        whose cluster state is forged). When this server is in the room, the room's current
        state decides, so that a row indexed before the rule (or a missed event) cannot
        outlive it."""
        row = await self._store.get_cluster(room_id)
        if not await is_host_in_room(self._api, room_id):
            if row is not None:
                return row
            raise NotFound(f"Unknown cluster {room_id}.")
        cluster = await self._cluster_state(room_id)
        if cluster is None:
            if row is not None:
                await self._store.forget_cluster(room_id)
            raise NotFound(f"{room_id} is not a cluster.")
        if row is not None:
            return row
        # A cluster whose index missed it: index it now.
        now = self._now()
        await self._store.record_cluster(room_id, cluster.topic, cluster.creator, now, now)
        await self.sync_members(room_id)
        row = await self._store.get_cluster(room_id)
        assert row is not None
        return row

    async def _membership(self, room_id: str, user_id: str, host_in_room: bool) -> str | None:
        """The local user's current membership, also an out-of-band invite or knock."""
        if host_in_room:
            state = await self._api.get_room_state(room_id, [("m.room.member", user_id)])
            event = state.get(("m.room.member", user_id))
            if event is not None:
                return str(event.membership)
        if room_id in await invited_room_ids(self._api, user_id):
            return "invite"
        return None

    async def list_mine(self, user_id: str) -> list[dict[str, Any]]:
        """The clusters the caller is a member of, as `GET /clusters` lists them."""
        # A join that just answered (a plain one) may not be in the index yet: the room decides.
        for room_id in await self._store.get_unindexed_cluster_joins(user_id):
            await self.index_member_now(room_id, user_id)
        return [row.to_json() for row in await self._store.get_user_clusters(user_id)]

    async def discover(self, user_id: str, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` clusters the caller is not in, ranked by how many of the caller's
        acquaintances are members, with those acquaintances."""
        found = await self._store.discover_clusters(user_id, limit)
        return [
            Candidate(c.room_id, c.topic, c.member_count, c.last_active_ts, friends).to_json()
            for c, friends in found
        ]

    async def tree(self, caller: str, room_id: str) -> Tree:
        """Who brought whom into the cluster (from membership). Raises NotFound (not a cluster this
        server knows), Forbidden (the caller is not a member)."""
        await self._require_cluster(room_id)
        if await self._store.get_cluster_membership(room_id, caller) != "join":
            # The index follows memberships after they answer: a join that just returned may
            # not be in it yet. The room decides, and the index catches up now.
            await self.index_member_now(room_id, caller)
            if await self._store.get_cluster_membership(room_id, caller) != "join":
                raise Forbidden("Only members of a cluster see its tree.")
        return compute_tree(await self._store.get_cluster_member_rows(room_id))

    # --- joining by asking ---

    async def join(self, caller: str, room_id: str, via: list[str]) -> str:
        """Join a cluster by asking: through a local member who is the caller's acquaintance (an
        invite in their name), or by a knock that an acquaintance's server approves. `via` names
        servers in the room when this server is not. Returns the room id. Raises NotFound (no
        such cluster, or none that can be asked), Forbidden (banned, no acquaintance among the
        members, or no approval within `clusters.knock_wait`)."""
        host_in_room = await is_host_in_room(self._api, room_id)
        if host_in_room:
            await self._require_cluster(room_id)
            return await self._join_known_room(caller, room_id)
        return await self._join_by_remote_knock(caller, room_id, via)

    async def _join_known_room(self, caller: str, room_id: str) -> str:
        membership = await self._membership(room_id, caller, True)
        if membership == "join":
            return room_id
        if membership == "ban":
            raise Forbidden(f"You are banned from {room_id}.")
        if membership != "invite":
            friends = await self._store.get_acquainted_members(room_id, caller)
            if not friends:
                friends = await self._acquainted_members_from_rooms(room_id, caller)
            if not friends:
                raise Forbidden(
                    "No acquaintance of yours is a member of this cluster: ask a member you "
                    "know to invite you, or become an acquaintance of one."
                )
            local = [f for f in friends if self._is_mine(f)]
            if local:
                # Our own member lets the caller in: an invite in their name, then the join.
                await self._api.update_room_membership(local[0], caller, room_id, "invite")
            else:
                # Only members on other servers know the caller: ask them with a knock (a
                # normal room event here), which their server approves.
                if membership == "knock":
                    await self._api.update_room_membership(caller, caller, room_id, "leave")
                await self._api.update_room_membership(caller, caller, room_id, "knock")
                await self._wait_for_invite(caller, room_id, True)
        await self._api.update_room_membership(caller, caller, room_id, "join")
        await self.sync_members(room_id)
        # Index the join before answering, so that the caller's next call sees it.
        await self.index_member_now(room_id, caller)
        return room_id

    async def _join_by_remote_knock(self, caller: str, room_id: str, via: list[str]) -> str:
        hosts = list(via)
        room_host = room_id.split(":", 1)[1] if ":" in room_id else None
        if room_host and room_host not in hosts:
            hosts.append(room_host)
        membership = await self._membership(room_id, caller, False)
        if membership != "invite":
            if not hosts:
                raise NotFound(
                    f"Unknown cluster {room_id}: give 'via', a server that is in the room."
                )
            hosts = [h for h in hosts if h != self._api.server_name] or hosts
            try:
                knock = await self._api.update_room_membership(
                    caller, caller, room_id, "knock", remote_room_hosts=hosts
                )
            except SynapseError as e:
                if e.code in (403, 404):
                    raise NotFound(
                        f"{room_id} is not a cluster you can ask to join ({e.msg})."
                    ) from e
                if e.code == 502:  # no server in `hosts` answered: a room we cannot reach
                    raise NotFound(
                        f"Unknown cluster {room_id}: no server in 'via' could be reached."
                    ) from e
                raise
            stripped = knock.unsigned.get("knock_room_state") or []
            if find_cluster_in_stripped_state(stripped) is None:
                await self._rescind(caller, room_id)
                raise NotFound(f"{room_id} is not a cluster.")
            await self._wait_for_invite(caller, room_id, False)
        try:
            await self._api.update_room_membership(
                caller, caller, room_id, "join", remote_room_hosts=hosts
            )
        except SynapseError as e:
            if e.code == 404:
                raise NotFound(f"Unknown cluster {room_id}.") from e
            raise
        await self.index_member_now(room_id, caller)
        return room_id

    async def _rescind(self, caller: str, room_id: str) -> None:
        try:
            await self._api.update_room_membership(caller, caller, room_id, "leave")
        except SynapseError as e:
            logger.info("could not rescind the knock of %s on %s: %s", caller, room_id, e)

    async def _wait_for_invite(self, caller: str, room_id: str, host_in_room: bool) -> None:
        """Poll for the approval of the caller's knock: Synapse tells modules nothing of an
        out-of-band invite, and a poll also works when another worker receives it."""
        waited = 0.0
        while waited < self.knock_wait_s:
            membership = await self._membership(room_id, caller, host_in_room)
            if membership in ("invite", "join"):
                return
            if membership in ("ban", "leave") and host_in_room:
                break  # the knock was refused
            await self._api.sleep(POLL_INTERVAL_S)
            waited += POLL_INTERVAL_S
        raise Forbidden(
            "No acquaintance of yours let you in: either none is a member of this cluster, or "
            "their server did not answer in time. Your knock waits for the members to decide."
        )

    # --- following the room ---

    async def on_event(self, event: EventBase, state: StateMap[EventBase]) -> None:
        """Index a cluster's membership and activity; approve knocks of acquaintances. A room
        whose cluster state is forged (`rooms.clusters.genuine_cluster`) is no cluster: it
        leaves the index if it was in it."""
        cluster_event = state.get((CLUSTER_STATE, ""))
        if cluster_event is None:
            return
        cluster = cluster_of(state)
        room_id = event.room_id
        if cluster is None:
            if event.type == CLUSTER_STATE or await self._store.get_cluster(room_id) is not None:
                await self._store.forget_cluster(room_id)
            return
        # on_new_event runs once the event is persisted: now is no earlier than its receipt.
        ts = sort_ts(int(event.origin_server_ts), self._now())
        created_ts = sort_ts(int(cluster_event.origin_server_ts), self._now())
        needs_sync = await self._store.record_cluster(
            room_id, cluster.topic, cluster.creator, created_ts, ts
        )
        if needs_sync:
            self._api.run_as_background_process(
                "laiwang_cluster_sync_members", self.sync_members, room_id
            )
        if event.type != "m.room.member" or event.state_key is None:
            return
        current = state.get(("m.room.member", event.state_key))
        if current is None:
            return
        known = await self._store.get_member_row(room_id, event.state_key)
        if known is not None and known.event_id == current.event_id:
            update = None  # applied already (a re-delivery, or another worker)
        else:
            update = await self._member_update(current, known)
        if update is not None:
            await self._store.update_cluster_members(room_id, [update])
        if current.membership == "knock" and current.event_id == event.event_id:
            self._api.run_as_background_process(
                "laiwang_cluster_knock", self.on_knock, room_id, event.state_key, event.event_id
            )

    async def index_member_now(self, room_id: str, user_id: str) -> None:
        """Index a local user's current membership of a cluster from the room, as `on_event`
        does for it (idempotent: keyed by the membership's event id). Reads no other member, so
        it does not wait for the full state after a partial-state join."""
        state = await self._api.get_room_state(
            room_id, [(CLUSTER_STATE, ""), ("m.room.create", ""), ("m.room.member", user_id)]
        )
        member = state.get(("m.room.member", user_id))
        if member is not None:
            await self.on_event(member, state)

    async def reindex(self, room_id: str) -> None:
        """Re-derive one cluster's index from the room's current state (idempotent): the
        cluster itself and every membership the index does not hold as it is now."""
        if not await is_host_in_room(self._api, room_id):
            return  # the index keeps what this server last knew
        state = await self._api.get_room_state(
            room_id, [(CLUSTER_STATE, ""), ("m.room.create", ""), ("m.room.member", None)]
        )
        cluster = cluster_of(state)
        if cluster is None:
            if await self._store.get_cluster(room_id) is not None:
                await self._store.forget_cluster(room_id)
            return
        cluster_event = state[(CLUSTER_STATE, "")]
        created_ts = sort_ts(int(cluster_event.origin_server_ts), self._now())
        await self._store.record_cluster(
            room_id, cluster.topic, cluster.creator, created_ts, created_ts
        )
        members = [ev for (kind, _), ev in state.items() if kind == "m.room.member"]
        known = await self._store.get_member_event_ids(
            room_id, [ev.state_key for ev in members if ev.state_key]
        )
        updates = []
        for ev in members:
            if ev.state_key and known.get(ev.state_key) != ev.event_id:
                row = await self._store.get_member_row(room_id, ev.state_key)
                updates.append(await self._member_update(ev, row))
        if updates:
            await self._store.update_cluster_members(room_id, updates)

    async def reconcile(self) -> int:
        """`reindex` every room that is or may be a cluster; returns how many."""
        room_ids = await self._store.get_all_cluster_room_ids()
        for room_id in room_ids:
            await self.reindex(room_id)
        return len(room_ids)

    async def sync_members(self, room_id: str) -> None:
        """Read every member of a cluster from the room's full state, once per server (it waits
        for the full state after a partial-state join). Fills gaps only: rows that events wrote
        meanwhile are newer than this snapshot."""
        if not await self._store.claim_member_sync(room_id, self._now()):
            return
        try:
            state = await self._api.get_room_state(room_id, [("m.room.member", None)])
            members = [ev for (kind, _), ev in state.items() if kind == "m.room.member"]
            known = await self._store.get_member_event_ids(
                room_id, [ev.state_key for ev in members if ev.state_key]
            )
            updates = [
                await self._member_update(ev)
                for ev in members
                if ev.state_key and known.get(ev.state_key) != ev.event_id
            ]
            await self._store.update_cluster_members(room_id, updates, only_missing=True)
        except Exception:
            await self._store.end_member_sync(room_id, done=False)  # the next event retries
            raise
        await self._store.end_member_sync(room_id, done=True)

    async def _member_update(
        self, member: EventBase, known: MemberRecord | None = None
    ) -> MemberUpdate:
        """The index row of a membership event. `known` is what the index holds of the user:
        a join that follows a join (a profile change) keeps the inviter already found, without
        walking the auth chain again."""
        assert member.state_key is not None
        membership = counted_membership(str(member.membership), member.sender, member.state_key)
        invited_by = None
        if membership == "join":
            if known is not None and known.membership == "join":
                invited_by = known.invited_by
            else:
                invited_by = await self._inviter_of(member)
        return MemberUpdate(
            member.state_key,
            membership,
            invited_by,
            int(member.origin_server_ts),
            member.event_id,
        )

    async def _inviter_of(self, join: EventBase) -> str | None:
        """Who brought the joined user in: the sender of the invite their join rests on (the
        target's previous membership, which is among the join's auth events). Joins that only
        change a profile are followed back to the first join."""
        target = join.state_key
        event = join
        for _ in range(MAX_AUTH_WALK):
            auth = await get_events(self._api, list(event.auth_event_ids()))
            previous = next(
                (
                    ev
                    for ev in auth.values()
                    if ev.type == "m.room.member" and ev.state_key == target
                ),
                None,
            )
            if previous is None:
                return None
            if previous.membership == "invite":
                return None if previous.sender == target else str(previous.sender)
            if previous.membership != "join":
                return None
            event = previous
        return None

    async def _acquainted_members_from_rooms(self, room_id: str, user_id: str) -> list[str]:
        """`get_acquainted_members` once the indexes it joins have caught up with the rooms:
        the cluster's memberships (`reindex` changes only the rows that are not current) and
        the user's pending contact requests (one may have just been accepted). For the
        refusal path only: the index says no, and a check must not refuse for an index that
        is merely behind."""
        await self._server.contacts_handler.catch_up_requests(user_id)
        # The room's joined members (Synapse's cached list) against the caller's acquaintances
        # first: a stranger's refusal then reads no state events, whatever the cluster's size
        # (bench/clusters_bench.py). Only when they do share a member is the index behind, and
        # re-derived from the room.
        joined = await joined_users(self._api, room_id)
        if not joined & await self._store.get_acquaintance_ids(user_id):
            return []
        await self.reindex(room_id)
        return await self._store.get_acquainted_members(room_id, user_id)

    async def on_knock(self, room_id: str, knocker: str, event_id: str) -> None:
        """Approve a knock by inviting in the name of a local member who is an acquaintance of
        the knocker. Once per knock across workers; a stranger's knock is left alone."""
        friends = await self._local_friends(room_id, knocker)
        if not friends:
            return
        if not await self._store.claim_knock(event_id, room_id, knocker, self._now()):
            return
        crash_point(self._server.config.testing, "knock_claimed", knocker)
        await self._approve(room_id, knocker, event_id, friends)

    async def _local_friends(self, room_id: str, knocker: str) -> list[str]:
        friends = await self._store.get_acquainted_members(room_id, knocker)
        if not friends:
            friends = await self._acquainted_members_from_rooms(room_id, knocker)
        return [f for f in friends if self._is_mine(f)]

    async def _approve(self, room_id: str, knocker: str, event_id: str, friends: list[str]) -> None:
        """Invite the knocker in the name of the first friend who is joined, while the knock is
        still theirs; then mark the claim decided, whoever (if anyone) let them in."""
        approver = None
        for member in friends:
            state = await self._api.get_room_state(
                room_id, [("m.room.member", knocker), ("m.room.member", member)]
            )
            knock = state.get(("m.room.member", knocker))
            if knock is None or knock.membership != "knock":
                break  # already let in (a dead process's invite went out), or withdrawn
            own = state.get(("m.room.member", member))
            if own is None or own.membership != "join":
                continue
            try:
                await self._api.update_room_membership(member, knocker, room_id, "invite")
            except SynapseError as e:
                logger.info("cluster %s: %s could not let %s in: %s", room_id, member, knocker, e)
                continue
            approver = member
            break
        await self._store.decide_knock(event_id, approver, self._now())

    async def finish_knocks(self) -> None:
        """The background job: carry out the knock claims whose process died between the claim
        and the invite (`upkeep.unfinished_after`), once across workers."""
        stale = self._now() - self._server.config.upkeep.unfinished_after_ms
        for event_id, room_id, knocker in await self._store.get_undecided_knocks(stale):
            if not await self._store.retake_knock(event_id, stale, self._now()):
                continue  # another process took it
            try:
                friends = await self._local_friends(room_id, knocker)
                await self._approve(room_id, knocker, event_id, friends)
            except Exception:
                logger.exception("cluster %s: could not finish the knock %s", room_id, event_id)
