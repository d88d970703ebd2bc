"""Hashed phone-book lookups (MSC2134) as a client makes them, for any feature's tests."""

from __future__ import annotations

import re

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
