"""Phone numbers: E.164 normalisation, and the pure parts of msisdn validation sessions.

Numbers are normalised with `phonenumbers` (Google's libphonenumber) into Synapse's msisdn form:
E.164 digits without the '+'. A validation session keeps its number sealed with a key derived
from the client's secret (AES-GCM), and its code only as a hash, so a database dump holds no
phone number and no usable code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from typing import Any

import attr
import phonenumbers
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from rooms.errors import InvalidParam
from rooms.validation import require_int, require_str

MEDIUM = "msisdn"
_CLIENT_SECRET_RE = re.compile(r"^[0-9a-zA-Z.=_\-]+$")  # the Matrix spec's grammar
_COUNTRY_RE = re.compile(r"^[A-Za-z]{2}$")
CODE_DIGITS = 6


def normalise_msisdn(number: str, country: str | None = None) -> str:
    """The msisdn (E.164 digits, no '+') of a number in national or international format.

    `country` (ISO 3166-1 alpha-2) is needed for national formats. Raises InvalidParam for
    anything libphonenumber cannot read as a possible number.
    """
    region = country.upper() if country else None
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        raise InvalidParam("phone_number", "is not a phone number") from None
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidParam("phone_number", "is not a possible phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)[1:]


def normalise_stored_msisdn(address: str) -> str | None:
    """An msisdn as some other path stored it (admin API, older servers, with '+' or spaces),
    in canonical form; None when it is not a possible international number."""
    text = address.strip()
    if not text.startswith("+"):
        text = "+" + text
    try:
        return normalise_msisdn(text)
    except InvalidParam:
        return None


def require_client_secret(body: Mapping[str, Any]) -> str:
    """The spec's grammar and length (1 to 255), no stricter: Synapse passes on any secret the
    spec allows, and a stricter rule would fail spec-conformant clients. A short secret costs
    nothing here, because what it protects is also keyed with the server key."""
    secret = require_str(body, "client_secret", max_len=255)
    if not secret or not _CLIENT_SECRET_RE.match(secret):
        raise InvalidParam("client_secret", "must match [0-9a-zA-Z.=_-]+")
    return secret


@attr.s(frozen=True, slots=True, auto_attribs=True)
class TokenRequest:
    client_secret: str
    msisdn: str
    send_attempt: int


def validate_request_token(body: Mapping[str, Any]) -> TokenRequest:
    """`POST …/validate/msisdn/requestToken` `{client_secret, country, phone_number,
    send_attempt, next_link?}` (the identity service API, as Synapse proxies it)."""
    client_secret = require_client_secret(body)
    country = body.get("country")
    if country is not None and country != "":
        if not isinstance(country, str) or not _COUNTRY_RE.match(country):
            raise InvalidParam("country", "must be an ISO 3166-1 two-letter country code")
    number = require_str(body, "phone_number", max_len=64)
    send_attempt = require_int(body, "send_attempt", minimum=0, maximum=2**31)
    return TokenRequest(
        client_secret=client_secret,
        msisdn=normalise_msisdn(number, country or None),
        send_attempt=send_attempt,
    )


@attr.s(frozen=True, slots=True, auto_attribs=True)
class SubmitToken:
    sid: str
    client_secret: str
    token: str


def validate_submit_token(body: Mapping[str, Any]) -> SubmitToken:
    return SubmitToken(
        sid=require_str(body, "sid", max_len=255),
        client_secret=require_client_secret(body),
        token=require_str(body, "token", max_len=255).strip(),
    )


def new_code() -> str:
    return "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))


def new_sid() -> str:
    return secrets.token_urlsafe(18)


def code_hash(sid: str, code: str) -> str:
    return hashlib.sha256(f"laiwang-code\x00{sid}\x00{code}".encode()).hexdigest()


def code_matches(sid: str, code: str, stored_hash: str) -> bool:
    return hmac.compare_digest(code_hash(sid, code), stored_hash)


def derive_key(server_key: bytes, purpose: str) -> bytes:
    """A key for one purpose from the server's secret (Synapse's macaroon secret): never stored,
    the same on every worker, and useless for any other purpose."""
    return hmac.new(server_key, f"laiwang\x00{purpose}".encode(), hashlib.sha256).digest()


def delegate_secret_from(server_key: bytes) -> str:
    """The default `sms.delegate_secret`: only this server (which holds the key) knows it."""
    return base64.urlsafe_b64encode(derive_key(server_key, "msisdn-delegate")).decode()[:32]


def _keyed(key: bytes, *parts: str) -> str:
    return hmac.new(key, "\x00".join(parts).encode(), hashlib.sha256).hexdigest()


def session_lookup_key(key: bytes, client_secret: str, msisdn: str) -> str:
    """Finds a client's session for a number again (for `send_attempt`); only someone holding
    the client secret and the server key can link it to the number."""
    return _keyed(key, "laiwang-session", client_secret, msisdn)


def sms_number_key(key: bytes, msisdn: str) -> str:
    """What the per-number SMS counter is keyed by: an HMAC under the server key, so a database
    dump alone cannot be reversed by hashing every phone number."""
    return _keyed(key, "laiwang-sms", msisdn)


def sms_user_key(key: bytes, user_id: str) -> str:
    """What the per-account SMS counter is keyed by (the same HMAC, another purpose), so the
    counter table holds no user id."""
    return _keyed(key, "laiwang-sms-user", user_id)


def _seal_key(key: bytes, client_secret: str) -> bytes:
    # The server key too: the spec allows a one-character client secret, which alone would be
    # guessed at once.
    return hmac.new(key, f"laiwang-seal\x00{client_secret}".encode(), hashlib.sha256).digest()


def seal_address(key: bytes, msisdn: str, client_secret: str, sid: str) -> str:
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(_seal_key(key, client_secret)).encrypt(nonce, msisdn.encode(), sid.encode())
    return base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def unseal_address(key: bytes, sealed: str, client_secret: str, sid: str) -> str | None:
    """The number, or None when the secret is wrong (or the data was tampered with)."""
    try:
        raw = base64.urlsafe_b64decode(sealed.encode("ascii"))
        plain = AESGCM(_seal_key(key, client_secret)).decrypt(raw[:12], raw[12:], sid.encode())
    except (InvalidTag, ValueError):
        return None
    return plain.decode()


def calling_code(msisdn: str) -> str:
    """The country calling code of an msisdn ("86" for China), for the per-country SMS cap."""
    return str(phonenumbers.parse("+" + msisdn, None).country_code)


def international_format(msisdn: str) -> str:
    """How to show the number to its owner, e.g. "+86 138 0000 0001"."""
    parsed = phonenumbers.parse("+" + msisdn, None)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def masked(msisdn: str) -> str:
    """The number with all but its last two digits hidden, for logs."""
    return "+" + "*" * max(len(msisdn) - 2, 0) + msisdn[-2:]
