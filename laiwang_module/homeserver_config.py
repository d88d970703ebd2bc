"""The homeserver settings the module needs beside its own block, checked when it is built.

Synapse checks its own settings and the module's block (config.py) when it parses them, but a
homeserver.yaml without these starts fine and the module then fails quietly: without
`room_prejoin_state`, invites leave without the contact request, and every other server refuses
this server's contact requests as a stranger's invites. So the module refuses to start, on every
process, with a ConfigError that names the setting and gives the YAML to add.

Not checked, because nothing fails without it: `ip_range_whitelist` for a loopback msisdn
delegate URL (Synapse calls the delegate with its unrestricted HTTP client, as it does every URL
its own config names).
"""

from __future__ import annotations

from collections.abc import Callable

from synapse.module_api import ModuleApi

from laiwang_module.config import HomeserverConfigError, LaiwangConfig, SmsConfig
from laiwang_module.rest.msisdn import IDENTITY_PREFIX
from laiwang_module.synapse_compat import (
    default_room_version,
    msisdn_delegate_url,
    prejoin_state_includes,
    public_baseurl,
)
from rooms.clusters import CLUSTER_STATE
from rooms.contacts import ACQUAINTANCE_STATE
from rooms.shares import TIMELINE_STATE

# The state invites and knocks must carry (their state key is ""), in the order the docs list.
PREJOIN_STATE_TYPES = (ACQUAINTANCE_STATE, CLUSTER_STATE, TIMELINE_STATE)


def check_homeserver_config(api: ModuleApi, config: LaiwangConfig) -> None:
    """Raise HomeserverConfigError naming the first homeserver setting that is missing."""
    check_prejoin_state(lambda event_type: prejoin_state_includes(api, event_type, ""))
    check_msisdn_delegate(config.sms, msisdn_delegate_url(api), public_baseurl(api))
    check_room_version(*default_room_version(api))


def _yaml(lines: list[str]) -> str:
    # Indented under the message, as Synapse indents a ConfigError's text.
    return "\n".join("      " + line for line in lines)


def check_prejoin_state(includes: Callable[[str], bool]) -> None:
    missing = [t for t in PREJOIN_STATE_TYPES if not includes(t)]
    if not missing:
        return
    lines = ["room_prejoin_state:", "  additional_event_types:"]
    lines += [f"    - {t}" for t in PREJOIN_STATE_TYPES]
    verb = "is" if len(missing) == 1 else "are"
    raise HomeserverConfigError(
        f"Laiwang needs invites and knocks to carry its room state, and {', '.join(missing)}"
        f" {verb} not listed: other servers would refuse this server's contact requests as"
        " strangers' invites, and could not tell its clusters and timelines from plain rooms."
        " Add to homeserver.yaml (keeping any types already listed there):\n\n" + _yaml(lines),
        ("room_prejoin_state", "additional_event_types"),
    )


def check_msisdn_delegate(sms: SmsConfig, url: str | None, base_url: str) -> None:
    """When phone numbers are bound through the module, Synapse must ask the module to validate
    them (the secret in a URL naming the module is checked by rest/msisdn.py)."""
    if not sms.phone_binding_used:
        return
    if url is not None and IDENTITY_PREFIX in url:
        return
    why = "sms.sender is http" if sms.sender == "http" else "sms.allow_registration is true"
    problem = (
        "is not set: Synapse would refuse every request to add a phone number"
        if url is None
        else "names another identity server: codes would come from there, never from the"
        " module's SMS sender"
    )
    lines = ["account_threepid_delegates:", f"  msisdn: {base_url.rstrip('/')}{IDENTITY_PREFIX}"]
    raise HomeserverConfigError(
        f"Laiwang binds phone numbers ({why}), but account_threepid_delegates.msisdn"
        f" {problem}. Add to homeserver.yaml (the module's validation endpoints, on this"
        " server's public base URL):\n\n" + _yaml(lines),
        ("account_threepid_delegates", "msisdn"),
    )


def check_room_version(identifier: str, supports_knock: bool) -> None:
    """Clusters are joined by knocking, which room versions before 7 lack; rooms the module
    creates get Synapse's default room version."""
    if supports_knock:
        return
    raise HomeserverConfigError(
        f"default_room_version is {identifier}, which has no knocking: Laiwang's clusters are"
        " joined by knocking (room version 7 or later). Remove the setting to get Synapse's"
        " default, or set it in homeserver.yaml:\n\n" + _yaml(['default_room_version: "10"']),
        ("default_room_version",),
    )
