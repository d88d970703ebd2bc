"""Module configuration: the `config:` block of the module's entry in homeserver.yaml.

`LaiwangModule.parse_config` turns the raw dict into the frozen attrs classes below. Each field
declares its YAML key, how the value is read and its default (as written in YAML) exactly once,
with `_option`; one parser walks the fields, so the classes are the whole config surface and
config/module-config.md is checked against them. Every problem raises Synapse's `ConfigError`
with the `path` of the offending key, so Synapse refuses to start with a message such as
`modules.<0>.config.acquaintances_only: expected a boolean`. Unknown keys are errors too: a typo
must not silently fall back to a default.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import attr
from signedjson.key import decode_verify_key_base64
from synapse.config._base import Config, ConfigError, format_config_error

from rooms.settings import ACCEPT_REQUESTS_FROM_VALUES

T = TypeVar("T")

Path = tuple[str, ...]
# Reads one YAML value (None when the key is absent and has no default) at `path`.
Parser = Callable[[Any, Path], Any]


class HomeserverConfigError(ConfigError):
    """A problem with a homeserver setting the module needs, found when the module is built.

    Synapse formats the ConfigErrors it finds while parsing, but an error raised from the
    module's constructor reaches the operator only as the last line of a start-up traceback,
    which shows `str(e)`: so it formats itself the same way."""

    def __str__(self) -> str:
        return "".join(format_config_error(self))


class ConfigBlock:
    """A mapping of the config: an attrs class whose fields are all declared with `_option`."""

    __slots__ = ()
    # Set by attrs on each subclass; declared so that mypy accepts `attr.fields(<a block class>)`.
    __attrs_attrs__: ClassVar[tuple[attr.Attribute[Any], ...]]

    def _check(self, path: Path) -> None:
        """Checks across fields, once each field has been parsed."""


B = TypeVar("B", bound=ConfigBlock)


@attr.s(frozen=True, auto_attribs=True, slots=True)
class Option:
    """How one key of a block is read: the single source of its parser and default."""

    parse: Parser
    default: Any  # as written in YAML; the attribute's default is `parse(default)`
    required: bool
    key: str | None  # the YAML key, when it is not the attribute's name
    block: type[ConfigBlock] | None  # set when the value is a nested block


_OPTION = "laiwang_option"


def _option(
    parse: Parser,
    default: Any = None,
    *,
    key: str | None = None,
    required: bool = False,
    block: type[ConfigBlock] | None = None,
) -> Any:
    """An attrs field read from the YAML key `key` (default: the attribute's name) by `parse`.

    A `required` key has no default: `parse` gets None when it is absent.
    """
    option = Option(parse=parse, default=default, required=required, key=key, block=block)
    if required:
        return attr.ib(metadata={_OPTION: option})
    return attr.ib(factory=lambda: parse(default, ()), metadata={_OPTION: option})


def options(block: type[ConfigBlock]) -> Iterator[tuple[str, str, Option]]:
    """(attribute name, YAML key, option) of each field of `block`, in declaration order."""
    for field in attr.fields(block):
        option: Option = field.metadata[_OPTION]
        yield field.name, option.key or field.name, option


def _parse_block(cls: type[B], value: Any, path: Path) -> B:
    raw = _mapping(value, path)
    fields = list(options(cls))
    _reject_unknown(raw, {key for _, key, _ in fields}, path)
    block = cls(
        **{
            name: option.parse(raw.get(key, option.default), path + (key,))
            for name, key, option in fields
        }
    )
    block._check(path)
    return block


def _reject_unknown(raw: Mapping[str, Any], known: set[str], path: Path) -> None:
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"unknown key (known keys: {', '.join(sorted(known))})", path + (str(key),)
            )


# The kinds of value. Each takes the raw value and the path of its key.


def _expect(value: Any, kind: type[T], path: Path, what: str) -> T:
    # bool is an int subclass; a boolean is never a valid number here.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"expected {what}", path)
    return value


def _mapping(value: Any, path: Path) -> Mapping[str, Any]:
    if value is None:
        return {}
    return _expect(value, dict, path, "a mapping")


def _boolean(value: Any, path: Path) -> bool:
    return _expect(value, bool, path, "a boolean")


def _positive_int(value: Any, path: Path) -> int:
    value = _expect(value, int, path, "a positive integer")
    if value <= 0:
        raise ConfigError("expected a positive integer", path)
    return value


def _duration(value: Any, path: Path) -> int:
    """A positive duration in ms: an integer of ms, or a string like "30d", "12h", "10m"."""
    try:
        if isinstance(value, bool):
            raise TypeError
        ms = Config.parse_duration(value)
    except (TypeError, ValueError):
        raise ConfigError(
            'expected a duration (milliseconds, or a string like "30d", "12h", "10m")', path
        ) from None
    if ms <= 0:
        raise ConfigError("expected a positive duration", path)
    return ms


def _string(value: Any, path: Path) -> str:
    return _expect(value, str, path, "a string")


def _file_path(value: Any, path: Path) -> str:
    return _expect(value, str, path, "a file path")


def _url(value: Any, path: Path) -> str:
    url = _string(value, path)
    if not url.startswith(("http://", "https://")):
        raise ConfigError("expected an http:// or https:// URL", path)
    return url


def _server_names(value: Any, path: Path) -> tuple[str, ...]:
    """A list of Matrix server names (`example.org`, `example.org:8448`), without repeats."""
    items = _expect(value, list, path, "a list of server names")
    names: dict[str, None] = {}
    for i, item in enumerate(items):
        if not isinstance(item, str) or not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+", item):
            raise ConfigError("expected a server name", path + (str(i),))
        names[item] = None
    return tuple(names)


def _one_of(values: Sequence[str]) -> Parser:
    def parse(value: Any, path: Path) -> str:
        if value not in values:
            raise ConfigError(f"expected one of {', '.join(values)}", path)
        return value

    return parse


def _optional(parse: Parser) -> Parser:
    """The key may be absent or null, giving None."""
    return lambda value, path: None if value is None else parse(value, path)


def _nested(cls: type[ConfigBlock], *, optional: bool = False) -> Any:
    """A block of its own; when not `optional`, an absent or null block gives its defaults."""

    def parse(value: Any, path: Path) -> ConfigBlock:
        return _parse_block(cls, value, path)

    return _option(_optional(parse) if optional else parse, block=cls)


# The blocks, from the innermost.


@attr.s(frozen=True, auto_attribs=True, slots=True)
class UserDefaults(ConfigBlock):
    """Settings a user has until they change them with `PUT /settings`."""

    discoverable: bool = _option(_boolean, True)
    accept_requests_from: str = _option(_one_of(ACCEPT_REQUESTS_FROM_VALUES), "address_book")


@attr.s(frozen=True, auto_attribs=True, slots=True)
class PaymentProvider:
    """A payment provider whose ed25519-signed receipts prove a `provider` AA payment.

    Written as `{verify_key: "ed25519:<key_id> <unpadded base64 key>"}`, read into the key's id
    and the key.
    """

    name: str
    key_id: str  # "ed25519:<version>"
    verify_key: Any  # nacl VerifyKey, as signedjson uses it

    @classmethod
    def parse(cls, name: str, raw: Any, path: Path) -> PaymentProvider:
        raw = _mapping(raw, path)
        _reject_unknown(raw, {"verify_key"}, path)
        spec = _string(raw.get("verify_key"), path + ("verify_key",))
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


def _payment_providers(value: Any, path: Path) -> dict[str, PaymentProvider]:
    return {
        name: PaymentProvider.parse(name, spec, path + (name,))
        for name, spec in _mapping(value, path).items()
    }


def _base_url(value: Any, path: Path) -> str:
    return _url(value, path).rstrip("/")


@attr.s(frozen=True, auto_attribs=True, slots=True)
class CommerceConfig(ConfigBlock):
    """The commerce service (the shop platform and its payment provider): item and music
    cards, account links, subscriptions and provider payments. Off without `base_url`."""

    base_url: str | None = _option(_optional(_base_url))
    api_key: str | None = _option(_optional(_string))
    # The provider name the service signs receipts with; it must be in payment_providers.
    provider: str = _option(_string, "laiwang-pay")
    # Longest wait for one call to the service: a caller gets 503 within it.
    timeout_ms: int = _option(_duration, "5s", key="timeout")

    def _check(self, path: Path) -> None:
        if self.base_url is not None and not self.api_key:
            raise ConfigError("the commerce service needs its api_key", path + ("api_key",))

    @property
    def enabled(self) -> bool:
        return self.base_url is not None


@attr.s(frozen=True, auto_attribs=True, slots=True)
class DiscoveryConfig(ConfigBlock):
    """Phone-number discovery (`/discovery/…`) and its enumeration limits."""

    pepper_rotation_period_ms: int = _option(_duration, "7d", key="pepper_rotation_period")
    max_addresses_per_request: int = _option(_positive_int, 1000)
    max_addresses_per_day: int = _option(_positive_int, 10000)
    address_book_ttl_ms: int = _option(_duration, "90d", key="address_book_ttl")
    # Name this homeserver as `m.identity_server` in /.well-known/matrix/client when the
    # homeserver config names none (Synapse's `default_identity_server`).
    advertise_identity_server: bool = _option(_boolean, True)
    # Laiwang servers whose discoverable users a lookup also finds, and which may look up
    # this server's (both sides list each other). docs/api/discovery.md, "Across servers".
    peers: tuple[str, ...] = _option(_server_names, [])
    # How long a lookup waits for each peer; a peer that does not answer in time is named in
    # the answer's `unreachable_peers`.
    peer_timeout_ms: int = _option(_duration, "5s", key="peer_timeout")
    # Addresses all users of one peer server together may have evaluated here per UTC day (each
    # user of theirs also has `max_addresses_per_day`).
    peer_max_addresses_per_day: int = _option(_positive_int, 100000)
    # How long a peer's published set is used before it is fetched again (hiding on the peer
    # takes effect at once regardless: the peer filters what it resolves).
    peer_set_ttl_ms: int = _option(_duration, "10m", key="peer_set_ttl")


SMS_SENDERS = ("log", "http")
DEFAULT_SMS_MESSAGE = "Your Laiwang code is {code}"


@attr.s(frozen=True, auto_attribs=True, slots=True)
class SmsHttpConfig(ConfigBlock):
    """An HTTP SMS gateway: the module POSTs `{"to": "+<E.164>", "text": "…"}` to `url`."""

    url: str = _option(_url, required=True)
    bearer_token: str | None = _option(_optional(_string))


def _delegate_secret(value: Any, path: Path) -> str:
    secret = _string(value, path)
    if not re.fullmatch(r"[A-Za-z0-9_-]{16,}", secret):
        raise ConfigError("expected at least 16 characters of [A-Za-z0-9_-]", path)
    return secret


def _sms_message(value: Any, path: Path) -> str:
    message = _string(value, path)
    if "{code}" not in message:
        raise ConfigError("must contain {code}", path)
    return message


@attr.s(frozen=True, auto_attribs=True, slots=True)
class SmsConfig(ConfigBlock):
    """How validation codes for phone numbers reach the phone (the msisdn identity endpoints)."""

    sender: str = _option(_one_of(SMS_SENDERS), "log")
    # The log sender also appends JSON lines here.
    file: str | None = _option(_optional(_file_path))
    http: SmsHttpConfig | None = _nested(SmsHttpConfig, optional=True)
    code_ttl_ms: int = _option(_duration, "10m", key="code_ttl")
    max_attempts: int = _option(_positive_int, 5)
    max_per_number_per_day: int = _option(_positive_int, 10)
    # Per account asking (the module's requestToken endpoint needs a login).
    max_per_user_per_day: int = _option(_positive_int, 10)
    # What texts can cost in all: per country calling code, and in total, per UTC day.
    max_per_country_per_day: int = _option(_positive_int, 200)
    max_per_day: int = _option(_positive_int, 1000)
    # Synapse's /register/msisdn/requestToken needs no login and tells a bound number from a
    # free one: closed unless registration by phone is offered (callbacks/msisdn.py).
    allow_registration: bool = _option(_boolean, False)
    # The validation endpoints answer only under IDENTITY_PREFIX/<secret>; unset, the secret is
    # derived from Synapse's macaroon secret (rest/msisdn.py).
    delegate_secret: str | None = _option(_optional(_delegate_secret))
    message: str = _option(_sms_message, DEFAULT_SMS_MESSAGE)

    @property
    def phone_binding_used(self) -> bool:
        """Whether the operator means users to bind phone numbers through the module: a real
        SMS gateway, or registration by phone. Then Synapse must send phone validations to the
        module (homeserver_config.py)."""
        return self.sender == "http" or self.allow_registration

    def _check(self, path: Path) -> None:
        if self.sender == "http" and self.http is None:
            raise ConfigError("the http sender needs http.url", path + ("http",))


@attr.s(frozen=True, auto_attribs=True, slots=True)
class ClustersConfig(ConfigBlock):
    """Clusters (扎堆): how long `POST /clusters/{room_id}/join` waits for a knock's approval."""

    knock_wait_ms: int = _option(_duration, "30s", key="knock_wait")


@attr.s(frozen=True, auto_attribs=True, slots=True)
class WebConfig(ConfigBlock):
    """The web companion: static files served at /_synapse/client/laiwang/web/ (rest/web.py)."""

    enabled: bool = _option(_boolean, True)


@attr.s(frozen=True, auto_attribs=True, slots=True)
class UpkeepConfig(ConfigBlock):
    """How the module keeps its tables in step with the rooms (callbacks/events.py)."""

    # A failed update is retried after this, then after twice as long each time, up to an hour.
    retry_interval_ms: int = _option(_duration, "5s", key="retry_interval")
    # How often the whole index is re-derived from the rooms (also once at start-up).
    reconcile_interval_ms: int = _option(_duration, "1h", key="reconcile_interval")
    # A multi-step operation (timeline creation, knock approval, provider payment) not finished
    # this long after it started is taken for one whose process died, and finished by the job.
    unfinished_after_ms: int = _option(_duration, "1m", key="unfinished_after")


# The features whose `on_new_event` updates `testing.fail_updates` can break.
UPDATE_FEATURES = ("aa", "contacts", "shares", "clusters")


def _fail_updates(value: Any, path: Path) -> dict[str, int]:
    raw = _mapping(value, path)
    out = {}
    for feature, every in raw.items():
        if feature not in UPDATE_FEATURES:
            raise ConfigError(f"expected one of {', '.join(UPDATE_FEATURES)}", path + (feature,))
        out[feature] = _positive_int(every, path + (feature,))
    return out


# The places in multi-step operations where `testing.crash_at` can kill the process
# (laiwang_module/crash_points.py).
CRASH_POINTS = (
    "timeline_created",
    "timeline_recorded",
    "knock_claimed",
    "payment_answered",
    "payment_charged",
)


def _crash_at(value: Any, path: Path) -> dict[str, str]:
    raw = _mapping(value, path)
    out = {}
    for point, subject in raw.items():
        if point not in CRASH_POINTS:
            raise ConfigError(f"expected one of {', '.join(CRASH_POINTS)}", path + (point,))
        if not isinstance(subject, str) or not subject:
            raise ConfigError("expected a non-empty string", path + (point,))
        out[point] = subject
    return out


@attr.s(frozen=True, auto_attribs=True, slots=True)
class TestingConfig(ConfigBlock):
    """Failure injection for the end-to-end tests. Never set it on a real server."""

    # {feature: n}: every n-th `on_new_event` update of the feature fails (its retries do not).
    fail_updates: Mapping[str, int] = _option(_fail_updates, {})
    # {point: text}: the process dies at that point of an operation for a user whose id
    # contains the text, as `kill -9` would.
    crash_at: Mapping[str, str] = _option(_crash_at, {})


@attr.s(frozen=True, auto_attribs=True, slots=True)
class LaiwangConfig(ConfigBlock):
    acquaintances_only: bool = _option(_boolean, True)
    defaults: UserDefaults = _nested(UserDefaults)
    payment_providers: Mapping[str, PaymentProvider] = _option(_payment_providers, {})
    commerce: CommerceConfig = _nested(CommerceConfig)
    # Largest request body any endpoint accepts; larger bodies get 413 M_TOO_LARGE.
    max_body_bytes: int = _option(_positive_int, 65536)
    discovery: DiscoveryConfig = _nested(DiscoveryConfig)
    sms: SmsConfig = _nested(SmsConfig)
    clusters: ClustersConfig = _nested(ClustersConfig)
    web: WebConfig = _nested(WebConfig)
    upkeep: UpkeepConfig = _nested(UpkeepConfig)
    testing: TestingConfig = _nested(TestingConfig)

    def _check(self, path: Path) -> None:
        # Provider payments send the service's receipts, which every server checks against
        # payment_providers: this server too, before it sends one.
        if self.commerce.enabled and self.commerce.provider not in self.payment_providers:
            raise ConfigError(
                f"the commerce provider {self.commerce.provider!r} must be listed in"
                " payment_providers with the service's verify key",
                path + ("commerce", "provider"),
            )


def parse_config(raw: Any) -> LaiwangConfig:
    """Parse the module's `config:` block. `None` and `{}` give the defaults."""
    return _parse_block(LaiwangConfig, raw, ())
