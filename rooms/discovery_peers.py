"""Discovery across servers (`discovery.peers`): the pure parts of an OPRF-based private set
intersection between a caller's server A and a peer B. docs/api/discovery.md has the protocol
and the privacy analysis.

The PRF of a lookup hash `x` (the client's MSC2134 hash under A's pepper) under B's key `k` is
the "2HashDH" OPRF over the prime-order subgroup of Ed25519:

    F_k(x) = SHA-256(DST_H2 || len(x) || x || k·H1(x))

where H1 is libsodium's `crypto_core_ed25519_from_uniform` (Elligator 2, then the cofactor
cleared) of SHA-512(DST_H1 || x): a point of the prime-order group whose discrete logarithm
nobody knows. A evaluates it without showing `x` to B: A sends r·H1(x) for a random scalar r
(one per request), B answers k·(r·H1(x)), and A multiplies by r⁻¹ (mod the group order) to get
k·H1(x). Without `k` nobody can compute F, so F values of B's users tell A nothing it did not
pay for in B's budget; blinded points tell B nothing (r·H1(x) is a uniformly random group
element, whatever x is).

All group operations are libsodium's (PyNaCl, a dependency of Synapse), in C.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import attr
import nacl.bindings as sodium

from rooms.discovery import PEPPER_RE
from rooms.errors import InvalidParam
from rooms.validation import require, require_str

DST_H1 = b"laiwang-discovery-oprf-v1 H1"
DST_H2 = b"laiwang-discovery-oprf-v1 H2"
DST_KEY = b"laiwang-discovery-oprf-v1 key"
ELEMENT_BYTES = 32  # an Ed25519 point, compressed
PRF_BYTES = 32
# The published part of a PRF value: its first 64 bits. A match on them is confirmed by the
# peer against the whole value, which only an evaluation through the peer yields.
PUBLISHED_BYTES = 8

_B64_RE = re.compile(r"^[A-Za-z0-9_-]*$")


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    """Decode unpadded URL-safe base64; ValueError when it is not."""
    if not _B64_RE.match(text):
        raise ValueError("not URL-safe base64")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as e:
        raise ValueError(str(e)) from None


# --- the group and the PRF ---


def hash_to_group(x: str) -> bytes:
    """H1: a point of Ed25519's prime-order subgroup for `x`, with unknown discrete log."""
    uniform = hashlib.sha512(DST_H1 + x.encode("utf-8")).digest()[:32]
    return bytes(sodium.crypto_core_ed25519_from_uniform(uniform))


def is_group_element(point: bytes) -> bool:
    """A canonical encoding of a point of the prime-order subgroup, not the identity (libsodium
    rejects small-order points and points with a torsion component)."""
    return len(point) == ELEMENT_BYTES and bool(sodium.crypto_core_ed25519_is_valid_point(point))


def _scalar(seed: bytes) -> bytes:
    scalar = bytes(sodium.crypto_core_ed25519_scalar_reduce(seed))
    if not any(scalar):  # probability 2^-252; a zero scalar would map everything to one point
        raise ValueError("zero scalar")
    return scalar


def derive_key(server_key: bytes, peer: str, pepper: str) -> bytes:
    """B's OPRF key for one peer and that peer's pepper: derived from B's server key, so every
    worker has it and nothing is stored; a key per peer, so one peer's evaluations say nothing
    about the sets B publishes to others; a key per pepper, so it rotates with A's pepper."""
    message = DST_KEY + peer.encode("utf-8") + b"\0" + pepper.encode("utf-8")
    return _scalar(hmac.new(server_key, message, hashlib.sha512).digest())


def new_blind() -> bytes:
    """A fresh blinding scalar r (one per request to a peer)."""
    while True:
        try:
            return _scalar(secrets.token_bytes(64))
        except ValueError:
            continue


def blind(r: bytes, inputs: Sequence[str]) -> list[bytes]:
    """r·H1(x) for each input."""
    return [bytes(sodium.crypto_scalarmult_ed25519_noclamp(r, hash_to_group(x))) for x in inputs]


