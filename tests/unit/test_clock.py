"""rooms/clock.py: whose clock ranks an event (the feed, cluster activity)."""

from hypothesis import given
from hypothesis import strategies as st

from rooms.clock import sort_ts


@given(st.integers(0, 2**62), st.integers(0, 2**62))
def test_sort_time_is_never_after_reception(origin, received):
    ts = sort_ts(origin, received)
    assert ts <= received and ts <= origin
    assert ts == (origin if origin <= received else received)
