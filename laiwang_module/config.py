"""Module configuration: the `config:` block of the module's entry in homeserver.yaml.

`LaiwangModule.parse_config` turns the raw dict into the frozen attrs classes below. Every
problem raises Synapse's `ConfigError` with the `path` of the offending key, so Synapse refuses
to start with a message such as `modules.<0>.config.acquaintances_only: expected a boolean`.
Unknown keys are errors too: a typo must not silently fall back to a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import attr
from signedjson.key import decode_verify_key_base64
from synapse.config._base import ConfigError

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


@attr.s(frozen=True, auto_attribs=True, slots=True)
class LaiwangConfig:
    acquaintances_only: bool = True
    defaults: UserDefaults = UserDefaults()
    payment_providers: Mapping[str, PaymentProvider] = attr.Factory(dict)
    commerce: CommerceConfig = CommerceConfig()
    # Largest request body any endpoint accepts; larger bodies get 413 M_TOO_LARGE.
    max_body_bytes: int = 65536


KNOWN_KEYS = {"acquaintances_only", "defaults", "payment_providers", "commerce", "max_body_bytes"}


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
    )
