"""The few places where the module reads Synapse internals that ModuleApi does not expose.

Kept in one file so that a Synapse upgrade that moves them breaks here, visibly, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from synapse.events import EventBase
from synapse.module_api import ModuleApi
from synapse.util.clock import Clock

from rooms.errors import LimitExceeded

T = TypeVar("T")

# One federation request authenticator per homeserver (discovery peers).
_authenticators: dict[int, Any] = {}


def module_clock(api: ModuleApi) -> Clock:
    """Synapse's clock, which `@cached` and `Linearizer` need; ModuleApi has no accessor."""
    return api._clock


def is_appservice_user(api: ModuleApi, user_id: str) -> bool:
    """Whether user_id is an application service's sender or in one's exclusive namespace."""
    store = api._store  # no ModuleApi accessor for registered application services
    for service in store.get_app_services():
        if service.sender.to_string() == user_id or service.is_exclusive_user(user_id):
            return True
    return False


async def share_a_room(api: ModuleApi, a: str, b: str) -> bool:
    """Whether two users are joined to at least one common room (cached by Synapse)."""
    store: Any = api._store  # cached descriptors need Synapse's mypy plugin to type-check
    return not (await store.get_rooms_for_user(a)).isdisjoint(await store.get_rooms_for_user(b))


async def invited_room_ids(api: ModuleApi, user_id: str) -> set[str]:
    """Rooms a local user is currently invited to (also by out-of-band federated invites)."""
    store: Any = api._store
    rooms = await store.get_invited_rooms_for_local_user(user_id)
    return {r.room_id for r in rooms}


async def get_events_as_list(api: ModuleApi, event_ids: list[str]) -> list[EventBase]:
    """The events this server has among `event_ids`, in that order (redacted ones pruned);
    ModuleApi cannot fetch events by id."""
    store: Any = api._store
    return list(await store.get_events_as_list(event_ids))


async def get_events(api: ModuleApi, event_ids: list[str]) -> dict[str, EventBase]:
    """The events this server has among `event_ids`, by id."""
    store: Any = api._store
    return dict(await store.get_events(event_ids))


async def is_host_in_room(api: ModuleApi, room_id: str) -> bool:
    """Whether any user of this server is joined to the room (cached by Synapse)."""
    store: Any = api._store
    return bool(await store.is_host_joined(room_id, api.server_name))


async def events_visible_to(api: ModuleApi, user_id: str, event_ids: list[str]) -> list[Any]:
    """The events among `event_ids` that the local user may see, as Synapse's /event and
    /messages decide it (history visibility at each event, membership, soft-failure, erasure),
    in the order given. Returns Synapse `FilteredEvent`s, ready for `serialize_for_client`."""
    from synapse.visibility import filter_and_transform_events_for_client

    hs: Any = api._hs  # no ModuleApi accessor for events or visibility
    store = hs.get_datastores().main
    events = await store.get_events_as_list(event_ids)
    by_room: dict[str, list[Any]] = {}
    for event in events:
        by_room.setdefault(event.room_id, []).append(event)
    visible: dict[str, Any] = {}
    for room_id, room_events in by_room.items():
        in_room = await store.check_local_user_in_room(user_id=user_id, room_id=room_id)
        for filtered in await filter_and_transform_events_for_client(
            hs.get_storage_controllers(), user_id, room_events, is_peeking=not in_room
        ):
            visible[filtered.event.event_id] = filtered
    return [visible[e] for e in event_ids if e in visible]


async def serialize_for_client(api: ModuleApi, user_id: str, events: list[Any]) -> list[Any]:
    """Client-format JSON of `events_visible_to`'s result, with the unsigned fields modules add."""
    from synapse.types import create_requester

    hs: Any = api._hs
    serializer = hs.get_event_client_serializer()
    config = await serializer.create_config(requester=create_requester(user_id))
    return list(
        await serializer.serialize_events(events, api.get_current_time_msec(), config=config)
    )


async def is_joined(api: ModuleApi, user_id: str, room_id: str) -> bool:
    """Whether a local user is joined to a room (cached by Synapse; False for unknown rooms)."""
    store: Any = api._store
    return bool(await store.check_local_user_in_room(user_id=user_id, room_id=room_id))


async def joined_users(api: ModuleApi, room_id: str) -> frozenset[str]:
    """The users (local and remote) joined to a room as this server sees it now: Synapse's
    cached list, no state events read."""
    store: Any = api._store
    return frozenset(await store.get_users_in_room(room_id))


