"""The settings update body (rooms/settings.py): only known keys, only valid values."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rooms.errors import InvalidParam, ValidationError
from rooms.settings import validate_settings_update


def test_settings_update_validation():
    assert validate_settings_update({}).changes() == {}
    assert validate_settings_update({"discoverable": False}).changes() == {"discoverable": False}
    assert validate_settings_update({"accept_requests_from": "nobody"}).changes() == {
        "accept_requests_from": "nobody"
    }
    for bad in (
        {"discoverable": "false"},
        {"discoverable": 0},
        {"accept_requests_from": "everyone"},
        {"accept_requests_from": None},
        {"other": True},
    ):
        with pytest.raises(InvalidParam):
            validate_settings_update(bad)


@given(
    st.dictionaries(
        st.sampled_from(["discoverable", "accept_requests_from", "x"]),
        st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    )
)
def test_settings_validation_accepts_only_valid_values(body):
    try:
        update = validate_settings_update(body).changes()
    except ValidationError:
        return
    assert set(update) == set(body)
    assert all(isinstance(v, bool) for k, v in update.items() if k == "discoverable")
