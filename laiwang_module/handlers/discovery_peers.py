"""Discovery across servers (`discovery.peers`): a private set intersection by oblivious PRF.

As the caller's server (A), for each peer B in parallel, within `discovery.peer_timeout`:
fetch (and cache) B's published set, blind the lookup's hashes, have B evaluate them, unblind,
match against the set locally, and ask B to resolve the matches only. As a peer (B): publish the
set, evaluate blinded points within the peer's budgets, resolve matches to discoverable users.
The protocol and what each side learns are in docs/api/discovery.md ("Across servers").
"""

from __future__ import annotations

import bisect
import logging
import time
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import attr

from laiwang_module.storage.discovery import DAY_MS
from laiwang_module.storage.discovery_peers import PeerPrfRow
from laiwang_module.synapse_compat import (
    SingleFlight,
    federation_get,
    federation_post,
    in_thread,
    run_concurrently,
    server_key,
    with_timeout,
)
from rooms.discovery import lookup_hash
from rooms.discovery_peers import (
    ELEMENT_BYTES,
    PeerRequest,
    b64,
    blind,
    derive_key,
    evaluate,
    new_blind,
    pack_published,
    prf,
    published_key,
    unb64,
    unblind,
    unpack_published,
    validate_peer_pepper,
)
from rooms.errors import BadRequest, Forbidden, LimitExceeded
from rooms.msisdn import MEDIUM, normalise_stored_msisdn

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer

logger = logging.getLogger(__name__)

# Where peers serve the protocol (the module's resource, on the federation listener too).
PEER_PATH = "/_synapse/client/laiwang/v1/federation/discovery"
# A peer may make this server rebuild its set (a new pepper) at most this often.
MIN_REBUILD_INTERVAL_MS = 10 * 60_000
# Fetching a published set (8 bytes a user) may take longer than a lookup may wait; the fetch
# goes on in the background and serves the next lookups.
SET_FETCH_TIMEOUT_MS = 120_000
BUILD_PAGE = 5000
# Addresses per evaluate request in flight together (at most the peer's cap).
PIPELINE_CHUNK = 250
# PRF values remembered per process (about 200 bytes each).
PRF_CACHE_SIZE = 50_000


class PeerNotReady(Exception):
    """The peer has no set for our pepper yet (it builds one), or none could be fetched."""


@attr.s(frozen=True, slots=True, auto_attribs=True)
class PeerSet:
    pepper: str
    keys: array  # sorted signed 64-bit published keys
    max_per_request: int
    fetched_ms: int

    def __contains__(self, key: int) -> bool:
        i = bisect.bisect_left(self.keys, key)
        return i < len(self.keys) and self.keys[i] == key


@attr.s(frozen=True, slots=True, auto_attribs=True)
class PeersResult:
    mappings: dict[str, str]  # hash -> remote user id
    unreachable: list[str]  # peers not asked, or that did not answer in time