async def recent_room_events(
    api: ModuleApi, user_id: str, room_id: str, limit: int, pages: int
) -> list[Any]:
    """Up to `pages` × `limit` of the room's latest events the local user may see, newest first,
    as `/messages` gives them (backfilling over federation what this server lacks)."""
    from synapse.api.constants import Direction
    from synapse.streams.config import PaginationConfig
    from synapse.types import create_requester

    hs: Any = api._hs
    handler = hs.get_pagination_handler()
    requester = create_requester(user_id)
    events: list[Any] = []
    token = None
    for _ in range(pages):
        config = PaginationConfig(
            from_token=token, to_token=None, direction=Direction.BACKWARDS, limit=limit
        )
        result = await handler.get_messages(requester, room_id, config)
        events.extend(filtered.event for filtered in result.messages_chunk)
        token = result.end_token
        if token is None:
            break
    return events


async def received_ts(api: ModuleApi, event_ids: list[str]) -> dict[str, int]:
    """When this server received (persisted) each of `event_ids` it has, by id: Synapse's
    `events.received_ts`, this server's clock, which no sending server controls."""
    store: Any = api._store  # no ModuleApi accessor for an event's reception time
    rows = await store.db_pool.simple_select_many_batch(
        table="events",
        column="event_id",
        iterable=event_ids,
        retcols=("event_id", "received_ts"),
        desc="laiwang_received_ts",
    )
    return {str(event_id): int(ts) for event_id, ts in rows if ts is not None}


async def server_may_see(api: ModuleApi, server_name: str, event: EventBase) -> bool:
    """Whether another server may see `event`, as this server's federation API decides it
    (history visibility for that server's members at the event, erasure). Like Synapse's own
    callers, check first that the server is in the room: for `shared` history this does not."""
    from synapse.visibility import filter_events_for_server

    hs: Any = api._hs  # no ModuleApi accessor for server visibility
    allowed = await filter_events_for_server(
        hs.get_storage_controllers(),
        server_name,
        api.server_name,
        [event],
        redact=False,
        filter_out_erased_senders=True,
        filter_out_remote_partial_state_events=True,
    )
    return bool(allowed)


async def room_creator(api: ModuleApi, room_id: str) -> str | None:
    """The sender of the room's `m.room.create` event, or None for a room this server does not
    know (room ids of room version 12 name no server: the creator says whose room it is)."""
    from synapse.api.errors import NotFoundError

    store: Any = api._store
    try:
        create = await store.get_create_event_for_room(room_id)
    except NotFoundError:
        return None
    return str(create.sender)


async def is_partial_state_room(api: ModuleApi, room_id: str) -> bool:
    """Whether this server joined the room over federation and does not yet have its full state
    (a "faster join"): reading the room's members then waits until it has."""
    store: Any = api._store
    return bool(await store.is_partial_state_room(room_id))


async def ratelimit_message(api: ModuleApi, user_id: str, n: int = 1) -> None:
    """Count `n` messages against a local user's `rc_message` budget: the very limiter and
    counters of Synapse's own /send (so the user's sends and the module's share one budget),
    with its exemptions (application service senders, a `ratelimit_override`). Raises
    LimitExceeded when the budget is spent; nothing is counted then.

    `create_and_send_event_into_room` skips this limiter; memberships and room creation do not
    need it: ModuleApi's `update_room_membership` and `create_room` already apply `rc_invites`,
    `rc_joins` and `rc_room_creation` in the sender's name, and counting here too would charge
    them twice."""
    from synapse.api.errors import LimitExceededError
    from synapse.types import create_requester

    hs: Any = api._hs  # no ModuleApi accessor for Synapse's rate limiters
    try:
        await hs.get_request_ratelimiter().ratelimit(create_requester(user_id), n_actions=n)
    except LimitExceededError as e:
        raise LimitExceeded(
            "Too many messages; slow down", retry_after_ms=int(e.retry_after_ms or 1000)
        ) from e


async def is_shadow_banned(api: ModuleApi, user_id: str) -> bool:
    """Whether a local user is shadow-banned (the admin API's `shadow_ban`): Synapse then
    answers their sends and invites as if they worked and delivers nothing. Cached by Synapse,
    which invalidates the cache (on every worker) when the ban changes."""
    store: Any = api._store
    info = await store.get_user_by_id(user_id)
    return bool(info is not None and info.is_shadow_banned)


def fake_event_id() -> str:
    """An event id that looks real and names no event, as Synapse answers a shadow-banned
    user's /send."""
    from synapse.util.events import generate_fake_event_id

    return str(generate_fake_event_id())


def server_key(api: ModuleApi) -> bytes:
    """Synapse's macaroon secret (the same on every worker, never sent anywhere): the root of
    the module's keyed hashes and default delegate secret."""
    key: bytes = api._hs.config.key.macaroon_secret_key
    return key


