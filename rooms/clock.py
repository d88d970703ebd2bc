"""Whose clock an event's time comes from.

`origin_server_ts` is written by the sending server: another server can date an event hours
ahead (or behind) at will. Anything that ranks events by time (the feed, cluster activity) uses
`sort_ts`, capped at the time this server received the event, which no other server controls.
"""

from __future__ import annotations


def sort_ts(origin_server_ts: int, received_ts: int) -> int:
    """The time to rank an event by: its sender's claimed time, never later than when this
    server received it. An event dated in the past keeps its date (history that arrives late,
    by backfill or catch-up, ranks where it belongs); one dated in the future ranks as received.
    """
    return min(int(origin_server_ts), int(received_ts))