class DiscoveryPeersHandler:
    def __init__(self, server: LaiwangServer):
        self._api = server.api
        self._store = server.store
        self._config = server.config.discovery
        self._default_discoverable = server.config.defaults.discoverable
        self.peers: tuple[str, ...] = tuple(
            p for p in self._config.peers if p != self._api.server_name
        )
        self._sets: dict[str, PeerSet] = {}
        self._fetches: SingleFlight[PeerSet | None] = SingleFlight(server.api)
        self._building: set[tuple[str, str]] = set()
        # (peer, pepper, hash) -> the PRF value learned for it: a client re-uploading its book
        # costs neither side any group operation, nor the peer's budget (nothing new is learned).
        self._values: OrderedDict[tuple[str, str, str], bytes | None] = OrderedDict()

    # --- as the caller's server (A) ---

    async def lookup(self, owner_id: str, pepper: str, hashes: Sequence[str]) -> PeersResult:
        """Find `hashes` (under our `pepper`) among the peers' discoverable users. Each peer
        gets at most `discovery.peer_timeout`, all in parallel; one that fails or is late is
        named in `unreachable`, and its users are simply not found this time."""
        if not self.peers or not hashes:
            return PeersResult({}, [])
        seconds = self._config.peer_timeout_ms / 1000

        async def ask(peer: str) -> dict[str, str] | None:
            try:
                return await with_timeout(
                    self._api, lambda: self._lookup_peer(peer, owner_id, pepper, hashes), seconds
                )
            except Exception as e:  # down, slow, refusing, lying: not this peer this time
                logger.info("laiwang discovery: peer %s not asked or no answer: %r", peer, e)
                return None

        answers = await run_concurrently([partial(ask, peer) for peer in self.peers])
        mappings: dict[str, str] = {}
        unreachable = []
        for peer, answer in zip(self.peers, answers, strict=True):
            if answer is None:
                unreachable.append(peer)
            else:
                mappings.update(answer)
        return PeersResult(mappings, unreachable)

    async def _lookup_peer(
        self, peer: str, owner_id: str, pepper: str, hashes: Sequence[str]
    ) -> dict[str, str]:
        started = time.perf_counter()
        published = await self._peer_set(peer, pepper)
        # Chunks in flight together: our blinding of one overlaps the peer's evaluation of
        # another (the group operations run on threads, outside the GIL).
        step = min(published.max_per_request, PIPELINE_CHUNK)
        chunks = [list(hashes[i : i + step]) for i in range(0, len(hashes), step)]
        matched = await run_concurrently(
            [partial(self._match_chunk, peer, owner_id, pepper, c, published) for c in chunks]
        )
        matches = {value: h for chunk_matches in matched for value, h in chunk_matches.items()}
        evaluated_at = time.perf_counter()
        values = list(matches)
        step = published.max_per_request
        replies = await run_concurrently(
            [
                partial(self._resolve, peer, owner_id, pepper, values[i : i + step])
                for i in range(0, len(values), step)
            ]
        )
        found: dict[str, str] = {}
        for mapped in replies:
            for value, user_id in mapped.items():
                # A peer answers for its own users only.
                if value in matches and _user_of(user_id, peer):
                    found[matches[value]] = user_id
        logger.debug(
            "peer %s: %d addresses evaluated and matched in %.1f ms, %d resolved in %.1f ms",
            peer,
            len(hashes),
            (evaluated_at - started) * 1000,
            len(values),
            (time.perf_counter() - evaluated_at) * 1000,
        )
        return found

    async def _match_chunk(
        self, peer: str, owner_id: str, pepper: str, chunk: list[str], published: PeerSet
    ) -> dict[str, str]:
        """Evaluate a chunk through the peer; PRF value (base64) -> hash of those in its set.
        Only those go back to the peer: it never sees the PRF value of a number none of its
        discoverable users has."""
        known = {
            h: self._values[(peer, pepper, h)] for h in chunk if (peer, pepper, h) in self._values
        }
        for h in known:
            self._values.move_to_end((peer, pepper, h))
        fresh = [h for h in chunk if h not in known]
        values = dict(known)
        if fresh:
            learned = await self._evaluate_chunk(peer, owner_id, pepper, fresh)
            values.update(learned)
            for h, v in learned.items():
                self._values[(peer, pepper, h)] = v
            while len(self._values) > PRF_CACHE_SIZE:
                self._values.popitem(last=False)
        return {
            b64(v): h for h, v in values.items() if v is not None and published_key(v) in published
        }

    async def _evaluate_chunk(
        self, peer: str, owner_id: str, pepper: str, chunk: list[str]
    ) -> dict[str, bytes | None]:
        t0 = time.perf_counter()
        r = new_blind()
        blinded = await in_thread(self._api, blind, r, chunk)
        t1 = time.perf_counter()
        reply = await federation_post(
            self._api,
            peer,
            f"{PEER_PATH}/evaluate",
            {"user_id": owner_id, "pepper": pepper, "elements": [b64(e) for e in blinded]},
            self._config.peer_timeout_ms,
        )
        t2 = time.perf_counter()
        values = await in_thread(self._api, unblind, r, chunk, _elements(reply, len(chunk)))
        logger.debug(
            "peer %s: chunk of %d: blind %.1f ms, evaluate %.1f ms, unblind %.1f ms",
            peer,
            len(chunk),
            (t1 - t0) * 1000,
            (t2 - t1) * 1000,
            (time.perf_counter() - t2) * 1000,
        )
        return dict(zip(chunk, values, strict=True))

    async def _resolve(
        self, peer: str, owner_id: str, pepper: str, values: list[str]
    ) -> dict[str, Any]:
        reply = await federation_post(
            self._api,
            peer,
            f"{PEER_PATH}/resolve",
            {"user_id": owner_id, "pepper": pepper, "elements": values},
            self._config.peer_timeout_ms,
        )
        mapped = reply.get("mappings") if isinstance(reply, dict) else None
        return mapped if isinstance(mapped, dict) else {}

    async def _peer_set(self, peer: str, pepper: str) -> PeerSet:
        cached = self._sets.get(peer)
        now = self._api.get_current_time_msec()
        if (
            cached
            and cached.pepper == pepper
            and now - cached.fetched_ms < self._config.peer_set_ttl_ms
        ):
            return cached
        fresh = await self._fetches.run((peer, pepper), lambda: self._fetch_set(peer, pepper))
        if fresh is not None:
            return fresh
        if cached and cached.pepper == pepper:  # stale but for this pepper: better than none
            return cached
        raise PeerNotReady(peer)

    async def _fetch_set(self, peer: str, pepper: str) -> PeerSet | None:
        """B's published set for our pepper, or None while B builds it (B starts the build
        when first asked) or when B cannot be reached."""
        try:
            reply = await federation_get(
                self._api, peer, f"{PEER_PATH}/set", {"pepper": pepper}, SET_FETCH_TIMEOUT_MS
            )
        except Exception as e:
            logger.info("laiwang discovery: no set from peer %s: %r", peer, e)
            return None
        if not isinstance(reply, dict) or reply.get("building") or reply.get("pepper") != pepper:
            return None
        try:
            keys = unpack_published(str(reply["keys"]))
        except (KeyError, ValueError):
            logger.warning("laiwang discovery: peer %s sent a malformed set", peer)
            return None
        cap = reply.get("max_addresses_per_request")
        if not isinstance(cap, int) or isinstance(cap, bool) or cap <= 0:
            cap = self._config.max_addresses_per_request
        published = PeerSet(
            pepper=pepper,
            keys=array("q", keys),
            max_per_request=cap,
            fetched_ms=self._api.get_current_time_msec(),
        )
        self._sets[peer] = published
        return published

    async def warm(self, pepper: str) -> None:
        """Ask every peer for its set under our current pepper (the job, after start and each
        rotation), so a peer starts building before the first lookup needs it."""
        await run_concurrently(
            [partial(self._peer_set_or_none, peer, pepper) for peer in self.peers]
        )

    async def _peer_set_or_none(self, peer: str, pepper: str) -> PeerSet | None:
        try:
            return await self._peer_set(peer, pepper)
        except PeerNotReady:
            return None

    # --- as a peer (B) ---

    def _check_peer(self, origin: str) -> None:
        if origin not in self.peers:
            raise Forbidden("This server does not look phone numbers up for yours")

    def _key(self, peer: str, pepper: str) -> bytes:
        return derive_key(server_key(self._api), peer, pepper)

    async def published_set(self, origin: str, pepper_value: Any) -> dict[str, Any]:
        """`GET …/set?pepper=`: the published keys of our discoverable users for the peer's
        pepper, or `{"building": true}` while the set is built (started by this request)."""
        self._check_peer(origin)
        pepper = validate_peer_pepper(pepper_value)
        state, claimed = await self._store.claim_peer_build(origin, pepper, MIN_REBUILD_INTERVAL_MS)
        if claimed:
            self._api.run_as_background_process(
                "laiwang_discovery_peer_build", self.build_peer_set, origin, pepper
            )
        if state is None or state.pepper != pepper or not state.built:
            return {"building": True}
        keys = await self._store.get_peer_published_keys(origin, pepper, self._default_discoverable)
        return {
            "pepper": pepper,
            "keys": pack_published(keys),
            "max_addresses_per_request": self._config.max_addresses_per_request,
        }

    async def evaluate(self, origin: str, request: PeerRequest) -> dict[str, Any]:
        """`POST …/evaluate`: k·E for each blinded point, charged to the remote user's and
        their server's daily budgets; the per-request cap is ours."""
        self._check_peer(origin)
        self._check_cap(len(request.elements))
        now = self._api.get_current_time_msec()
        day = now // DAY_MS
        # Charged before the work, malformed points included: an over-budget peer costs no
        # computation.
        charged = await self._store.charge_peer_evaluation(
            request.user_id,
            origin,
            day,
            len(request.elements),
            self._config.max_addresses_per_day,
            self._config.peer_max_addresses_per_day,
        )
        if not charged:
            raise LimitExceeded(
                "Daily lookup budget spent for this user or server",
                retry_after_ms=(day + 1) * DAY_MS - now,
            )
        key = self._key(origin, request.pepper)
        evaluated = await in_thread(self._api, evaluate, key, request.elements)
        return {"elements": [b64(e) for e in evaluated]}

    async def resolve(self, origin: str, request: PeerRequest) -> dict[str, Any]:
        """`POST …/resolve`: the discoverable users behind whole PRF values (which only an
        evaluation here yields)."""
        self._check_peer(origin)
        self._check_cap(len(request.elements))
        states = {s.peer: s for s in await self._store.get_peer_states()}
        state = states.get(origin)
        if state is None or state.pepper != request.pepper or not state.built:
            raise BadRequest("No set for this pepper", errcode="M_INVALID_PEPPER")
        mappings = await self._store.resolve_peer_prfs(
            origin, request.pepper, [b64(e) for e in request.elements], self._default_discoverable
        )
        return {"mappings": mappings}

    def _check_cap(self, count: int) -> None:
        cap = self._config.max_addresses_per_request
        if count > cap:
            raise LimitExceeded(
                f"At most {cap} addresses per request",
                retry_after_ms=0,
                max_addresses_per_request=cap,
            )

    async def build_peer_set(self, peer: str, pepper: str) -> None:
        """Our users' numbers, as PRF values under the peer's key and pepper (a page at a
        time, off the reactor thread)."""
        if (peer, pepper) in self._building:
            return
        self._building.add((peer, pepper))
        try:
            key = self._key(peer, pepper)
            after: str | None = None
            count = 0
            while True:
                page = await self._store.get_msisdn_threepids_page(after, BUILD_PAGE)
                if not page:
                    break
                rows = await in_thread(self._api, _prf_rows, key, peer, pepper, page)
                await self._store.add_peer_prfs(rows)
                count += len(rows)
                after = page[-1][1]
            await self._store.finish_peer_build(peer, pepper)
            logger.info("laiwang discovery: set for peer %s built, %d numbers", peer, count)
        finally:
            self._building.discard((peer, pepper))

    async def forget_old_peers(self) -> None:
        """Drop the sets of servers no longer in `discovery.peers` (the job)."""
        for state in await self._store.get_peer_states():
            if state.peer not in self.peers:
                await self._store.forget_peer(state.peer)

    async def on_threepid_added(self, user_id: str, medium: str, address: str) -> None:
        msisdn = normalise_stored_msisdn(address) if medium == MEDIUM else None
        if msisdn is None or not self.peers:
            return
        rows = [
            _prf_row(self._key(s.peer, s.pepper), s.peer, s.pepper, msisdn, user_id, address)
            for s in await self._store.get_peer_states()
            if s.peer in self.peers
        ]
        await self._store.add_peer_prfs([r for r in rows if r is not None])

    async def on_threepid_removed(self, user_id: str, medium: str, address: str) -> None:
        msisdn = normalise_stored_msisdn(address) if medium == MEDIUM else None
        if msisdn is None:
            return
        keys = []
        for s in await self._store.get_peer_states():
            value = prf(self._key(s.peer, s.pepper), lookup_hash(msisdn, s.pepper))
            if value is not None:
                keys.append((s.peer, s.pepper, published_key(value)))
        await self._store.remove_peer_prfs(user_id, keys)


