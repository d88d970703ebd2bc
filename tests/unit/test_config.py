import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from synapse.config._base import ConfigError

from laiwang_module import LaiwangModule
from laiwang_module.config import ConfigBlock, LaiwangConfig, Option, options


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
        ({"commerce": {"base_url": "http://x"}}, ("commerce", "api_key")),
        ({"commerce": {"base_url": "http://x", "api_key": "k"}}, ("commerce", "provider")),
        ({"commerce": {"timeout": "soon"}}, ("commerce", "timeout")),
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
        ({"discovery": {"peers": "b.example"}}, ("discovery", "peers")),
        ({"discovery": {"peers": ["b.example", "bad name"]}}, ("discovery", "peers", "1")),
        ({"discovery": {"peers": [7]}}, ("discovery", "peers", "0")),
        ({"discovery": {"peer_timeout": 0}}, ("discovery", "peer_timeout")),
        ({"max_body_bytes": True}, ("max_body_bytes",)),
        ([], ()),
    ],
)
def test_bad_config_names_the_key(raw, path):
    with pytest.raises(ConfigError) as e:
        LaiwangModule.parse_config(raw)
    assert tuple(e.value.path or ()) == path


def test_discovery_peers_are_server_names_without_repeats():
    config = LaiwangModule.parse_config(
        {"discovery": {"peers": ["b.example", "c.example:8448", "b.example"]}}
    )
    assert config.discovery.peers == ("b.example", "c.example:8448")
    assert LaiwangModule.parse_config({}).discovery.peers == ()


def test_payment_provider_key_is_parsed():
    key = generate_signing_key("v1")
    b64 = encode_verify_key_base64(get_verify_key(key))
    config = LaiwangModule.parse_config(
        {"payment_providers": {"alipay-mock": {"verify_key": f"ed25519:v1 {b64}"}}}
    )
    provider = config.payment_providers["alipay-mock"]
    assert provider.key_id == "ed25519:v1"
    assert encode_verify_key_base64(provider.verify_key) == b64


KEY = "ed25519:1 " + "A" * 43


def test_commerce_url_trailing_slash_is_dropped():
    config = LaiwangModule.parse_config(
        {
            "commerce": {"base_url": "http://127.0.0.1:9000/", "api_key": "k"},
            "payment_providers": {"laiwang-pay": {"verify_key": KEY}},
        }
    )
    assert config.commerce.base_url == "http://127.0.0.1:9000"
    assert config.commerce.enabled and config.commerce.timeout_ms == 5000


DOC = Path(__file__).parents[2] / "config" / "module-config.md"


def _code_keys(block: type[ConfigBlock], prefix: str = "") -> Iterator[tuple[str, Option]]:
    for _, key, option in options(block):
        if option.block is not None:
            yield from _code_keys(option.block, f"{prefix}{key}.")
        else:
            yield prefix + key, option


def _doc_defaults() -> dict[str, str]:
    """`key path: default` of each row of the reference table."""
    rows = {}
    for line in DOC.read_text().splitlines():
        if line.startswith("| `"):
            # `\|` separates enum values inside a cell.
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[0].strip("`")] = cells[2]
    return rows


def test_module_config_doc_lists_every_key_with_its_default():
    code = dict(_code_keys(LaiwangConfig))
    documented = _doc_defaults()
    assert not documented.keys() - code.keys(), "documented, but the code reads no such key"
    assert not code.keys() - documented.keys(), "read by the code, but not documented"
    for key, option in code.items():
        default = documented[key]
        if option.required:
            assert "required" in default, key
        elif option.default is None:
            assert default.startswith("none"), key
        else:
            as_yaml = (
                option.default if isinstance(option.default, str) else json.dumps(option.default)
            )
            assert default == f"`{as_yaml}`", key
