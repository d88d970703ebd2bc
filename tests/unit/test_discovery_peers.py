"""The OPRF of discovery across servers (rooms/discovery_peers.py): blinding, evaluation and
unblinding give the key holder's direct evaluation; bad points are refused."""

from __future__ import annotations

import hashlib

import nacl.bindings as sodium
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rooms.discovery_peers import (
    DST_H1,
    GROUP_ORDER,
    b64,
    blind,
    derive_key,
    evaluate,
    hash_to_group,
    new_blind,
    pack_published,
    prf,
    published_key,
    unb64,
    unblind,
    unpack_published,
    validate_peer_request,
)
from rooms.errors import InvalidParam, MissingParam

inputs = st.lists(st.text(min_size=1, max_size=60), min_size=1, max_size=8)
keys = st.binary(min_size=32, max_size=32).map(lambda s: derive_key(s, "peer.example", "p"))


@settings(max_examples=60, deadline=None)
@given(inputs, keys)
def test_blind_evaluate_unblind_is_the_direct_evaluation(xs, k):
    r = new_blind()
    blinded = blind(r, xs)
    assert unblind(r, xs, evaluate(k, blinded)) == [prf(k, x) for x in xs]


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**64))
def test_blinding_scalars_survive_clamping_and_invert(_):
    r = new_blind()
    b, c = int.from_bytes(r.scalar, "little"), int.from_bytes(r.inverse, "little")
    for n in (b, c):  # fixed points of X25519's clamping: multiples of 8 in [2^254, 2^255)
        assert n % 8 == 0 and 1 << 254 <= n < 1 << 255
    assert (b * c) % GROUP_ORDER in (1, GROUP_ORDER - 1)


@settings(max_examples=30, deadline=None)
@given(st.text(min_size=1, max_size=60))
def test_blinded_elements_do_not_repeat_and_hide_the_input(x):
    # Two blindings of one input differ, and neither is H1(x).
    a, b = blind(new_blind(), [x])[0], blind(new_blind(), [x])[0]
    assert a != b and hash_to_group(x) not in (a, b)


def test_the_key_depends_on_server_key_peer_and_pepper():
    base = derive_key(b"s" * 32, "a.example", "pepper1")
    assert base == derive_key(b"s" * 32, "a.example", "pepper1")
    others = [
        derive_key(b"t" * 32, "a.example", "pepper1"),
        derive_key(b"s" * 32, "b.example", "pepper1"),
        derive_key(b"s" * 32, "a.example", "pepper2"),
    ]
    assert base not in others
    assert prf(base, "x") != prf(others[0], "x")


@given(st.text(max_size=60))
def test_hash_to_group_is_libsodiums_map_to_the_prime_order_group(x):
    uniform = hashlib.sha512(DST_H1 + x.encode("utf-8")).digest()[:32]
    edwards = sodium.crypto_core_ed25519_from_uniform(uniform)
    # libsodium's check covers the prime-order subgroup (no torsion component) ...
    assert sodium.crypto_core_ed25519_is_valid_point(edwards)
    # ... and our birational map to Curve25519 is libsodium's own.
    assert hash_to_group(x) == sodium.crypto_sign_ed25519_pk_to_curve25519(edwards)


@pytest.mark.parametrize(
    "bad",
    [
        bytes(32),  # u = 0: small order
        (1).to_bytes(32, "little"),  # u = 1: small order
        # A point of order 8: would give a constant (and leak the key modulo 8).
        bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    ],
)
def test_evaluation_refuses_points_of_small_order(bad):
    with pytest.raises(InvalidParam):
        evaluate(derive_key(b"s" * 32, "a", "p"), [bad])


def test_unblind_of_a_broken_answer_matches_nothing():
    r = new_blind()
    assert unblind(r, ["x", "y"], [bytes(32), blind(r, ["y"])[0]])[0] is None


@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=50))
def test_published_set_round_trips_sorted(values):
    assert unpack_published(pack_published(values)) == sorted(values)


def test_published_key_is_the_first_64_bits():
    value = bytes(range(32))
    assert published_key(value) == int.from_bytes(value[:8], "big", signed=True)


def test_peer_requests_are_checked():
    element = b64(blind(new_blind(), ["x"])[0])
    ok = {"user_id": "@a:hs.a", "pepper": "abc", "elements": [element]}
    assert validate_peer_request(ok, "hs.a", 32).elements == (unb64(element),)
    cases: list[tuple[dict, str]] = [
        ({**ok, "user_id": "@a:other"}, "user_id"),
        ({**ok, "user_id": "a:hs.a"}, "user_id"),
        ({**ok, "pepper": "no spaces"}, "pepper"),
        ({**ok, "pepper": 3}, "pepper"),
        ({**ok, "elements": "x"}, "elements"),
        ({**ok, "elements": ["!!"]}, "elements"),
        ({**ok, "elements": [b64(b"short")]}, "elements"),
        ({**ok, "elements": [7]}, "elements"),
    ]
    for body, param in cases:
        with pytest.raises(InvalidParam) as e:
            validate_peer_request(body, "hs.a", 32)
        assert e.value.param == param
    with pytest.raises(MissingParam):
        validate_peer_request({"user_id": "@a:hs.a", "pepper": "p"}, "hs.a", 32)


def test_a_peers_answers_are_checked_by_the_caller():
    from array import array

    from laiwang_module.handlers.discovery_peers import PeerSet, _elements, _user_of

    published = PeerSet(pepper="p", keys=array("q", [-5, 3, 9]), max_per_request=10, fetched_ms=0)
    assert 3 in published and -5 in published and 4 not in published and 10 not in published
    # A peer answers for its own users only.
    assert _user_of("@bob:b.example", "b.example")
    assert not _user_of("@bob:c.example", "b.example")
    assert not _user_of("bob:b.example", "b.example") and not _user_of(None, "b.example")
    point = b64(bytes(range(32)))
    assert _elements({"elements": [point]}, 1) == [bytes(range(32))]
    replies: list[object] = [
        {"elements": [point]},
        {"elements": [point, "!!"]},
        {"elements": "x"},
        [],
    ]
    for reply in replies:
        with pytest.raises(ValueError):
            _elements(reply, 2)
