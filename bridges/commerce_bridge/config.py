"""The bridge's config file and its application-service registration.

Required: `homeserver: {address, domain}`, `appservice: {hostname, port, address, database}`
and `commerce: {base_url, api_key}`; every other key has a default. `-g` writes the registration
and stores the tokens it generated back into the config file, as mautrix bridges do.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import attr
import yaml

BOT_LOCALPART = "commerce"
GHOST_PREFIX = "shop_"
ALIAS_PREFIX = "shop_"
DEFAULT_ID = "laiwang-commerce"

EXAMPLE_CONFIG = """\
# The commerce bridge (laiwang-commerce-bridge). Required keys are marked; the rest are defaults.
homeserver:
    # Where the bridge reaches the homeserver's client API (required).
    address: http://127.0.0.1:8008
    # The homeserver's server name (required).
    domain: example.org
appservice:
    # Where the bridge listens for the homeserver's transactions (required).
    hostname: 127.0.0.1
    port: 29340
    # How the homeserver reaches that listener (required; goes into the registration).
    address: http://127.0.0.1:29340
    # A SQLite path (relative to this file) or URL (sqlite:///abs/path.db), or a PostgreSQL URL
    # (postgres://user:pass@host/db; needs asyncpg) (required).
    database: commerce-bridge.db
    # The registration's id and the bot's localpart.
    id: laiwang-commerce
    bot_username: commerce
    # Filled in by `laiwang-commerce-bridge -c this.yaml -g -r registration.yaml`.
    as_token: null
    hs_token: null
commerce:
    # The commerce service (mock) and its API key (required).
    base_url: http://127.0.0.1:8090
    api_key: CHANGE-ME
    # How long one long poll of the event stream waits, in milliseconds.
    poll_timeout_ms: 30000
logging:
    level: INFO
"""


class ConfigError(Exception):
    pass


def _get(raw: dict[str, Any], path: str, kind: type, default: Any = None) -> Any:
    node: Any = raw
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if node is None:
        if default is None:
            raise ConfigError(f"{path} is required")
        return default
    if kind is int and (isinstance(node, bool) or not isinstance(node, int)):
        raise ConfigError(f"{path} must be an integer")
    if kind is str and not (isinstance(node, str) and node):
        raise ConfigError(f"{path} must be a non-empty string")
    return node


def database_url(value: str, base: Path) -> str:
    """A SQLite path (relative to the config file) or a database URL."""
    if re.match(r"^[a-z][a-z0-9+]*:", value):
        return value
    path = Path(value)
    return f"sqlite:///{path if path.is_absolute() else (base / path).resolve()}"


@attr.s(frozen=True, slots=True, auto_attribs=True)
class BridgeConfig:
    path: Path
    raw: dict[str, Any]
    hs_address: str
    domain: str
    hostname: str
    port: int
    address: str
    database: str
    id: str
    bot_username: str
    as_token: str | None
    hs_token: str | None
    commerce_url: str
    commerce_api_key: str
    poll_timeout_ms: int
    log_level: str

    @classmethod
    def load(cls, path: Path) -> BridgeConfig:
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read {path}: {e}") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must hold a YAML mapping")
        return cls(
            path=path,
            raw=raw,
            hs_address=_get(raw, "homeserver.address", str).rstrip("/"),
            domain=_get(raw, "homeserver.domain", str),
            hostname=_get(raw, "appservice.hostname", str),
            port=_get(raw, "appservice.port", int),
            address=_get(raw, "appservice.address", str).rstrip("/"),
            database=database_url(_get(raw, "appservice.database", str), path.parent),
            id=_get(raw, "appservice.id", str, DEFAULT_ID),
            bot_username=_get(raw, "appservice.bot_username", str, BOT_LOCALPART),
            as_token=(raw.get("appservice") or {}).get("as_token"),
            hs_token=(raw.get("appservice") or {}).get("hs_token"),
            commerce_url=_get(raw, "commerce.base_url", str).rstrip("/"),
            commerce_api_key=_get(raw, "commerce.api_key", str),
            poll_timeout_ms=_get(raw, "commerce.poll_timeout_ms", int, 30000),
            log_level=str(_get(raw, "logging.level", str, "INFO")),
        )

    def registration(self) -> dict[str, Any]:
        if not self.as_token or not self.hs_token:
            raise ConfigError("appservice.as_token and hs_token are not set: generate them (-g)")
        domain = re.escape(self.domain)
        return {
            "id": self.id,
            "url": self.address,
            "as_token": self.as_token,
            "hs_token": self.hs_token,
            "sender_localpart": self.bot_username,
            "rate_limited": False,
            "namespaces": {
                "users": [
                    {"regex": f"@{re.escape(self.bot_username)}:{domain}", "exclusive": True},
                    {"regex": f"@{GHOST_PREFIX}.*:{domain}", "exclusive": True},
                ],
                "aliases": [{"regex": f"#{ALIAS_PREFIX}.*:{domain}", "exclusive": True}],
                "rooms": [],
            },
        }


def generate_registration(config_path: Path, registration_path: Path) -> None:
    """New tokens into the config file, and the registration for the homeserver."""
    config = BridgeConfig.load(config_path)
    raw = config.raw
    appservice = raw.setdefault("appservice", {})
    appservice["as_token"] = secrets.token_urlsafe(32)
    appservice["hs_token"] = secrets.token_urlsafe(32)
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    config = BridgeConfig.load(config_path)
    registration_path.write_text(yaml.safe_dump(config.registration(), sort_keys=False))


def ghost_localpart(shop_id: str) -> str:
    return f"{GHOST_PREFIX}{shop_id}"


def alias_localpart(shop_id: str) -> str:
    return f"{ALIAS_PREFIX}{shop_id}"