def msisdn_delegate_url(api: ModuleApi) -> str | None:
    """Synapse's `account_threepid_delegates.msisdn`."""
    url: str | None = api._hs.config.registration.account_threepid_delegate_msisdn
    return url


def set_msisdn_delegate_url(api: ModuleApi, url: str) -> None:
    """Point Synapse's msisdn delegate elsewhere in this process; Synapse reads the setting on
    every request (rest/client/account.py, register.py, handlers/ui_auth/checkers.py)."""
    api._hs.config.registration.account_threepid_delegate_msisdn = url


def prejoin_state_includes(api: ModuleApi, event_type: str, state_key: str) -> bool:
    """Whether Synapse's `room_prejoin_state` puts this state into the stripped state of the
    invites and knocks it sends."""
    state_filter: Any = api._hs.config.api.room_prejoin_state  # no ModuleApi accessor
    return (event_type, state_key) in state_filter


def public_baseurl(api: ModuleApi) -> str:
    """Synapse's `public_baseurl` (with a trailing slash)."""
    url: str = api._hs.config.server.public_baseurl
    return url


def default_room_version(api: ModuleApi) -> tuple[str, bool]:
    """Synapse's `default_room_version`, which rooms the module creates get: its identifier, and
    whether it supports the knock join rule."""
    version: Any = api._hs.config.server.default_room_version
    return str(version.identifier), bool(version.knock_join_rule)


async def with_timeout(api: ModuleApi, work: Callable[[], Awaitable[T]], seconds: float) -> T:
    """`work()`, cancelled after `seconds` (twisted's TimeoutError then)."""
    from synapse.logging.context import make_deferred_yieldable, run_in_background
    from synapse.util.async_helpers import timeout_deferred

    deferred = run_in_background(work)
    return await make_deferred_yieldable(
        timeout_deferred(deferred=deferred, timeout=seconds, clock=api._clock)
    )


async def read_response_body(response: Any, max_size: int) -> bytes:
    """The body of a response of Synapse's HTTP client, refused past `max_size` bytes."""
    from io import BytesIO

    from synapse.http.client import read_body_with_max_size
    from synapse.logging.context import make_deferred_yieldable

    buffer = BytesIO()
    await make_deferred_yieldable(read_body_with_max_size(response, buffer, max_size))
    return buffer.getvalue()


async def upload_media(
    api: ModuleApi, user_id: str, content: bytes, content_type: str, name: str
) -> str:
    """Store `content` in this server's media repository as uploaded by `user_id`; its mxc URI.
    ModuleApi has no upload."""
    from io import BytesIO

    from synapse.types import UserID

    repo = api._hs.get_media_repository()
    uri = await repo.create_or_update_content(
        content_type, name, BytesIO(content), len(content), UserID.from_string(user_id)
    )
    return str(uri)


async def latest_room_events(
    api: ModuleApi, room_id: str, types: tuple[str, ...], limit: int
) -> list[EventBase]:
    """Up to `limit` of the room's latest timeline events of `types` this server has, oldest
    first, as `on_new_event` saw them: no outliers, no soft-failed or rejected events (redacted
    ones pruned). ModuleApi cannot page through a room's history."""
    store: Any = api._store

    def latest_room_event_ids_txn(txn: Any) -> list[str]:
        marks = ",".join("?" * len(types))
        txn.execute(
            "SELECT event_id FROM events WHERE room_id = ? AND outlier = ?"
            f" AND type IN ({marks}) ORDER BY stream_ordering DESC LIMIT ?",
            (room_id, False, *types, limit),
        )
        return [event_id for (event_id,) in txn.fetchall()]

    event_ids = await store.db_pool.runInteraction(
        "laiwang_latest_room_events", latest_room_event_ids_txn
    )
    events = await store.get_events_as_list(list(reversed(event_ids)))
    return [e for e in events if not e.internal_metadata.is_soft_failed()]


async def openid_token_user(api: ModuleApi, token: str) -> str | None:
    """The local user an unexpired OpenID token of this homeserver was issued to (as
    `/_matrix/federation/v1/openid/userinfo` answers it), read from Synapse's own table: the
    module runs inside the homeserver and need not ask itself over HTTP."""
    store: Any = api._store  # no ModuleApi accessor for OpenID tokens
    user_id = await store.get_user_id_for_open_id_token(token, api.get_current_time_msec())
    return None if user_id is None else str(user_id)


def serves_client_wellknown(api: ModuleApi) -> bool:
    """Whether Synapse answers `/.well-known/matrix/client` (it does when `public_baseurl` is set)."""
    return bool(api._hs.config.server.serve_client_wellknown)


