"""The module loads into a real Synapse and serves its HTTP API beside plain Matrix messaging;
a bad module config stops Synapse; the README's demo command runs. (Settings: test_settings.py.)"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from devtools.devserver import HomeserverSpec, free_port
from tests.harness.client import LAIWANG, MatrixClient, wait_until


def test_unknown_endpoint_and_method(hs1):
    user = hs1.new_user()
    r = user.laiwang_raw("GET", "/no-such-thing")
    assert (r.status_code, r.json()["errcode"]) == (404, "M_UNRECOGNIZED")
    r = user.laiwang_raw("DELETE", "/settings")
    assert (r.status_code, r.json()["errcode"]) == (405, "M_UNRECOGNIZED")
    assert r.headers["Allow"] == "GET, HEAD, PUT, OPTIONS"  # RFC 9110


def test_plain_matrix_messaging_still_works(hs1):
    alice, bob = hs1.new_user("alice"), hs1.new_user("bob")
    room = alice.create_room(preset="private_chat")
    # A local room without invites: the module must not get in the way of plain Matrix.
    alice.send_text(room, "hello, plain Matrix")
    bodies = [e["content"].get("body") for e in alice.messages(room)]
    assert "hello, plain Matrix" in bodies
    assert bob.call("GET", "/_matrix/client/v3/account/whoami")["user_id"] == bob.user_id


def test_bad_module_config_stops_synapse_naming_the_key(tmp_path):
    spec = HomeserverSpec(
        directory=tmp_path / "bad",
        client_port=free_port(),
        server_name="localhost",
        module_config={"acquaintances_only": "sometimes"},
    )
    spec.write()
    proc = subprocess.run(
        [sys.executable, "-m", "synapse.app.homeserver", "-c", str(spec.config_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "acquaintances_only" in output
    assert "expected a boolean" in output


@pytest.mark.parametrize(
    "extra, module_config, expected",
    [
        (
            {"room_prejoin_state": {}},
            {},
            [
                "Error in configuration at 'room_prejoin_state.additional_event_types':",
                "org.laiwang.acquaintance, org.laiwang.cluster, org.laiwang.timeline are not"
                " listed",
                "      room_prejoin_state:\n"
                "        additional_event_types:\n"
                "          - org.laiwang.acquaintance\n"
                "          - org.laiwang.cluster\n"
                "          - org.laiwang.timeline\n",
            ],
        ),
        (
            {"account_threepid_delegates": {}},
            {"sms": {"sender": "http", "http": {"url": "https://sms.example/send"}}},
            [
                "Error in configuration at 'account_threepid_delegates.msisdn':",
                "Laiwang binds phone numbers (sms.sender is http), but"
                " account_threepid_delegates.msisdn is not set",
                "      account_threepid_delegates:\n        msisdn: http://127.0.0.1:{port}"
                "/_synapse/client/laiwang/identity\n",
            ],
        ),
    ],
    ids=["room_prejoin_state", "msisdn_delegate"],
)
def test_missing_homeserver_setting_stops_synapse_with_the_yaml_to_add(
    tmp_path, extra, module_config, expected
):
    """Without them Synapse would start and the module fail quietly later (contact requests
    refused by other servers as strangers'; no phone number ever validated)."""
    port = free_port()
    spec = HomeserverSpec(
        directory=tmp_path / "hs",
        client_port=port,
        server_name="localhost",
        module_config=module_config,
        extra=extra,
    )
    spec.write()
    proc = subprocess.run(
        [sys.executable, "-m", "synapse.app.homeserver", "-c", str(spec.config_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    output = proc.stdout + proc.stderr
    log = (spec.directory / "homeserver.log").read_text()
    for text in expected:
        text = text.replace("{port}", str(port))
        assert text in output, output[-3000:]
        assert text in log


def test_readme_demo_command_starts_and_stops_cleanly(tmp_path):
    """`python3 run.py demo`, as the README gives it (on a free port and a scratch folder)."""
    root = Path(__file__).resolve().parents[2]
    port = free_port()
    env = {"LAIWANG_VENV": sys.prefix, "PATH": "/usr/bin:/bin"}
    cmd = [
        sys.executable,
        str(root / "run.py"),
        "demo",
        "--port",
        str(port),
        "--data",
        str(tmp_path / "demo"),
        "--commerce-port",
        str(free_port()),
        "--bridge-port",
        str(free_port()),
    ]

    def run_once() -> str:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
        )
        try:
            return check_demo(proc)
        finally:
            if proc.poll() is None:  # a failed check must not leave a homeserver running
                proc.send_signal(2)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()

    def check_demo(proc: subprocess.Popen[str]) -> str:
        lines: list[str] = []
        assert proc.stdout is not None
        deadline = time.monotonic() + 300
        for line in proc.stdout:
            lines.append(line)
            if "Press Ctrl-C to stop" in line or time.monotonic() > deadline:
                break
        text = "".join(lines)
        assert "Press Ctrl-C to stop" in text, text
        password = next(
            ln.split("password:")[1].strip()
            for ln in lines
            if "@alice:" in ln and "password:" in ln
        )
        r = MatrixClient(f"http://127.0.0.1:{port}", "", None).call(
            "POST",
            "/_matrix/client/v3/login",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "alice"},
                "password": password,
            },
        )
        me = MatrixClient(f"http://127.0.0.1:{port}", r["user_id"], r["access_token"])
        assert me.call("GET", LAIWANG + "/settings")["discoverable"] is True
        # The commerce mock and bridge run too: alice's shop account is linked, and the
        # bridge's shop rooms can be subscribed to.
        account = me.call("GET", LAIWANG + "/commerce/link")["account_id"]
        sub = wait_until(lambda: _subscribe(me), timeout=60)
        assert sub["shop_id"] == "teahouse"
        proc.send_signal(2)  # Ctrl-C
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, text + rest
        assert "Stopped" in rest
        return f"{password} {account}"

    first = run_once()
    assert run_once() == first  # same data: the same users and shop accounts


def _subscribe(me: MatrixClient) -> dict[str, Any] | None:
    r = me.raw("PUT", LAIWANG + "/commerce/subscriptions/teahouse")
    return dict(r.json()) if r.status_code == 200 else None
