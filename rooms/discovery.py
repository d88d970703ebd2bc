"""Hashed phone-number discovery as MSC2134 defines it: the hash, the pepper, the lookup body.

The hash of an address is `unpadded_urlsafe_b64(sha256("<msisdn> msisdn <pepper>"))`, exactly as
Synapse's own identity client computes it, so any MSC2134 client can use these endpoints.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import string
from collections.abc import Mapping
from typing import Any

import attr

from rooms.errors import InvalidParam
from rooms.validation import require, require_str

ALGORITHM = "sha256"
ALGORITHMS = (ALGORITHM,)

# A SHA-256 digest in unpadded URL-safe base64 is 43 characters.
_HASH_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
PEPPER_RE = re.compile(r"^[a-zA-Z0-9]+$")
_PEPPER_ALPHABET = string.ascii_letters + string.digits
PEPPER_LENGTH = 32


def lookup_hash(msisdn: str, pepper: str) -> str:
    """The MSC2134 lookup hash of a phone number (digits, no '+') under `pepper`."""
    digest = hashlib.sha256(f"{msisdn} msisdn {pepper}".encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def hash_key(lookup: str) -> int:
    """The first 64 bits of a lookup hash as a signed integer: the database key of the index.

    A quarter of the size of the text hash, so the index of a million numbers stays in memory.
    Two numbers sharing a key is harmless: every hit is checked against the full hash of the
    user's stored number before it is returned.
    """
    raw = base64.urlsafe_b64decode(lookup[:11] + "=")  # 11 characters carry the first 8 bytes
    return int.from_bytes(raw[:8], "big", signed=True)


def new_pepper() -> str:
    """A fresh public pepper matching `[a-zA-Z0-9]+` (what MSC2134 allows)."""
    return "".join(secrets.choice(_PEPPER_ALPHABET) for _ in range(PEPPER_LENGTH))


def is_lookup_hash(value: Any) -> bool:
    return isinstance(value, str) and bool(_HASH_RE.match(value))


@attr.s(frozen=True, slots=True, auto_attribs=True)
class LookupRequest:
    algorithm: str
    pepper: str
    addresses: tuple[str, ...]  # distinct, in the order given


def validate_lookup(body: Mapping[str, Any]) -> LookupRequest:
    """Check a `POST /discovery/lookup` body (types and shapes only).

    The pepper's freshness and the address count are the handler's to judge: they need the
    database. Unknown keys are allowed, as MSC2134 clients may send more.
    """
    algorithm = require_str(body, "algorithm", max_len=64)
    if algorithm not in ALGORITHMS:
        raise InvalidParam("algorithm", f"is not supported (supported: {', '.join(ALGORITHMS)})")
    pepper = require_str(body, "pepper", max_len=256)
    addresses = require(body, "addresses")
    if not isinstance(addresses, list):
        raise InvalidParam("addresses", "must be a list of hashes")
    seen: dict[str, None] = {}
    for address in addresses:
        if not is_lookup_hash(address):
            raise InvalidParam(
                "addresses", "must hold unpadded URL-safe base64 SHA-256 hashes (43 characters)"
            )
        seen[address] = None
    return LookupRequest(algorithm=algorithm, pepper=pepper, addresses=tuple(seen))


# --- the Identity Service API v2 (rest/discovery.py:IdentityServlet) ---

IDENTITY_TOKEN_BYTES = 32


@attr.s(frozen=True, slots=True, auto_attribs=True)
class OpenIdCredentials:
    access_token: str
    matrix_server_name: str


def validate_openid_credentials(body: Mapping[str, Any]) -> OpenIdCredentials:
    """Check a `POST /_matrix/identity/v2/account/register` body: the OpenID token object a
    client gets from `/_matrix/client/v3/user/{userId}/openid/request_token`. `expires_in` is
    the homeserver's word to the client; the token's own expiry is checked in the database."""
    access_token = require_str(body, "access_token", max_len=256)
    token_type = require_str(body, "token_type", max_len=64)
    if token_type != "Bearer":
        raise InvalidParam("token_type", "must be 'Bearer'")
    server_name = require_str(body, "matrix_server_name", max_len=255)
    return OpenIdCredentials(access_token=access_token, matrix_server_name=server_name)


def new_identity_token() -> str:
    """An identity server access token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(IDENTITY_TOKEN_BYTES)


def identity_token_hash(token: str) -> str:
    """What the database keeps of an identity server token. The token is 256 random bits, so an
    unkeyed hash cannot be reversed, and a copy of the table lets nobody in."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
