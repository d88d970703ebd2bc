"""Pure parts of binding a phone number (rooms/msisdn.py): E.164 normalisation, the
requestToken and submitToken bodies, sealed session numbers, codes, the devserver's delegate
path, and the sms config keys."""

from __future__ import annotations

import hashlib
import logging
import re

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from synapse.config._base import ConfigError
from synapse.util.msisdn import phone_number_to_msisdn

from devtools.devserver import MSISDN_DELEGATE_PATH
from laiwang_module import LaiwangModule
from laiwang_module.log_redaction import redact_in_logs
from laiwang_module.rest.msisdn import IDENTITY_PREFIX
from rooms.errors import InvalidParam, ValidationError
from rooms.msisdn import (
    code_hash,
    code_matches,
    delegate_secret_from,
    masked,
    new_code,
    normalise_msisdn,
    normalise_stored_msisdn,
    seal_address,
    session_lookup_key,
    sms_number_key,
    unseal_address,
    validate_request_token,
    validate_submit_token,
)


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


KEY = b"server-key"


@given(
    st.text("0123456789", min_size=8, max_size=15),
    st.text("abcXYZ019.=_-", min_size=1, max_size=60),
)
def test_seal_round_trip_needs_the_secret_and_the_server_key(msisdn, secret):
    sealed = seal_address(KEY, msisdn, secret, "sid1")
    assert msisdn not in sealed
    assert unseal_address(KEY, sealed, secret, "sid1") == msisdn
    assert unseal_address(KEY, sealed, secret + "x", "sid1") is None
    assert unseal_address(KEY, sealed, secret, "sid2") is None  # bound to its session
    # A one-character client secret (the spec allows it) is no help without the server key.
    assert unseal_address(b"other-key", sealed, secret, "sid1") is None


def test_unseal_of_garbage_is_none():
    assert unseal_address(KEY, "!!!", "s", "sid") is None
    assert unseal_address(KEY, "", "s", "sid") is None


def test_codes():
    code = new_code()
    assert len(code) == 6 and code.isdigit()
    stored = code_hash("sid", code)
    assert code not in stored
    assert code_matches("sid", code, stored)
    assert not code_matches("other", code, stored)
    assert not code_matches("sid", "x" + code, stored)


def test_session_key_and_mask_hide_the_number():
    key = session_lookup_key(KEY, "secret", "8613800138000")
    assert "13800138000" not in key and key != session_lookup_key(KEY, "secret2", "8613800138000")
    assert key != session_lookup_key(b"other-key", "secret", "8613800138000")
    assert masked("8613800138000") == "+***********00"


def test_sms_counter_key_is_keyed_with_the_server_key():
    # A database thief who hashes every number the unkeyed way finds nothing.
    msisdn = "8613800138000"
    key = sms_number_key(KEY, msisdn)
    assert key != hashlib.sha256(f"laiwang-sms\x00{msisdn}".encode()).hexdigest()
    assert key != sms_number_key(b"other-key", msisdn) and msisdn not in key


def test_delegate_secret_is_derived_from_the_server_key():
    secret = delegate_secret_from(KEY)
    assert secret == delegate_secret_from(KEY) != delegate_secret_from(b"other-key")
    assert len(secret) == 32 and re.fullmatch(r"[A-Za-z0-9_-]+", secret)


@pytest.mark.parametrize("secret", ["a", "x" * 255, "A.b=c_d-0"])
def test_client_secret_follows_the_spec(secret):
    body = {"client_secret": secret, "country": "CN", "phone_number": "13800138000"}
    assert validate_request_token({**body, "send_attempt": 1}).client_secret == secret


@pytest.mark.parametrize("secret", ["", "x" * 256, "a b", "a/b", "a+b"])
def test_client_secret_outside_the_spec_is_refused(secret):
    body = {"client_secret": secret, "country": "CN", "phone_number": "13800138000"}
    with pytest.raises(ValidationError):
        validate_request_token({**body, "send_attempt": 1})


def test_log_redaction_hides_secrets_and_number_links(caplog):
    redact_in_logs(["sekret-0123456789"])
    log = logging.getLogger("synapse.access.http.8008")
    with caplog.at_level(logging.INFO):
        log.info("POST /identity/%s/_matrix/identity/api/v1 200", "sekret-0123456789")
        logging.getLogger("synapse.rest.client.account").info(
            "MSISDN %s is already in use by %s", "8613800138000", "@hidden:hs"
        )
    text = caplog.text
    assert "sekret-0123456789" not in text and "/identity/<redacted>/_matrix" in text
    assert "8613800138000" not in text and "@hidden:hs" not in text


def test_devserver_points_the_delegate_at_the_module():
    assert MSISDN_DELEGATE_PATH == IDENTITY_PREFIX


@pytest.mark.parametrize(
    "raw, path",
    [
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
        ({"sms": {"max_per_country_per_day": 0}}, ("sms", "max_per_country_per_day")),
        ({"sms": {"max_per_day": -1}}, ("sms", "max_per_day")),
        ({"sms": {"delegate_secret": "short"}}, ("sms", "delegate_secret")),
        ({"sms": {"delegate_secret": "has spaces in it, sixteen+"}}, ("sms", "delegate_secret")),
        ({"sms": {"delegate_secret": 1234567890123456789}}, ("sms", "delegate_secret")),
        ({"sms": {"code_ttl": "10 minutes"}}, ("sms", "code_ttl")),
        ({"sms": {"message": "no code here"}}, ("sms", "message")),
    ],
)
def test_bad_sms_config_names_the_key(raw, path):
    with pytest.raises(ConfigError) as e:
        LaiwangModule.parse_config(raw)
    assert tuple(e.value.path or ()) == path
