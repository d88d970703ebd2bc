"""The start-up checks of homeserver settings (laiwang_module/homeserver_config.py); the e2e
test that Synapse stops on them is in tests/e2e/test_foundation.py."""

import traceback

import pytest
from synapse.config._base import ConfigError

from laiwang_module.config import parse_config
from laiwang_module.homeserver_config import (
    check_msisdn_delegate,
    check_prejoin_state,
    check_room_version,
)

BASE = "https://matrix.example.org/"
IDENTITY = "https://matrix.example.org/_synapse/client/laiwang/identity"


def shown(e: ConfigError) -> str:
    """What the operator sees: the last line(s) of Synapse's start-up traceback."""
    return "".join(traceback.format_exception_only(type(e), e))


def test_prejoin_state_complete_passes():
    check_prejoin_state(lambda t: True)


def test_prejoin_state_missing_names_the_setting_and_the_yaml():
    with pytest.raises(ConfigError) as info:
        check_prejoin_state(lambda t: t == "org.laiwang.acquaintance")
    assert info.value.path == ("room_prejoin_state", "additional_event_types")
    text = shown(info.value)
    assert "Error in configuration at 'room_prejoin_state.additional_event_types':" in text
    assert "org.laiwang.cluster, org.laiwang.timeline are not listed" in text
    # The YAML to add lists all three types, as a block to paste.
    assert (
        "      room_prejoin_state:\n"
        "        additional_event_types:\n"
        "          - org.laiwang.acquaintance\n"
        "          - org.laiwang.cluster\n"
        "          - org.laiwang.timeline"
    ) in text


@pytest.mark.parametrize(
    "sms",
    [{}, {"sender": "log", "file": "/tmp/x"}],
)
def test_no_phone_binding_needs_no_delegate(sms):
    check_msisdn_delegate(parse_config({"sms": sms}).sms, None, BASE)


@pytest.mark.parametrize(
    "sms, why",
    [
        ({"sender": "http", "http": {"url": "https://gw.example/send"}}, "sms.sender is http"),
        ({"allow_registration": True}, "sms.allow_registration is true"),
    ],
)
def test_phone_binding_without_delegate_stops(sms, why):
    config = parse_config({"sms": sms}).sms
    with pytest.raises(ConfigError) as info:
        check_msisdn_delegate(config, None, BASE)
    assert info.value.path == ("account_threepid_delegates", "msisdn")
    text = shown(info.value)
    assert f"Laiwang binds phone numbers ({why})" in text
    assert "account_threepid_delegates.msisdn is not set" in text
    assert f"      account_threepid_delegates:\n        msisdn: {IDENTITY}" in text
    # Pointing at another identity server does not help either.
    with pytest.raises(ConfigError, match="names another identity server"):
        check_msisdn_delegate(config, "https://vector.im", BASE)
    # The module's endpoints, with or without the secret, do.
    check_msisdn_delegate(config, IDENTITY, BASE)
    check_msisdn_delegate(config, IDENTITY + "/secret-secret-secret", BASE)


def test_room_version_without_knocking_stops():
    check_room_version("10", True)
    with pytest.raises(ConfigError) as info:
        check_room_version("6", False)
    assert info.value.path == ("default_room_version",)
    assert "default_room_version is 6, which has no knocking" in shown(info.value)
