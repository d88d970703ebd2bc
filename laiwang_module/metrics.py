"""The module's Prometheus metrics, served by Synapse's metrics listener (`enable_metrics: true`).

Synapse exports prometheus_client's default registry, so metrics defined here, once per process
at import, show up beside Synapse's own on `/_synapse/metrics`. Each process counts what it
did itself: with workers, sum over instances. docs/operations.md lists them and what to watch.

Labels take values from small fixed sets only (route templates, errcodes, feature names, event
kinds): never a user id, room id, raw path or phone number.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# The HTTP API (rest/base.py): per route template (`/aa/{room_id}/pay`), not per raw path.
UNRECOGNIZED_ENDPOINT = "unrecognized"
HTTP_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH"})

http_requests = Counter(
    "laiwang_http_requests",
    "Requests to the module's endpoints, by route template and answered status",
    ["method", "endpoint", "status"],
)
http_request_duration = Histogram(
    "laiwang_http_request_duration_seconds",
    "Time to answer a request to the module's endpoints, by route template",
    ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

# The module's policy saying no inside Synapse's own flows (spam-checker callbacks). `check`:
# invite, federated_invite, create_room, aa_event, share_event, register_3pid; `reason`: a
# refusal kind (contacts) or the errcode (event rules); `origin`: local or remote sender.
policy_refusals = Counter(
    "laiwang_policy_refusals",
    "Invites, room creations, events and 3pid validations the module's policy refused",
    ["check", "reason", "origin"],
)

# AA events accepted by the event check (each counted once, by the process that checked it).
aa_events = Counter(
    "laiwang_aa_events",
    "AA events accepted by the event check, by kind and the sender's origin",
    ["kind", "origin"],
)

# Validation texts handed to the SMS sender (`log` or `http`): `result` is sent or failed.
sms_texts = Counter(
    "laiwang_sms_texts",
    "Validation codes sent by SMS, by sender and result",
    ["sender", "result"],
)

# The index updates run on `on_new_event` (callbacks/events.py), per feature (aa, contacts,
# shares, clusters): failures, retries of failed updates, and repairs by a reconcile pass.
update_failures = Counter(
    "laiwang_update_failures",
    "Index updates after an event that raised (the feature's index may lag until repaired)",
    ["feature"],
)
update_retries = Counter(
    "laiwang_update_retries",
    "Retries of index updates that had failed",
    ["feature"],
)
reconcile_repairs = Counter(
    "laiwang_reconcile_repairs",
    "Rooms a reconcile pass re-derived an index from (an upper bound on what it repaired)",
    ["feature"],
)


def origin(is_local: bool) -> str:
    return "local" if is_local else "remote"
