"""Hashed phone-book lookups (MSC2134) as a client makes them, for any feature's tests."""

from __future__ import annotations

import re
from urllib.parse import quote

from rooms.discovery import lookup_hash
from tests.harness.client import MatrixClient


def pepper(user: MatrixClient) -> str:
    details = user.laiwang("GET", "/discovery/hash_details")
    assert details["algorithms"] == ["sha256"]
    assert re.fullmatch(r"[a-zA-Z0-9]+", details["lookup_pepper"])
    return str(details["lookup_pepper"])


def lookup(user: MatrixClient, msisdns: list[str], with_pepper: str | None = None) -> dict:
    p = with_pepper or pepper(user)
    body = {"algorithm": "sha256", "pepper": p, "addresses": [lookup_hash(m, p) for m in msisdns]}
    mappings = user.laiwang("POST", "/discovery/lookup", body)["mappings"]
    # Answer in numbers, not hashes, so the tests read plainly.
    return {m: mappings[lookup_hash(m, p)] for m in msisdns if lookup_hash(m, p) in mappings}


IDENTITY = "/_matrix/identity/v2"


def openid_token(user: MatrixClient) -> dict:
    """An OpenID token object, as a client gets it to register with an identity server."""
    path = f"/_matrix/client/v3/user/{quote(user.user_id)}/openid/request_token"
    return user.call("POST", path, {})


def identity_client(user: MatrixClient) -> MatrixClient:
    """The user's session with the homeserver's Identity Service API v2 (a client whose identity
    server is the homeserver: register with an OpenID token, then use the token it gives)."""
    token = user.call("POST", f"{IDENTITY}/account/register", openid_token(user), auth=False)
    return MatrixClient(user.base_url, user.user_id, str(token["token"]))


def identity_lookup(client: MatrixClient, msisdns: list[str]) -> dict:
    """A lookup through `/_matrix/identity/v2`, answered in numbers."""
    details = client.call("GET", f"{IDENTITY}/hash_details")
    p = str(details["lookup_pepper"])
    body = {"algorithm": "sha256", "pepper": p, "addresses": [lookup_hash(m, p) for m in msisdns]}
    mappings = client.call("POST", f"{IDENTITY}/lookup", body)["mappings"]
    return {m: mappings[lookup_hash(m, p)] for m in msisdns if lookup_hash(m, p) in mappings}