def default_identity_server(api: ModuleApi) -> str | None:
    """Synapse's `default_identity_server`: what `/.well-known/matrix/client` advertises as
    `m.identity_server` (read by Synapse on every request, rest/well_known.py)."""
    url: str | None = api._hs.config.registration.default_identity_server
    return url


def set_default_identity_server(api: ModuleApi, url: str) -> None:
    """Advertise `url` as `m.identity_server` in this process's `/.well-known/matrix/client`."""
    api._hs.config.registration.default_identity_server = url


async def federation_get(
    api: ModuleApi, destination: str, path: str, args: dict[str, str], timeout_ms: int
) -> Any:
    """A GET to another homeserver signed as this server (Matrix `X-Matrix` request signing),
    through Synapse's federation client: its resolution of server names, its TLS settings, its
    back-off for a destination that is down, and `federation_domain_whitelist`."""
    client: Any = api._hs.get_federation_http_client()  # no ModuleApi federation client
    return await client.get_json(
        destination, path, args={k: [v] for k, v in args.items()}, timeout=timeout_ms
    )


async def federation_post(
    api: ModuleApi, destination: str, path: str, body: dict[str, Any], timeout_ms: int
) -> Any:
    """A signed POST to another homeserver (see federation_get)."""
    client: Any = api._hs.get_federation_http_client()
    return await client.post_json(destination, path, data=body, timeout=timeout_ms)


async def federation_origin(api: ModuleApi, request: Any, content: dict[str, Any] | None) -> str:
    """The server that signed this request (`Authorization: X-Matrix …`), as Synapse's
    federation API authenticates it (the origin's key fetched and cached by Synapse's keyring;
    `federation_domain_whitelist` applied). Raises Synapse's 401 `M_UNAUTHORIZED` otherwise."""
    from synapse.federation.transport.server._base import Authenticator

    authenticator = _authenticators.get(id(api))
    if authenticator is None:
        authenticator = _authenticators[id(api)] = Authenticator(api._hs)
    return str(await authenticator.authenticate_request(request, content))


async def in_thread(api: ModuleApi, f: Callable[..., T], *args: Any) -> T:
    """Run CPU-bound `f(*args)` on Synapse's thread pool (libsodium releases the GIL), so the
    reactor keeps serving meanwhile."""
    from synapse.logging.context import defer_to_thread

    return await defer_to_thread(api._hs.get_reactor(), f, *args)


async def run_concurrently(works: list[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run each `work()` at once and wait for all (in order); the first error propagates."""
    from synapse.logging.context import make_deferred_yieldable, run_in_background
    from twisted.internet import defer

    deferreds = [run_in_background(work) for work in works]
    gathered: Any = defer.gatherResults(deferreds, consumeErrors=True)
    return list(await make_deferred_yieldable(gathered))


class SingleFlight(Generic[T]):
    """One background run per key at a time, awaited by every caller; a caller that gives up
    (a timeout cancels it) does not cancel the run, whose result serves the next callers."""

    def __init__(self, api: ModuleApi):
        self._api = api
        self._running: dict[Any, Any] = {}

    async def run(self, key: Any, work: Callable[[], Awaitable[T]]) -> T:
        from synapse.logging.context import make_deferred_yieldable
        from synapse.util.async_helpers import ObservableDeferred

        shared = self._running.get(key)
        if shared is None:
            shared = ObservableDeferred(
                self._api.run_as_background_process("laiwang_single_flight", work),
                consumeErrors=True,
            )
            self._running[key] = shared

            def done(result: Any) -> Any:
                if self._running.get(key) is shared:
                    del self._running[key]
                return result

            # Added after the entry, so a run that finished at once is removed too.
            shared.observe().addBoth(done)
        result: T = await make_deferred_yieldable(shared.observe())
        return result


async def tag_room_unless_tagged(
    api: ModuleApi, user_id: str, room_id: str, tag: str, content: dict[str, Any]
) -> bool:
    """Add `tag` to the user's `m.tag` room account data unless they have tagged the room
    already (a choice of theirs wins); True when added. ModuleApi's account data manager has
    global account data only; Synapse's handler forwards the write to the account data writer
    on workers."""
    store: Any = api._store
    if await store.get_tags_for_room(user_id, room_id):
        return False
    await api._hs.get_account_data_handler().add_tag_to_room(user_id, room_id, tag, content)
    return True


async def joined_room_ids(api: ModuleApi, user_id: str) -> frozenset[str]:
    """The rooms a local user is joined to (cached by Synapse); ModuleApi has no accessor."""
    store: Any = api._store
    return frozenset(await store.get_rooms_for_user(user_id))
