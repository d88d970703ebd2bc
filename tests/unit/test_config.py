import pytest
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from synapse.config._base import ConfigError

from laiwang_module import LaiwangModule
from laiwang_module.config import LaiwangConfig


def test_empty_config_gives_defaults():
    raws: list[dict | None] = [{}, None]
    for raw in raws:
        config = LaiwangModule.parse_config(raw)
        assert config == LaiwangConfig()
        assert config.acquaintances_only is True
        assert config.defaults.accept_requests_from == "address_book"
        assert config.defaults.discoverable is True


@pytest.mark.parametrize(
    "raw, path",
    [
        ({"acquaintances_only": "yes"}, ("acquaintances_only",)),
        ({"acquaintances_only": 1}, ("acquaintances_only",)),
        ({"no_such_key": 1}, ("no_such_key",)),
        ({"defaults": {"accept_requests_from": "everyone"}}, ("defaults", "accept_requests_from")),
        ({"defaults": {"discoverable": "no"}}, ("defaults", "discoverable")),
        ({"defaults": {"colour": "red"}}, ("defaults", "colour")),
        ({"defaults": []}, ("defaults",)),
        ({"commerce": {"base_url": 5}}, ("commerce", "base_url")),
        ({"commerce": {"base_url": "ftp://x"}}, ("commerce", "base_url")),
        (
            {"payment_providers": {"p": {"verify_key": "nonsense"}}},
            ("payment_providers", "p", "verify_key"),
        ),
        (
            {"payment_providers": {"p": {"verify_key": "ed25519:k !!!"}}},
            ("payment_providers", "p", "verify_key"),
        ),
        ({"payment_providers": {"p": {}}}, ("payment_providers", "p", "verify_key")),
        ({"max_body_bytes": 0}, ("max_body_bytes",)),
        ({"max_body_bytes": True}, ("max_body_bytes",)),
        ([], ()),
    ],
)
def test_bad_config_names_the_key(raw, path):
    with pytest.raises(ConfigError) as e:
        LaiwangModule.parse_config(raw)
    assert tuple(e.value.path or ()) == path


def test_payment_provider_key_is_parsed():
    key = generate_signing_key("v1")
    b64 = encode_verify_key_base64(get_verify_key(key))
    config = LaiwangModule.parse_config(
        {"payment_providers": {"alipay-mock": {"verify_key": f"ed25519:v1 {b64}"}}}
    )
    provider = config.payment_providers["alipay-mock"]
    assert provider.key_id == "ed25519:v1"
    assert encode_verify_key_base64(provider.verify_key) == b64


def test_commerce_url_trailing_slash_is_dropped():
    config = LaiwangModule.parse_config({"commerce": {"base_url": "http://127.0.0.1:9000/"}})
    assert config.commerce.base_url == "http://127.0.0.1:9000"