def evaluate(k: bytes, elements: Sequence[bytes]) -> list[bytes]:
    """B's side: k·E for each blinded element (checked first: see is_group_element)."""
    for element in elements:
        if not is_group_element(element):
            raise InvalidParam("elements", "must be points of the Ed25519 prime-order group")
    return [bytes(sodium.crypto_scalarmult_ed25519_noclamp(k, e)) for e in elements]


def unblind(r: bytes, inputs: Sequence[str], evaluated: Sequence[bytes]) -> list[bytes | None]:
    """A's side: F_k(x) from k·r·H1(x), for each input; None where the peer's answer is not a
    group element (a broken or lying peer: that input simply matches nothing)."""
    inverse = bytes(sodium.crypto_core_ed25519_scalar_invert(r))
    out: list[bytes | None] = []
    for x, element in zip(inputs, evaluated, strict=True):
        if not is_group_element(element):
            out.append(None)
            continue
        point = bytes(sodium.crypto_scalarmult_ed25519_noclamp(inverse, element))
        out.append(finalize(x, point))
    return out


def finalize(x: str, point: bytes) -> bytes:
    """H2: the PRF value of `x` from k·H1(x)."""
    raw = x.encode("utf-8")
    return hashlib.sha256(DST_H2 + len(raw).to_bytes(4, "big") + raw + point).digest()


def prf(k: bytes, x: str) -> bytes:
    """F_k(x), computed directly by the key's holder (B, for its own users' numbers)."""
    return finalize(x, bytes(sodium.crypto_scalarmult_ed25519_noclamp(k, hash_to_group(x))))


def published_key(value: bytes) -> int:
    """The published part of a PRF value, as a signed 64-bit integer (a database key)."""
    return int.from_bytes(value[:PUBLISHED_BYTES], "big", signed=True)


def pack_published(keys: Sequence[int]) -> str:
    """The published set: sorted 64-bit keys, 8 bytes each, in one base64 string."""
    raw = b"".join(k.to_bytes(PUBLISHED_BYTES, "big", signed=True) for k in sorted(keys))
    return b64(raw)


def unpack_published(text: str) -> list[int]:
    """The sorted keys of a published set; ValueError when malformed."""
    raw = unb64(text)
    if len(raw) % PUBLISHED_BYTES:
        raise ValueError("not a whole number of keys")
    keys = [
        int.from_bytes(raw[i : i + PUBLISHED_BYTES], "big", signed=True)
        for i in range(0, len(raw), PUBLISHED_BYTES)
    ]
    keys.sort()
    return keys


# --- the peer protocol's request bodies (B checks what A sends) ---


@attr.s(frozen=True, slots=True, auto_attribs=True)
class PeerRequest:
    """`evaluate` (elements: blinded points) or `resolve` (elements: PRF values)."""

    user_id: str
    pepper: str
    elements: tuple[bytes, ...]


def validate_peer_pepper(value: Any) -> str:
    if not isinstance(value, str) or not PEPPER_RE.match(value) or len(value) > 256:
        raise InvalidParam("pepper", "must be the caller's server's lookup pepper")
    return value


def validate_peer_request(body: Mapping[str, Any], origin: str, size: int) -> PeerRequest:
    """Check a peer's request made for one of its users: `user_id` must be a user of the
    requesting server `origin`, and `elements` a list of base64 values of `size` bytes."""
    user_id = require_str(body, "user_id", max_len=255)
    if not user_id.startswith("@") or user_id.partition(":")[2] != origin:
        raise InvalidParam("user_id", "must be a user of the requesting server")
    pepper = validate_peer_pepper(require(body, "pepper"))
    raw = require(body, "elements")
    if not isinstance(raw, list):
        raise InvalidParam("elements", "must be a list")
    elements = []
    for item in raw:
        try:
            value = unb64(item) if isinstance(item, str) else b""
        except ValueError:
            value = b""
        if len(value) != size:
            raise InvalidParam("elements", f"must hold base64 values of {size} bytes")
        elements.append(value)
    return PeerRequest(user_id=user_id, pepper=pepper, elements=tuple(elements))
