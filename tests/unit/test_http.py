import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from laiwang_module.rest.base import Router, parse_json_object, to_synapse_error
from rooms import errors
from rooms.errors import LaiwangError


@pytest.mark.parametrize(
    "raw, status, errcode",
    [
        (b"{bad", 400, "M_NOT_JSON"),
        (b"", 400, "M_NOT_JSON"),
        (b"\xff\xfe", 400, "M_NOT_JSON"),
        (b'{"a": NaN}', 400, "M_NOT_JSON"),
        (b'{"a": Infinity}', 400, "M_NOT_JSON"),
        (b"[1, 2]", 400, "M_BAD_JSON"),
        (b'"text"', 400, "M_BAD_JSON"),
        (b"[" * 100000, 413, "M_TOO_LARGE"),
        (b'{"a": 1, "a": 1}', 400, "M_BAD_JSON"),  # duplicate keys are ambiguous
        (b'{"b": {"a": 1, "a": 2}}', 400, "M_BAD_JSON"),
        (b'{"a": "\xff"}', 400, "M_NOT_JSON"),
        (b'{"a": "\ud800"}', 400, "M_NOT_JSON"),
    ],
)
def test_bad_bodies_get_matrix_errors(raw, status, errcode):
    with pytest.raises(LaiwangError) as e:
        parse_json_object(raw, max_bytes=1000)
    answer = to_synapse_error(e.value)
    assert (answer.code, answer.errcode) == (status, errcode)


def test_deeply_nested_json_is_not_json_not_a_crash():
    with pytest.raises(LaiwangError) as e:
        parse_json_object(b"[" * 5000 + b"]" * 5000, max_bytes=100000)
    assert to_synapse_error(e.value).errcode == "M_NOT_JSON"


def test_an_integer_over_4300_digits_is_not_json():
    with pytest.raises(LaiwangError) as e:
        parse_json_object(b'{"a": ' + b"9" * 5000 + b"}", max_bytes=100000)
    assert to_synapse_error(e.value).errcode == "M_NOT_JSON"


def test_deep_nesting_inside_an_object_is_not_json():
    with pytest.raises(LaiwangError) as e:
        parse_json_object(b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", max_bytes=100000)
    assert to_synapse_error(e.value).errcode == "M_NOT_JSON"


@pytest.mark.parametrize(
    "error, status, errcode, extra",
    [
        (errors.InvalidParam("total", "must be an integer"), 400, "M_INVALID_PARAM", {}),
        (errors.MissingParam("total"), 400, "M_MISSING_PARAM", {}),
        (
            errors.BadRequest("Hash again", errcode="M_INVALID_PEPPER", lookup_pepper="p"),
            400,
            "M_INVALID_PEPPER",
            {"lookup_pepper": "p"},
        ),
        (errors.Forbidden("No", param="payer"), 403, "M_FORBIDDEN", {}),
        (errors.NotFound("No such thing"), 404, "M_NOT_FOUND", {}),
        (errors.Unrecognized("Method not allowed", status=405), 405, "M_UNRECOGNIZED", {}),
        (errors.Conflict("Already linked"), 409, "M_CONFLICT", {}),
        (errors.TooLarge("Too big"), 413, "M_TOO_LARGE", {}),
        (
            errors.LimitExceeded("Slow down", retry_after_ms=5),
            429,
            "M_LIMIT_EXCEEDED",
            {"retry_after_ms": 5},
        ),
        (errors.BadGateway("Gateway down"), 502, "M_UNKNOWN", {}),
        (errors.Unavailable("Try later"), 503, "M_UNAVAILABLE", {}),
    ],
)
def test_every_error_kind_has_its_matrix_error(error, status, errcode, extra):
    answer = to_synapse_error(error)
    assert (answer.code, answer.errcode) == (status, errcode)
    assert answer.error_dict(None) == {"errcode": errcode, "error": error.sentence, **extra}


@given(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=5))
def test_any_json_object_round_trips(obj):
    assert parse_json_object(json.dumps(obj).encode(), max_bytes=10**6) == obj


async def _cb(request, **params):
    return 200, params


def test_router_decodes_params_and_rejects_other_methods():
    router = Router()
    router.add("GET", "/aa/requests/{room_id}/{event_id}", _cb)
    found = router.match("GET", "/aa/requests/%21r%3Ahs/%24e")
    assert found is not None
    assert found[1] == {"room_id": "!r:hs", "event_id": "$e"}
    assert router.match("GET", "/aa/requests/x") is None
    router.add("POST", "/aa/requests/{room_id}/{event_id}", _cb)
    with pytest.raises(errors.Unrecognized) as e:
        router.match("DELETE", "/aa/requests/a/b")
    assert (to_synapse_error(e.value).code, e.value.errcode) == (405, "M_UNRECOGNIZED")
    assert e.value.allow == ("GET", "HEAD", "POST", "OPTIONS")


def test_a_literal_path_wins_over_a_parameter():
    router = Router()
    router.add("DELETE", "/contacts/{user_id}", _cb)
    router.add("POST", "/contacts/import", _cb)
    assert router.match("DELETE", "/contacts/%40a%3Ahs") is not None
    assert router.match("POST", "/contacts/import") is not None
    with pytest.raises(errors.Unrecognized) as e:
        router.match("DELETE", "/contacts/import")
    assert (e.value.status, e.value.allow) == (405, ("POST", "OPTIONS"))


def test_a_surrogate_pair_is_one_character_and_fine():
    assert parse_json_object(b'{"a": "\\ud83d\\ude00"}', max_bytes=100) == {"a": "\U0001f600"}
