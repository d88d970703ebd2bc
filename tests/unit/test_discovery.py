"""Pure parts of discovery and phone validation: the MSC2134 hash, E.164 normalisation, the
lookup and token-request bodies, sealed session numbers, and the config keys."""

from __future__ import annotations

import hashlib
from base64 import urlsafe_b64encode

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from synapse.config._base import ConfigError
from synapse.util.hash import sha256_and_url_safe_base64
from synapse.util.msisdn import phone_number_to_msisdn

from devtools.devserver import MSISDN_DELEGATE_PATH
from laiwang_module import LaiwangModule
from laiwang_module.rest.msisdn import IDENTITY_PREFIX
from rooms.discovery import (
    PEPPER_RE,
    hash_key,
    is_lookup_hash,
    lookup_hash,
    new_pepper,
    validate_lookup,
)
from rooms.errors import InvalidParam, MissingParam, ValidationError
from rooms.msisdn import (
    code_hash,
    code_matches,
    masked,
    new_code,
    normalise_msisdn,
    normalise_stored_msisdn,
    seal_address,
    session_lookup_key,
    unseal_address,
    validate_request_token,
    validate_submit_token,
)

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


@pytest.mark.parametrize(
    "number, country, msisdn",
    [
        ("13800138000", "CN", "8613800138000"),
        ("+86 138 0013 8000", None, "8613800138000"),
        ("+86-138-0013-8000", "GB", "8613800138000"),  # an international form wins
        ("07470 674927", "GB", "447470674927"),
        ("(202) 555-0123", "us", "12025550123"),
        ("030 1234567", "DE", "49301234567"),
    ],
)
def test_normalise_to_e164_digits(number, country, msisdn):
    assert normalise_msisdn(number, country) == msisdn


@pytest.mark.parametrize(
    "number, country", [("12", "CN"), ("hello", "CN"), ("", "CN"), ("13800138000", None)]
)
def test_normalise_refuses_what_is_not_a_number(number, country):
    with pytest.raises(InvalidParam):
        normalise_msisdn(number, country)


@given(st.integers(min_value=10**9, max_value=10**11 - 1))
def test_normalise_agrees_with_synapse(n):
    # Synapse normalises before it proxies to us; both must give the same msisdn.
    national = "1" + str(n)[:10]
    try:
        theirs = phone_number_to_msisdn("CN", national)
    except Exception:
        return
    try:
        ours = normalise_msisdn(national, "CN")
    except InvalidParam:
        assert not phonenumbers.is_possible_number(phonenumbers.parse(national, "CN"))
        return
    assert ours == theirs


@given(st.sampled_from(["8613800138000", "447470674927", "12025550123"]))
def test_stored_numbers_in_other_spellings_normalise(msisdn):
    assert normalise_stored_msisdn(msisdn) == msisdn
    assert normalise_stored_msisdn("+" + msisdn) == msisdn
    assert normalise_stored_msisdn(f" +{msisdn[:2]} {msisdn[2:]} ") == msisdn


def test_stored_garbage_is_skipped():
    assert normalise_stored_msisdn("not a number") is None
    assert normalise_stored_msisdn("1") is None


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


def token_body(**over):
    body: dict[str, object] = {"client_secret": "s3cr.t=_-", "country": "CN"}
    body.update(phone_number="13800138000", send_attempt=1)
    body.update(over)
    return body


def test_token_request_is_normalised():
    req = validate_request_token(token_body())
    assert (req.msisdn, req.send_attempt) == ("8613800138000", 1)
    assert validate_request_token(
        token_body(country="", phone_number="+44 7470 674927")
    ).msisdn == ("447470674927")


@pytest.mark.parametrize(
    "over",
    [
        {"client_secret": ""},
        {"client_secret": "with space"},
        {"client_secret": "x" * 256},
        {"client_secret": 5},
        {"country": "CHN"},
        {"country": 86},
        {"phone_number": 13800138000},
        {"phone_number": "12"},
        {"send_attempt": "1"},
        {"send_attempt": 1.0},
        {"send_attempt": -1},
        {"send_attempt": True},
        {"phone_number": None},
    ],
)
def test_bad_token_requests(over):
    with pytest.raises(ValidationError):
        validate_request_token(token_body(**over))


def test_submit_token_body():
    s = validate_submit_token({"sid": "abc", "client_secret": "x", "token": " 123456 "})
    assert (s.sid, s.token) == ("abc", "123456")
    with pytest.raises(ValidationError):
        validate_submit_token({"sid": 1, "client_secret": "x", "token": "1"})


@given(
    st.text("0123456789", min_size=8, max_size=15),
    st.text("abcXYZ019.=_-", min_size=1, max_size=60),
)
def test_seal_round_trip_needs_the_secret(msisdn, secret):
    sealed = seal_address(msisdn, secret, "sid1")
    assert msisdn not in sealed
    assert unseal_address(sealed, secret, "sid1") == msisdn
    assert unseal_address(sealed, secret + "x", "sid1") is None
    assert unseal_address(sealed, secret, "sid2") is None  # bound to its session


def test_unseal_of_garbage_is_none():
    assert unseal_address("!!!", "s", "sid") is None
    assert unseal_address("", "s", "sid") is None


def test_codes():
    code = new_code()
    assert len(code) == 6 and code.isdigit()
    stored = code_hash("sid", code)
    assert code not in stored
    assert code_matches("sid", code, stored)
    assert not code_matches("other", code, stored)
    assert not code_matches("sid", "x" + code, stored)


def test_session_key_and_mask_hide_the_number():
    key = session_lookup_key("secret", "8613800138000")
    assert "13800138000" not in key and key != session_lookup_key("secret2", "8613800138000")
    assert masked("8613800138000") == "+***********00"


def test_devserver_points_the_delegate_at_the_module():
    assert MSISDN_DELEGATE_PATH == IDENTITY_PREFIX


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
        ({"sms": {"sender": "pigeon"}}, ("sms", "sender")),
        ({"sms": {"sender": "http"}}, ("sms", "http")),
        ({"sms": {"http": {"url": "ftp://x"}}}, ("sms", "http", "url")),
        (
            {"sms": {"http": {"url": "http://x", "bearer_token": 5}}},
            ("sms", "http", "bearer_token"),
        ),
        ({"sms": {"file": 5}}, ("sms", "file")),
        ({"sms": {"max_attempts": 0}}, ("sms", "max_attempts")),
        ({"sms": {"max_per_number_per_day": "10"}}, ("sms", "max_per_number_per_day")),
        ({"sms": {"delegate_secret": "short"}}, ("sms", "delegate_secret")),
        ({"sms": {"delegate_secret": "has spaces in it, sixteen+"}}, ("sms", "delegate_secret")),
        ({"sms": {"delegate_secret": 1234567890123456789}}, ("sms", "delegate_secret")),
        ({"sms": {"code_ttl": "10 minutes"}}, ("sms", "code_ttl")),
        ({"sms": {"message": "no code here"}}, ("sms", "message")),
    ],
)
def test_bad_discovery_config_names_the_key(raw, path):
    with pytest.raises(ConfigError) as e:
        LaiwangModule.parse_config(raw)
    assert tuple(e.value.path or ()) == path
