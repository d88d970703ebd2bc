"""The payment provider's ed25519 key and its receipts.

A receipt is the AA section's: `{receipt_id, provider, payer, payee, amount, currency, room_id,
event_id}` signed with `signedjson.sign.sign_json(receipt, provider, key)`, so the module's
`rooms.aa.verify_receipt` accepts it once the module lists `verify_key_line()` under
`payment_providers.<provider>.verify_key`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from signedjson.key import (
    encode_verify_key_base64,
    generate_signing_key,
    get_verify_key,
    read_signing_keys,
    write_signing_keys,
)
from signedjson.sign import sign_json
from signedjson.types import SigningKey

KEY_FILE = "signing.key"
API_KEY_FILE = "api_key"
KEY_VERSION = "1"


def _write_private(path: Path, write: Any) -> None:
    """Create `path` readable by its owner only, atomically (a crash leaves no half key)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        write(f)
    os.replace(tmp, path)


def load_signing_key(data_dir: Path) -> SigningKey:
    """The provider's signing key in `data_dir`, generated on first use."""
    path = data_dir / KEY_FILE
    if not path.exists():
        key = generate_signing_key(KEY_VERSION)
        _write_private(path, lambda f: write_signing_keys(f, [key]))
    with path.open() as f:
        return read_signing_keys(f)[0]


def verify_key_line(key: SigningKey) -> str:
    """`ed25519:<key_id> <unpadded base64>`: the module's `payment_providers` value."""
    return f"ed25519:{key.version} {encode_verify_key_base64(get_verify_key(key))}"


def load_api_key(data_dir: Path) -> str:
    """The bearer token callers must present, generated into `data_dir` on first use."""
    path = data_dir / API_KEY_FILE
    if not path.exists():
        _write_private(path, lambda f: f.write(secrets.token_urlsafe(32) + "\n"))
    return path.read_text().strip()


def new_receipt_id() -> str:
    return "rcpt_" + secrets.token_hex(12)


def signed_receipt(
    *,
    receipt_id: str,
    provider: str,
    payer: str,
    payee: str,
    amount: int,
    currency: str,
    room_id: str,
    event_id: str,
    key: SigningKey,
) -> dict[str, Any]:
    receipt: dict[str, Any] = {
        "receipt_id": receipt_id,
        "provider": provider,
        "payer": payer,
        "payee": payee,
        "amount": amount,
        "currency": currency,
        "room_id": room_id,
        "event_id": event_id,
    }
    return sign_json(receipt, provider, key)
