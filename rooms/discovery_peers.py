"""Discovery across servers (`discovery.peers`): the pure parts of an OPRF-based private set
intersection between a caller's server A and a peer B. docs/api/discovery.md has the protocol
and the privacy analysis.

The PRF of a lookup hash `x` (the client's MSC2134 hash under A's pepper) under B's key `k` is
the "2HashDH" OPRF over the prime-order group of Curve25519:

    F_k(x) = SHA-256(DST_H2 || len(x) || x || X25519(k, H1(x)))

where H1 is libsodium's `crypto_core_ed25519_from_uniform` (Elligator 2, then the cofactor
cleared) of SHA-512(DST_H1 || x), taken to its Montgomery u-coordinate: a point of the
prime-order subgroup whose discrete logarithm nobody knows. A evaluates it without showing `x`
to B: A sends X25519(b, H1(x)) for a random scalar b (one per request), B answers
X25519(k, ·) of it, and A applies X25519 with a scalar c such that c·b ≡ ±1 modulo the group
order, getting X25519(k, H1(x)) (see new_blind: X25519 clamps every scalar, so b is drawn
until such a c exists in clamped form). Without `k` nobody can compute F, so F values of B's
users tell A nothing it did not pay for in B's budget; blinded points tell B nothing (b·H1(x)
is a uniformly random group element, whatever x is).

X25519 is libsodium's (PyNaCl, a dependency of Synapse), in C: about 40 µs a multiplication
here, against about 105 µs for `crypto_scalarmult_ed25519_noclamp`.
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
ELEMENT_BYTES = 32  # a Curve25519 u-coordinate
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

_P = 2**255 - 19
# The order of the prime-order subgroup of Curve25519 / Ed25519.
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493


def hash_to_group(x: str) -> bytes:
    """H1: the u-coordinate of a point of the prime-order subgroup for `x`, with unknown
    discrete log (libsodium's Elligator 2 map to Ed25519, cofactor cleared, then the birational
    map u = (1 + y) / (1 - y) to Curve25519)."""
    uniform = hashlib.sha512(DST_H1 + x.encode("utf-8")).digest()[:32]
    edwards = bytes(sodium.crypto_core_ed25519_from_uniform(uniform))
    y = int.from_bytes(edwards, "little") & ((1 << 255) - 1)
    # y = 1 is the identity, which the map gives with negligible probability; X25519 then
    # refuses the point (an all-zero result) and the input matches nothing.
    u = (1 + y) * pow((1 - y) % _P, -1, _P) % _P if y != 1 else 0
    return u.to_bytes(32, "little")


def x25519(scalar: bytes, point: bytes) -> bytes:
    """X25519 (the scalar clamped); ValueError for a point of small order (all-zero result)."""
    try:
        return bytes(sodium.crypto_scalarmult(scalar, point))
    except (RuntimeError, ValueError, TypeError) as e:
        raise ValueError("not a usable point") from e


def derive_key(server_key: bytes, peer: str, pepper: str) -> bytes:
    """B's OPRF key for one peer and that peer's pepper: derived from B's server key, so every
    worker has it and nothing is stored; a key per peer, so one peer's evaluations say nothing
    about the sets B publishes to others; a key per pepper, so it rotates with A's pepper."""
    message = DST_KEY + peer.encode("utf-8") + b"\0" + pepper.encode("utf-8")
    return hmac.new(server_key, message, hashlib.sha256).digest()


def _clamp(n: int) -> int:
    return (n & ~7 & ((1 << 255) - 1)) | (1 << 254)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Blind:
    """A blinding scalar and its unblinding scalar, both fixed points of X25519's clamping."""

    scalar: bytes
    inverse: bytes


def new_blind() -> Blind:
    """A fresh blinding (one per request to a peer). X25519 multiplies by clamp(scalar): a
    multiple of 8 in [2^254, 2^255). The unblinding scalar c must satisfy c·b ≡ ±1 (mod the
    group order L; ± because X25519 keeps only u, the same for P and -P) and be of that form
    too. Among the candidates t + jL in the range (about four) one in two is a multiple of 8,
    so a few draws of b suffice."""
    while True:
        b = _clamp(int.from_bytes(secrets.token_bytes(32), "little"))
        inverse = pow(b, -1, GROUP_ORDER)
        for t in (inverse, GROUP_ORDER - inverse):
            c = t + -(-((1 << 254) - t) // GROUP_ORDER) * GROUP_ORDER  # the first one >= 2^254
            while c < 1 << 255:
                if c % 8 == 0:
                    return Blind(b.to_bytes(32, "little"), c.to_bytes(32, "little"))
                c += GROUP_ORDER


def blind(r: Blind, inputs: Sequence[str]) -> list[bytes]:
    """X25519(b, H1(x)) for each input."""
    return [x25519(r.scalar, hash_to_group(x)) for x in inputs]


def evaluate(k: bytes, elements: Sequence[bytes]) -> list[bytes]:
    """B's side: X25519(k, E) for each blinded element. Points of small order (which would
    give a constant) are refused; X25519 is safe on the twist, so nothing else is checked."""
    out = []
    for element in elements:
        try:
            out.append(x25519(k, element))
        except ValueError:
            raise InvalidParam(
                "elements", "must be points of Curve25519's prime-order group"
            ) from None
    return out


def unblind(r: Blind, inputs: Sequence[str], evaluated: Sequence[bytes]) -> list[bytes | None]:
    """A's side: F_k(x) from X25519(k, X25519(b, H1(x))), for each input; None where the
    peer's answer is not usable (a broken or lying peer: that input matches nothing)."""
    out: list[bytes | None] = []
    for x, element in zip(inputs, evaluated, strict=True):
        try:
            out.append(finalize(x, x25519(r.inverse, element)))
        except ValueError:
            out.append(None)
    return out


def finalize(x: str, point: bytes) -> bytes:
    """H2: the PRF value of `x` from k·H1(x)."""
    raw = x.encode("utf-8")
    return hashlib.sha256(DST_H2 + len(raw).to_bytes(4, "big") + raw + point).digest()


def prf(k: bytes, x: str) -> bytes | None:
    """F_k(x), computed directly by the key's holder (B, for its own users' numbers); None in
    the negligible case that H1(x) is not usable."""
    try:
        return finalize(x, x25519(k, hash_to_group(x)))
    except ValueError:
        return None


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