def _elements(reply: Any, count: int) -> list[bytes]:
    """The evaluated points of a peer's answer; ValueError unless there is one per input."""
    items = reply.get("elements") if isinstance(reply, dict) else None
    if not isinstance(items, list) or len(items) != count:
        raise ValueError("a peer's evaluation does not match the request")
    out = []
    for item in items:
        value = unb64(item) if isinstance(item, str) else b""
        if len(value) != ELEMENT_BYTES:
            raise ValueError("a peer's evaluation holds a malformed point")
        out.append(value)
    return out


def _user_of(user_id: Any, server: str) -> bool:
    return (
        isinstance(user_id, str) and user_id.startswith("@") and user_id.partition(":")[2] == server
    )


def _prf_row(
    key: bytes, peer: str, pepper: str, msisdn: str, user_id: str, address: str
) -> PeerPrfRow | None:
    value = prf(key, lookup_hash(msisdn, pepper))
    if value is None:  # H1 gave an unusable point (probability about 2^-250)
        return None
    return PeerPrfRow(
        peer=peer,
        pepper=pepper,
        pkey=published_key(value),
        prf=b64(value),
        user_id=user_id,
        address=address,
    )


def _prf_rows(key: bytes, peer: str, pepper: str, page: list[tuple[str, str]]) -> list[PeerPrfRow]:
    rows = []
    for user_id, address in page:
        msisdn = normalise_stored_msisdn(address)
        row = _prf_row(key, peer, pepper, msisdn, user_id, address) if msisdn else None
        if row is not None:
            rows.append(row)
    return rows
