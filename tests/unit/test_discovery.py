"""Pure parts of discovery (rooms/discovery.py): the MSC2134 hash, peppers, the lookup body,
and the discovery config (its defaults test reads the sms defaults too). Phone-number
normalisation, tokens and codes are in test_msisdn.py."""

from __future__ import annotations

import hashlib
from base64 import urlsafe_b64encode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from synapse.config._base import ConfigError
from synapse.util.hash import sha256_and_url_safe_base64

from laiwang_module import LaiwangModule
from rooms.discovery import (
    PEPPER_RE,
    hash_key,
    is_lookup_hash,
    lookup_hash,
    new_pepper,
    validate_lookup,
)
from rooms.errors import InvalidParam, MissingParam, ValidationError

digits = st.text("0123456789", min_size=6, max_size=15)
peppers = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1)


def test_hash_is_the_contract_formula_on_a_known_value():
    # unpadded_urlsafe_b64(sha256("<msisdn> msisdn <pepper>")), computed independently.
    digest = hashlib.sha256(b"8613800000001 msisdn matrixrocks").digest()
    expected = urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert lookup_hash("8613800000001", "matrixrocks") == expected
    assert "=" not in expected and len(expected) == 43


@given(digits, peppers)
def test_hash_matches_synapse_identity_client(msisdn, pepper):
    # Synapse's own MSC2134 client hashes "<address> <medium> <pepper>" the same way.
    ours = lookup_hash(msisdn, pepper)
    assert ours == sha256_and_url_safe_base64(f"{msisdn} msisdn {pepper}")
    assert is_lookup_hash(ours)


@given(digits, peppers, peppers)
def test_another_pepper_gives_another_hash(msisdn, p1, p2):
    if p1 != p2:
        assert lookup_hash(msisdn, p1) != lookup_hash(msisdn, p2)


@given(digits, peppers)
def test_hash_key_is_the_first_64_bits_of_the_digest(msisdn, pepper):
    digest = hashlib.sha256(f"{msisdn} msisdn {pepper}".encode()).digest()
    key = hash_key(lookup_hash(msisdn, pepper))
    assert key == int.from_bytes(digest[:8], "big", signed=True)
    assert -(2**63) <= key < 2**63  # fits a BIGINT


def test_new_peppers_are_valid_and_fresh():
    seen = {new_pepper() for _ in range(50)}
    assert len(seen) == 50
    assert all(PEPPER_RE.match(p) and len(p) >= 32 for p in seen)


def good_lookup(**over):
    body = {"algorithm": "sha256", "pepper": "abc", "addresses": [lookup_hash("861", "abc")]}
    body.update(over)
    return body


def test_lookup_body_is_parsed_and_deduplicated():
    h1, h2 = lookup_hash("8613800138000", "p"), lookup_hash("8613800138001", "p")
    req = validate_lookup(good_lookup(pepper="p", addresses=[h1, h2, h1]))
    assert req.addresses == (h1, h2)
    assert validate_lookup(good_lookup(addresses=[])).addresses == ()


@pytest.mark.parametrize(
    "over, error",
    [
        ({"algorithm": "md5"}, InvalidParam),
        ({"algorithm": "none"}, InvalidParam),
        ({"algorithm": None}, MissingParam),
        ({"algorithm": ["sha256"]}, InvalidParam),
        ({"pepper": 1}, InvalidParam),
        ({"pepper": None}, MissingParam),
        ({"addresses": None}, MissingParam),
        ({"addresses": "abc"}, InvalidParam),
        ({"addresses": {"a": 1}}, InvalidParam),
        ({"addresses": [None]}, InvalidParam),
        ({"addresses": ["A" * 42]}, InvalidParam),
        ({"addresses": ["A" * 44]}, InvalidParam),
        ({"addresses": ["+" * 43]}, InvalidParam),  # standard, not URL-safe, base64
    ],
)
def test_bad_lookup_bodies(over, error):
    with pytest.raises(error):
        validate_lookup(good_lookup(**over))


@given(st.lists(st.one_of(st.text(), st.integers(), st.none(), st.booleans()), max_size=5))
def test_lookup_validation_never_crashes(addresses):
    try:
        validate_lookup(good_lookup(addresses=addresses))
    except ValidationError:
        pass


def test_discovery_and_sms_config_defaults():
    config = LaiwangModule.parse_config({})
    assert config.discovery.max_addresses_per_request == 1000
    assert config.discovery.max_addresses_per_day == 10000
    assert config.discovery.pepper_rotation_period_ms == 7 * 24 * 3600 * 1000
    assert config.sms.sender == "log" and config.sms.max_attempts == 5
    parsed = LaiwangModule.parse_config(
        {
            "discovery": {"pepper_rotation_period": "1h", "address_book_ttl": 60000},
            "sms": {"sender": "http", "http": {"url": "https://sms.example/send"}},
        }
    )
    assert parsed.discovery.pepper_rotation_period_ms == 3600 * 1000
    assert parsed.discovery.address_book_ttl_ms == 60000
    assert parsed.sms.http is not None and parsed.sms.http.url == "https://sms.example/send"


@pytest.mark.parametrize(
    "raw, path",
    [
        ({"discovery": []}, ("discovery",)),
        ({"discovery": {"surprise": 1}}, ("discovery", "surprise")),
        (
            {"discovery": {"pepper_rotation_period": "soon"}},
            ("discovery", "pepper_rotation_period"),
        ),
        ({"discovery": {"pepper_rotation_period": 0}}, ("discovery", "pepper_rotation_period")),
        ({"discovery": {"pepper_rotation_period": True}}, ("discovery", "pepper_rotation_period")),
        (
            {"discovery": {"max_addresses_per_request": 0}},
            ("discovery", "max_addresses_per_request"),
        ),
        ({"discovery": {"max_addresses_per_day": "9"}}, ("discovery", "max_addresses_per_day")),
        ({"discovery": {"address_book_ttl": -5}}, ("discovery", "address_book_ttl")),
    ],
)
def test_bad_discovery_config_names_the_key(raw, path):
    with pytest.raises(ConfigError) as e:
        LaiwangModule.parse_config(raw)
    assert tuple(e.value.path or ()) == path


def test_a_failing_index_build_does_not_stop_expiry():
    import asyncio
    from types import SimpleNamespace

    from laiwang_module.handlers.discovery import DiscoveryHandler

    purged: list[str] = []

    class Store:
        async def get_pepper_state(self) -> object:
            return SimpleNamespace(built=False, gen=1, pepper="p")

        async def get_msisdn_threepids_page(self, after: object, limit: int) -> list:
            raise RuntimeError("index build failed")

        def __getattr__(self, name: str) -> object:
            async def purge(*args: object) -> None:
                purged.append(name)

            return purge

    server = SimpleNamespace(
        store=Store(),
        api=SimpleNamespace(get_current_time_msec=lambda: 10**12),
        config=SimpleNamespace(discovery=None, defaults=SimpleNamespace(discoverable=True)),
        discovery_peers_handler=SimpleNamespace(peers=(), forget_old_peers=Store().forget_peers),
    )
    handler = DiscoveryHandler(server)  # type: ignore[arg-type]
    asyncio.run(handler.maintain())
    assert purged == [
        "purge_expired_address_book",
        "purge_old_lookup_usage",
        "purge_expired_msisdn_sessions",
        "purge_old_sms_sends",
        "forget_peers",
    ]
