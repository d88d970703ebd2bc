"""Module configuration: the `config:` block of the module's entry in homeserver.yaml.

`LaiwangModule.parse_config` turns the raw dict into the frozen attrs classes below. Every
problem raises Synapse's `ConfigError` with the `path` of the offending key, so Synapse refuses
to start with a message such as `modules.<0>.config.acquaintances_only: expected a boolean`.
Unknown keys are errors too: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

import attr
from signedjson.key import decode_verify_key_base64
from synapse.config._base import Config, ConfigError

from rooms.settings import ACCEPT_REQUESTS_FROM_VALUES

T = TypeVar("T")

Path = tuple[str, ...]


def _expect(value: Any, kind: type[T], path: Path, what: str) -> T:
    # bool is an int subclass; a boolean is never a valid number here.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"expected {what}", path)
    return value


def _mapping(value: Any, path: Path) -> Mapping[str, Any]:
    if value is None:
        return {}
    return _expect(value, dict, path, "a mapping")


def _reject_unknown(raw: Mapping[str, Any], known: set[str], path: Path) -> None:
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"unknown key (known keys: {', '.join(sorted(known))})", path + (str(key),)
            )


def _positive_int(raw: Mapping[str, Any], key: str, default: int, path: Path) -> int:
    value = _expect(raw.get(key, default), int, path + (key,), "a positive integer")
    if value <= 0:
        raise ConfigError("expected a positive integer", path + (key,))
    return value


@attr.s(frozen=True, auto_attribs=True, slots=True)
class UserDefaults:
    """Settings a user has until they change them with `PUT /settings`."""

    discoverable: bool = True
    accept_requests_from: str = "address_book"

    @classmethod
    def parse(cls, raw: Any, path: Path) -> UserDefaults:
        raw = _mapping(raw, path)
        _reject_unknown(raw, {"discoverable", "accept_requests_from"}, path)
        discoverable = _expect(
            raw.get("discoverable", True), bool, path + ("discoverable",), "a boolean"
        )
        accept = raw.get("accept_requests_from", "address_book")
        if accept not in ACCEPT_REQUESTS_FROM_VALUES:
            raise ConfigError(
                f"expected one of {', '.join(ACCEPT_REQUESTS_FROM_VALUES)}",
                path + ("accept_requests_from",),
            )
        return cls(discoverable=discoverable, accept_requests_from=accept)


@attr.s(frozen=True, auto_attribs=True, slots=True)
class PaymentProvider:
    """A payment provider whose ed25519-signed receipts prove a `provider` AA payment."""

    name: str
    key_id: str  # "ed25519:<version>"
    verify_key: Any  # nacl VerifyKey, as signedjson uses it

    @classmethod
    def parse(cls, name: str, raw: Any, path: Path) -> PaymentProvider:
        raw = _mapping(raw, path)
        _reject_unknown(raw, {"verify_key"}, path)
        spec = _expect(raw.get("verify_key"), str, path + ("verify_key",), "a string")
        parts = spec.split()
        if len(parts) != 2 or not parts[0].startswith("ed25519:") or parts[0] == "ed25519:":
            raise ConfigError(
                'expected "ed25519:<key_id> <unpadded base64 key>"', path + ("verify_key",)
            )
        key_id, key_b64 = parts
        try:
            verify_key = decode_verify_key_base64("ed25519", key_id.split(":", 1)[1], key_b64)
        except Exception as e:
            raise ConfigError(f"not a valid ed25519 key: {e}", path + ("verify_key",)) from e
        return cls(name=name, key_id=key_id, verify_key=verify_key)


@attr.s(frozen=True, auto_attribs=True, slots=True)
class CommerceConfig:
    base_url: str | None = None

    @classmethod
    def parse(cls, raw: Any, path: Path) -> CommerceConfig:
        raw = _mapping(raw, path)
        _reject_unknown(raw, {"base_url"}, path)
        base_url = raw.get("base_url")
        if base_url is not None:
            _expect(base_url, str, path + ("base_url",), "a string")
            if not base_url.startswith(("http://", "https://")):
                raise ConfigError("expected an http:// or https:// URL", path + ("base_url",))
            base_url = base_url.rstrip("/")
        return cls(base_url=base_url)


def _duration(raw: Mapping[str, Any], key: str, default: str, path: Path) -> int:
    """A positive duration in ms: an integer of ms, or a string like "30d", "12h", "10m"."""
    value = raw.get(key, default)
    try:
        if isinstance(value, bool):
            raise TypeError
        ms = Config.parse_duration(value)
    except (TypeError, ValueError):
        raise ConfigError(
            'expected a duration (milliseconds, or a string like "30d", "12h", "10m")',
            path + (key,),
        ) from None
    if ms <= 0:
        raise ConfigError("expected a positive duration", path + (key,))
    return ms


@attr.s(frozen=True, auto_attribs=True, slots=True)
class DiscoveryConfig:
    """Phone-number discovery (`/discovery/…`) and its enumeration limits."""

    pepper_rotation_period_ms: int = 7 * 24 * 3600 * 1000
    max_addresses_per_request: int = 1000
    max_addresses_per_day: int = 10000
    address_book_ttl_ms: int = 90 * 24 * 3600 * 1000

    @classmethod
    def parse(cls, raw: Any, path: Path) -> DiscoveryConfig:
        raw = _mapping(raw, path)
        _reject_unknown(
            raw,
            {
                "pepper_rotation_period",
                "max_addresses_per_request",
                "max_addresses_per_day",
                "address_book_ttl",
            },
            path,
        )
        return cls(
            pepper_rotation_period_ms=_duration(raw, "pepper_rotation_period", "7d", path),
            max_addresses_per_request=_positive_int(raw, "max_addresses_per_request", 1000, path),
            max_addresses_per_day=_positive_int(raw, "max_addresses_per_day", 10000, path),
            address_book_ttl_ms=_duration(raw, "address_book_ttl", "90d", path),
        )


SMS_SENDERS = ("log", "http")
DEFAULT_SMS_MESSAGE = "Your Laiwang code is {code}"


@attr.s(frozen=True, auto_attribs=True, slots=True)
class SmsHttpConfig:
    """An HTTP SMS gateway: the module POSTs `{"to": "+<E.164>", "text": "…"}` to `url`."""

    url: str
    bearer_token: str | None = None

    @classmethod
    def parse(cls, raw: Any, path: Path) -> SmsHttpConfig:
        raw = _mapping(raw, path)
        _reject_unknown(raw, {"url", "bearer_token"}, path)
        url = _expect(raw.get("url"), str, path + ("url",), "a string")
        if not url.startswith(("http://", "https://")):
            raise ConfigError("expected an http:// or https:// URL", path + ("url",))
        token = raw.get("bearer_token")
        if token is not None:
            _expect(token, str, path + ("bearer_token",), "a string")
        return cls(url=url, bearer_token=token)


@attr.s(frozen=True, auto_attribs=True, slots=True)
class SmsConfig:
    """How validation codes for phone numbers reach the phone (the msisdn identity endpoints)."""

    sender: str = "log"
    file: str | None = None  # the log sender also appends JSON lines here
    http: SmsHttpConfig | None = None
    code_ttl_ms: int = 10 * 60 * 1000
    max_attempts: int = 5
    max_per_number_per_day: int = 10
    # When set, the validation endpoints answer only under IDENTITY_PREFIX/<secret>.
    delegate_secret: str | None = None
    message: str = DEFAULT_SMS_MESSAGE

    @classmethod
    def parse(cls, raw: Any, path: Path) -> SmsConfig:
        raw = _mapping(raw, path)
        _reject_unknown(
            raw,
            {
                "sender",
                "file",
                "http",
                "code_ttl",
                "max_attempts",
                "max_per_number_per_day",
                "message",
                "delegate_secret",
            },
            path,
        )
        sender = raw.get("sender", "log")
        if sender not in SMS_SENDERS:
            raise ConfigError(f"expected one of {', '.join(SMS_SENDERS)}", path + ("sender",))
        file = raw.get("file")
        if file is not None:
            _expect(file, str, path + ("file",), "a file path")
        http = None
        if raw.get("http") is not None:
            http = SmsHttpConfig.parse(raw["http"], path + ("http",))
        if sender == "http" and http is None:
            raise ConfigError("the http sender needs http.url", path + ("http",))
        secret = raw.get("delegate_secret")
        if secret is not None:
            _expect(secret, str, path + ("delegate_secret",), "a string")
            if not re.fullmatch(r"[A-Za-z0-9_-]{16,}", secret):
                raise ConfigError(
                    "expected at least 16 characters of [A-Za-z0-9_-]", path + ("delegate_secret",)
                )
        message = _expect(
            raw.get("message", DEFAULT_SMS_MESSAGE), str, path + ("message",), "a string"
        )
        if "{code}" not in message:
            raise ConfigError("must contain {code}", path + ("message",))
        return cls(
            sender=sender,
            file=file,
            http=http,
            code_ttl_ms=_duration(raw, "code_ttl", "10m", path),
            max_attempts=_positive_int(raw, "max_attempts", 5, path),
            max_per_number_per_day=_positive_int(raw, "max_per_number_per_day", 10, path),
            delegate_secret=secret,
            message=message,
        )


@attr.s(frozen=True, auto_attribs=True, slots=True)
class ClustersConfig:
    """Clusters (扎堆): how long `POST /clusters/{room_id}/join` waits for a knock's approval."""

    knock_wait_ms: int = 30 * 1000

    @classmethod
    def parse(cls, raw: Any, path: Path) -> ClustersConfig:
        raw = _mapping(raw, path)
        _reject_unknown(raw, {"knock_wait"}, path)
        return cls(knock_wait_ms=_duration(raw, "knock_wait", "30s", path))


