"""Crash points: where the end-to-end tests kill the process in the middle of an operation.

A multi-step operation (a timeline's creation, a knock's approval, a provider payment) must leave
nothing half-done when its process dies between two steps: the steps are journalled, and the
background job finishes what a dead process left (`upkeep.unfinished_after`). To show that on a
real homeserver, `testing.crash_at: {point: text}` makes the process exit at once, as `kill -9`
does (no shutdown, no flush, in-flight requests lost), when it reaches the point for a user whose
id contains the text. Unset on every real server: then a crash point is one dictionary lookup.
"""

from __future__ import annotations

import logging
import os

from laiwang_module.config import TestingConfig

logger = logging.getLogger(__name__)

# What the process exits with: the status of a process killed by SIGKILL, as a shell shows it.
KILLED = 137


def crash_point(config: TestingConfig, point: str, user_id: str) -> None:
    """Exit the process here if `testing.crash_at` names this point for this user."""
    text = config.crash_at.get(point)
    if text is None or text not in user_id:
        return
    logger.critical("laiwang: testing.crash_at: dying at %s for %s", point, user_id)
    os._exit(KILLED)
