"""Fuzzing every operation of openapi.json with schemathesis against the shared hs1.

The run fails on any server error but the declared 502 of a contact request to an unreachable
server, on any status or body the description does not declare, on invalid input that is
accepted, and on any response slower than MAX_RESPONSE_S. It uses a fixed seed and
deterministic generation, and a bounded number of examples per operation, so it costs about a
minute. Path parameters and body ids come, half of the time, from real objects of the fuzzing
user (a room with an AA request, a cluster, an acquaintance), so that the endpoints behind
them are reached; the description's links chain the rest in the stateful phase.

Run it alone with `pytest -q tests/e2e/test_fuzz.py -s` to see schemathesis's report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from laiwang_module.rest.base import PREFIX
from tests.harness.client import MatrixClient
from tests.harness.msisdn import delegate_prefix
from tests.harness.servers import TestHomeserver
from tests.harness.social import make_acquainted

DESCRIPTION = Path(__file__).parents[2] / "laiwang_module" / "rest" / "openapi.json"
MAX_RESPONSE_S = 5
MAX_REMOTE_RESPONSE_S = 65  # Synapse's federation requests time out after 60 s
MAX_EXAMPLES = 12
STATEFUL_EXAMPLES, STATEFUL_STEPS = 40, 12
SEED = 12
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "unsupported_method",  # an undeclared method gets 405 with an Allow header
)


def toml_value(value: Any) -> str:
    return json.dumps(value)  # JSON strings, numbers and lists are TOML too


def write_config(path: Path, ids: dict[str, list[str]]) -> Path:
    lines = [f"seed = {SEED}", "", "[checks]", f"max_response_time = {MAX_RESPONSE_S}", ""]
    # Longer chains of linked calls: a cluster, then an AA request in it, then its payment.
    lines += ["[phases.stateful]", f"max-steps = {STATEFUL_STEPS}", ""]
    lines += ["[phases.stateful.generation]", f"max-examples = {STATEFUL_EXAMPLES}", ""]
    for name, values in ids.items():
        lines += [f"[dictionaries.{name}]", f"values = {toml_value(values)}", ""]
    lines += ["[parameters]"]  # ids of real objects, half of the time
    for key, name in (
        ("path.room_id", "rooms"),
        ("path.event_id", "events"),
        ("path.user_id", "users"),
        ("body.room_id", "rooms"),
        ("body.event_id", "events"),
        ("body.user_id", "users"),
    ):
        if name in ids:
            lines.append(f'"{key}" = {{ dictionary = "{name}", probability = 0.5 }}')
    lines += [
        "",
        # A request to a user on a server that cannot be reached is a declared 502, and
        # waits for Synapse's federation client (its DNS and request timeouts).
        "[[operations]]",
        'include-operation-id = "sendContactRequest"',
        "[operations.checks]",
        f"max_response_time = {MAX_REMOTE_RESPONSE_S}",
        "[operations.checks.not_a_server_error]",
        'expected-statuses = ["2XX", "3XX", "4XX", "502"]',
        "",
    ]
    path.write_text("\n".join(lines))
    return path


def schemathesis(
    tmp_path: Path, name: str, config: Path, base_url: str, *args: str
) -> dict[str, Any]:
    """Run `schemathesis run` and return its JSON report, with the number of requests."""
    report, har = tmp_path / f"{name}.json", tmp_path / f"{name}.har"
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color"),
        *("run", str(DESCRIPTION), "--url", base_url, "--checks", ",".join(CHECKS)),
        *("--max-examples", str(MAX_EXAMPLES), "--generation-deterministic", "--workers", "1"),
        *("--request-timeout", str(MAX_REMOTE_RESPONSE_S + 5)),
        *("--report", "json,har"),
        *("--report-json-path", str(report), "--report-har-path", str(har)),
        *args,
    ]
    # In a scratch folder: schemathesis keeps a cache of crashes in its working directory.
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    print(run.stdout[-6000:], run.stderr[-2000:])
    assert run.returncode == 0, f"schemathesis found failures:\n{run.stdout[-6000:]}"
    result: dict[str, Any] = json.loads(report.read_text())
    result["requests"] = len(json.loads(har.read_text())["log"]["entries"])
    return result


def test_fuzz_every_operation(hs1: TestHomeserver, tmp_path: Path) -> None:
    fuzzer, peer = hs1.new_user("fuzz"), hs1.new_user("fuzzpeer")
    make_acquainted(fuzzer, peer)
    room = fuzzer.create_room(preset="public_chat")
    peer.join(room)
    bill = fuzzer.laiwang(
        "POST",
        "/aa/requests",
        {
            "room_id": room,
            "title": "Fuzz",
            "currency": "CNY",
            "total": 1000,
            "participants": [fuzzer.user_id, peer.user_id],
        },
    )
    cluster = fuzzer.laiwang("POST", "/clusters", {"topic": "fuzz"})["room_id"]
    text = fuzzer.send_text(room, "hello")
    config = write_config(
        tmp_path / "schemathesis.toml",
        {
            "rooms": [room, cluster],
            "events": [bill["event_id"], text],
            "users": [peer.user_id],
        },
    )
    result = schemathesis(
        tmp_path,
        "v1",
        config,
        hs1.base_url + PREFIX,
        *("--header", f"Authorization: Bearer {fuzzer.access_token}"),
        *("--exclude-tag", "msisdn"),
    )
    assert result["operations"]["tested"] == 39  # with the peers' signed endpoints (401 here)
    assert result["test_cases"]["with_failures"] == 0
    print(f"fuzzed {result['operations']['tested']} operations, {result['requests']} requests")


def test_fuzz_msisdn_identity_endpoints(hs1: TestHomeserver, tmp_path: Path) -> None:
    config = write_config(tmp_path / "schemathesis.toml", {})
    result = schemathesis(
        tmp_path,
        "identity",
        config,
        hs1.base_url + delegate_prefix(hs1),
        *("--include-tag", "msisdn"),
        *("--phases", "examples,coverage,fuzzing"),
    )
    assert result["operations"]["tested"] == 3
    print(f"fuzzed {result['operations']['tested']} operations, {result['requests']} requests")


def test_the_description_is_served_without_authentication(hs1: TestHomeserver) -> None:
    anonymous = MatrixClient(hs1.base_url, "", None)
    served = anonymous.laiwang("GET", "/openapi.json")
    assert served == json.loads(DESCRIPTION.read_text())
    r = anonymous.laiwang_raw("GET", "/settings")
    assert (r.status_code, r.json()["errcode"]) == (401, "M_MISSING_TOKEN")