@attr.s(frozen=True, auto_attribs=True, slots=True)
class LaiwangConfig:
    acquaintances_only: bool = True
    defaults: UserDefaults = UserDefaults()
    payment_providers: Mapping[str, PaymentProvider] = attr.Factory(dict)
    commerce: CommerceConfig = CommerceConfig()
    # Largest request body any endpoint accepts; larger bodies get 413 M_TOO_LARGE.
    max_body_bytes: int = 65536
    discovery: DiscoveryConfig = DiscoveryConfig()
    sms: SmsConfig = SmsConfig()
    clusters: ClustersConfig = ClustersConfig()


KNOWN_KEYS = {"acquaintances_only", "defaults", "payment_providers", "commerce", "max_body_bytes"}
KNOWN_KEYS |= {"discovery", "sms"}
KNOWN_KEYS |= {"clusters"}


def parse_config(raw: Any) -> LaiwangConfig:
    """Parse the module's `config:` block. `None` and `{}` give the defaults."""
    root: Path = ()
    raw = _mapping(raw, root)
    _reject_unknown(raw, KNOWN_KEYS, root)

    acquaintances_only = _expect(
        raw.get("acquaintances_only", True), bool, ("acquaintances_only",), "a boolean"
    )
    providers_raw = _mapping(raw.get("payment_providers"), ("payment_providers",))
    providers = {
        name: PaymentProvider.parse(name, spec, ("payment_providers", name))
        for name, spec in providers_raw.items()
    }
    return LaiwangConfig(
        acquaintances_only=acquaintances_only,
        defaults=UserDefaults.parse(raw.get("defaults"), ("defaults",)),
        payment_providers=providers,
        commerce=CommerceConfig.parse(raw.get("commerce"), ("commerce",)),
        max_body_bytes=_positive_int(raw, "max_body_bytes", 65536, root),
        discovery=DiscoveryConfig.parse(raw.get("discovery"), ("discovery",)),
        sms=SmsConfig.parse(raw.get("sms"), ("sms",)),
        clusters=ClustersConfig.parse(raw.get("clusters"), ("clusters",)),
    )
