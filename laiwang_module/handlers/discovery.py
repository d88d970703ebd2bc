"""Phone-number discovery (MSC2134): the pepper, lookups, limits, and the hash index upkeep.

`laiwang_discovery_hashes` maps hash(msisdn, pepper) (keyed by its first 64 bits) to a user for
every local user with an msisdn 3pid, discoverable or not (the address book needs both); a lookup
filters on the `discoverable` setting at read time, so a settings change needs no index update.

The index follows Synapse's `user_threepids` exactly, so lookups need not read that table:
the 3pid callbacks write every change to every pepper generation in use; every write checks, in
its own transaction, that Synapse still holds the number; and removals made while a build runs
are logged and applied again when it is done (a build write may race them on PostgreSQL).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import attr

from laiwang_module.storage.discovery import DAY_MS, IndexRow, PepperState
from laiwang_module.synapse_compat import openid_token_user, run_concurrently
from rooms.discovery import (
    ALGORITHM,
    ALGORITHMS,
    LookupRequest,
    OpenIdCredentials,
    hash_key,
    identity_token_hash,
    lookup_hash,
    new_identity_token,
    new_pepper,
)
from rooms.errors import BadRequest, Forbidden, LimitExceeded, Unauthorized
from rooms.msisdn import MEDIUM, normalise_stored_msisdn

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer

logger = logging.getLogger(__name__)

INVALID_PEPPER = "M_INVALID_PEPPER"
INDEX_PAGE = 5000


@attr.s(frozen=True, slots=True, auto_attribs=True)
class LookupResult:
    mappings: dict[str, str]  # hash -> user id, local or on a peer
    # With `discovery.peers`: the peers not asked or that did not answer in time; else None.
    unreachable_peers: list[str] | None


class DiscoveryHandler:
    def __init__(self, server: LaiwangServer):
        self._server = server
        self._store = server.store
        self._api = server.api
        self._config = server.config.discovery
        self._default_discoverable = server.config.defaults.discoverable
        self._maintaining = False

    async def state(self) -> PepperState:
        """The current pepper state, created on first use."""
        state = await self._store.get_pepper_state()
        if state is None:
            state = await self._store.create_pepper_state(new_pepper())
        return state

    async def hash_details(self) -> dict[str, object]:
        """`GET /discovery/hash_details`: the algorithms and the current lookup pepper."""
        state = await self.state()
        return {"algorithms": list(ALGORITHMS), "lookup_pepper": state.pepper}

    async def lookup(self, owner_id: str, request: LookupRequest) -> LookupResult:
        """hash -> user id for the discoverable users among `request.addresses`, here and on
        the peers (`discovery.peers`); remembers the users found (discoverable or not, and the
        peers' discoverable ones) in the owner's address book. Raises BadRequest
        (`M_INVALID_PEPPER`, with the current pepper), LimitExceeded (more addresses than
        `discovery.max_addresses_per_request`, or the daily budget spent)."""
        state = await self.state()
        if request.pepper != state.pepper:
            raise BadRequest(
                "The pepper is not the current one: hash again with lookup_pepper",
                errcode=INVALID_PEPPER,
                algorithm=ALGORITHM,
                lookup_pepper=state.pepper,
            )
        count = len(request.addresses)
        cap = self._config.max_addresses_per_request
        if count > cap:
            raise LimitExceeded(
                f"At most {cap} addresses per lookup: split the address book",
                retry_after_ms=0,
                max_addresses_per_request=cap,
            )

        started = time.perf_counter()
        hits, chosen = await self._store.find_discovery_hits(
            state.gen, {hash_key(h) for h in request.addresses}
        )
        wanted = set(request.addresses)
        # The key is 64 bits of the hash: the full hash decides.
        confirmed = {h: user_id for h, user_id in hits if h in wanted}
        found_at = time.perf_counter()
        now = self._api.get_current_time_msec()
        day = now // DAY_MS
        over_budget = LimitExceeded(
            f"Daily lookup budget of {self._config.max_addresses_per_day} addresses spent",
            retry_after_ms=(day + 1) * DAY_MS - now,
        )
        contacts = {u for u in confirmed.values() if u != owner_id}
        peers = self._server.discovery_peers_handler

        async def charge() -> bool:
            return await self._store.charge_lookup_and_remember(
                owner_id, day, count, self._config.max_addresses_per_day, contacts
            )

        if peers.peers:
            # A lookup refused for its pepper, its size or a budget already spent asks no peer.
            # The peers are then asked while the budget is charged (the charge decides: only
            # concurrent lookups of one user can be refused after asking). A number found here
            # is not asked of the peers (it has one owner).
            used = await self._store.get_lookup_usage(owner_id, day)
            if used + count > self._config.max_addresses_per_day:
                raise over_budget
            ask = partial(
                peers.lookup,
                owner_id,
                state.pepper,
                [h for h in request.addresses if h not in confirmed],
            )
            works: list[Callable[[], Awaitable[Any]]] = [charge, ask]
            charged, remote = await run_concurrently(works)
        else:
            charged, remote = await charge(), None
        logger.debug(
            "lookup of %d addresses: index %.1f ms, budget, book and peers %.1f ms",
            count,
            (found_at - started) * 1000,
            (time.perf_counter() - found_at) * 1000,
        )
        if not charged:
            raise over_budget
        mappings = {h: u for h, u in confirmed.items() if chosen.get(u, self._default_discoverable)}
        if remote is None:
            return LookupResult(mappings, None)
        found = {u for u in remote.mappings.values() if u != owner_id}
        if found:
            await self._store.remember_remote_contacts(owner_id, found)
        return LookupResult({**remote.mappings, **mappings}, remote.unreachable)

    # --- the Identity Service API v2: its own access tokens ---

    async def register_identity_account(self, credentials: OpenIdCredentials) -> str:
        """`POST /_matrix/identity/v2/account/register`: an identity server token for the user
        an OpenID token of this homeserver names. Forbidden for another server's token (this
        identity server serves this homeserver's users only); Unauthorized for an unknown or
        expired one, or a deactivated user's."""
        if credentials.matrix_server_name != self._api.server_name:
            raise Forbidden(
                f"This identity server serves the users of {self._api.server_name} only"
            )
        user_id = await openid_token_user(self._api, credentials.access_token)
        if user_id is None:
            raise Unauthorized("Unknown or expired OpenID token")
        token = new_identity_token()
        await self._store.add_identity_token(identity_token_hash(token), user_id)
        # Deactivated in the meantime: get_identity_token_user ignores the token.
        return token

    async def identity_user(self, token: str | None) -> str:
        """The user an identity server token belongs to; Unauthorized for none or an unknown."""
        if not token:
            raise Unauthorized("Missing identity server access token")
        user_id = await self._store.get_identity_token_user(identity_token_hash(token))
        if user_id is None:
            raise Unauthorized("Unknown identity server access token")
        return user_id

    async def logout_identity(self, token: str) -> None:
        await self._store.delete_identity_token(identity_token_hash(token))

    # --- keeping the index current ---

    async def on_threepid_added(self, user_id: str, medium: str, address: str) -> None:
        """Index a newly bound msisdn 3pid under the current pepper (and the next, during a
        rotation)."""
        msisdn = normalise_stored_msisdn(address) if medium == MEDIUM else None
        if msisdn is None:
            return
        state = await self.state()
        rows = [
            _index_row(gen, pepper, msisdn, user_id, address) for gen, pepper in state.generations()
        ]
        # Synapse moves a number to the account that proved it, with no removal callback for
        # the old owner: the number no longer vouches for them (as on_threepid_removed).
        previous = await self._store.get_discovery_owners((r.gen, r.hkey) for r in rows)
        await self._store.add_discovery_hashes(rows)
        for old_owner in previous - {user_id}:
            await self._store.forget_address_book_contact(old_owner)
        await self._server.discovery_peers_handler.on_threepid_added(user_id, medium, address)

    async def on_threepid_removed(self, user_id: str, medium: str, address: str) -> None:
        """Drop an unbound msisdn 3pid from the index (and log it for a rotation being built)."""
        msisdn = normalise_stored_msisdn(address) if medium == MEDIUM else None
        if msisdn is None:
            return
        state = await self.state()
        keys = [(gen, hash_key(lookup_hash(msisdn, pepper))) for gen, pepper in state.generations()]
        building = not state.built or state.next_gen is not None
        await self._store.remove_discovery_hashes(user_id, keys, log=building)
        await self._server.discovery_peers_handler.on_threepid_removed(user_id, medium, address)
        # The number no longer vouches for its old owner: not in anyone's book, not a pass
        # through the address_book gate, not a suggestion.
        await self._store.forget_address_book_contact(user_id)

    async def on_deactivation_changed(self, user_id: str, deactivated: bool) -> None:
        """A deactivated user leaves every address book and loses their own (idempotent: runs
        on the process that deactivated)."""
        if deactivated:
            await self._store.forget_address_book_user(user_id)
            await self._store.delete_identity_tokens_of(user_id)

    async def maintain(self) -> None:
        """The periodic job (one process): first build, pepper rotation, expiry."""
        if self._maintaining:
            return
        self._maintaining = True
        try:
            await self._maintain()
        finally:
            self._maintaining = False

    async def _maintain(self) -> None:
        try:
            await self._index()
        except Exception:
            # A failing build must not stop expiry: it is retried on the next run.
            logger.exception("laiwang discovery: index build or pepper rotation failed")
        now = self._api.get_current_time_msec()
        await self._store.purge_expired_address_book()
        await self._store.purge_old_lookup_usage(now // DAY_MS)
        await self._store.purge_expired_msisdn_sessions()
        await self._store.purge_old_sms_sends(now // DAY_MS)
        try:
            peers = self._server.discovery_peers_handler
            await peers.forget_old_peers()
            if peers.peers:
                # So that each peer builds its set for our pepper before a lookup needs it,
                # and our cached copies stay fresh.
                state = await self.state()
                self._api.run_as_background_process(
                    "laiwang_discovery_warm", peers.warm, state.pepper
                )
        except Exception:
            logger.exception("laiwang discovery: peer upkeep failed")

    async def _index(self) -> None:
        state = await self.state()
        now = self._api.get_current_time_msec()
        if not state.built:
            count = await self.build_index(state.gen, state.pepper)
            await self._store.replay_discovery_removals(state.gen)
            await self._store.analyze_discovery_hashes()
            await self._store.mark_pepper_index_built(state.gen)
            logger.info("laiwang discovery: indexed %d phone numbers", count)
        elif state.next_gen is not None or now - state.rotated_ts >= (
            self._config.pepper_rotation_period_ms
        ):
            # A rotation, or the rest of one a restart interrupted.
            state = await self._store.begin_pepper_rotation(new_pepper())
            assert state.next_gen is not None and state.next_pepper is not None
            count = await self.build_index(state.next_gen, state.next_pepper)
            await self._store.replay_discovery_removals(state.next_gen)
            await self._store.analyze_discovery_hashes()
            await self._store.finish_pepper_rotation(state.next_gen)
            logger.info("laiwang discovery: pepper rotated, %d phone numbers indexed", count)

    async def build_index(self, gen: int, pepper: str) -> int:
        """Index every msisdn 3pid of Synapse's table under `pepper`, a page at a time."""
        after: str | None = None
        count = 0
        while True:
            page = await self._store.get_msisdn_threepids_page(after, INDEX_PAGE)
            if not page:
                return count
            rows = []
            for user_id, address in page:
                msisdn = normalise_stored_msisdn(address)
                if msisdn is not None:
                    rows.append(_index_row(gen, pepper, msisdn, user_id, address))
            await self._store.add_discovery_hashes(rows)
            count += len(rows)
            after = page[-1][1]


def _index_row(gen: int, pepper: str, msisdn: str, user_id: str, address: str) -> IndexRow:
    h = lookup_hash(msisdn, pepper)
    return IndexRow(gen=gen, hkey=hash_key(h), hash=h, user_id=user_id, address=address)
