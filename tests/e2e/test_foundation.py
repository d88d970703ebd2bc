"""The module loads into a real Synapse, serves its HTTP API and keeps its data."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools.devserver import HomeserverSpec, free_port
from tests.harness.client import LAIWANG, MatrixClient
from tests.harness.servers import TestHomeserver, start_all


def test_settings_requires_a_token(hs1):
    r = hs1.anonymous().laiwang_raw("GET", "/settings")
    assert r.status_code == 401
    assert r.json()["errcode"] == "M_MISSING_TOKEN"
    bad = MatrixClient(hs1.base_url, "", "not-a-token").laiwang_raw("GET", "/settings")
    assert (bad.status_code, bad.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")


def test_settings_defaults_and_update(hs1):
    alice = hs1.new_user("alice")
    assert alice.laiwang("GET", "/settings") == {
        "discoverable": True,
        "accept_requests_from": "address_book",
    }
    assert alice.laiwang("PUT", "/settings", {"accept_requests_from": "anyone"}) == {
        "discoverable": True,
        "accept_requests_from": "anyone",
    }
    # Settings are per user.
    assert hs1.new_user("bob").laiwang("GET", "/settings")["accept_requests_from"] == (
        "address_book"
    )


@pytest.mark.parametrize(
    "data, status, errcode",
    [
        (b"{not json", 400, "M_NOT_JSON"),
        (b"[]", 400, "M_BAD_JSON"),
        (b'{"discoverable": "yes"}', 400, "M_INVALID_PARAM"),
        (b'{"discoverable": false, "accept_requests_from": "strangers"}', 400, "M_INVALID_PARAM"),
        (b'{"discoverable": false, "surprise": 1}', 400, "M_INVALID_PARAM"),
        (b'{"discoverable": false, "pad": "' + b"x" * 70000 + b'"}', 413, "M_TOO_LARGE"),
    ],
)
def test_bad_settings_change_nothing(hs1, data, status, errcode):
    user = hs1.new_user()
    before = user.laiwang("GET", "/settings")
    r = user.laiwang_raw("PUT", "/settings", data=data)
    assert r.status_code == status
    body = r.json()
    assert body["errcode"] == errcode
    assert isinstance(body["error"], str) and "Traceback" not in body["error"]
    assert user.laiwang("GET", "/settings") == before


def test_unknown_endpoint_and_method(hs1):
    user = hs1.new_user()
    r = user.laiwang_raw("GET", "/no-such-thing")
    assert (r.status_code, r.json()["errcode"]) == (404, "M_UNRECOGNIZED")
    r = user.laiwang_raw("DELETE", "/settings")
    assert r.status_code == 405


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


def test_settings_survive_restart(tmp_path):
    server = start_all([TestHomeserver(tmp_path / "restart")])[0]
    try:
        user = server.new_user("carol")
        user.laiwang("PUT", "/settings", {"discoverable": False, "accept_requests_from": "nobody"})
        server.restart()
        assert user.laiwang("GET", "/settings") == {
            "discoverable": False,
            "accept_requests_from": "nobody",
        }
    finally:
        server.stop()


@pytest.mark.postgres
def test_settings_on_postgres(pg_homeserver):
    user = pg_homeserver.new_user()
    assert user.laiwang("PUT", "/settings", {"discoverable": False})["discoverable"] is False
    assert user.laiwang("GET", "/settings")["discoverable"] is False
    r = user.laiwang_raw("PUT", "/settings", data=b"{")
    assert r.json()["errcode"] == "M_NOT_JSON"


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
        password = next(ln.split("password:")[1].strip() for ln in lines if "@alice:" in ln)
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
        proc.send_signal(2)  # Ctrl-C
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, text + rest
        assert "Stopped" in rest
        return password

    first = run_once()
    assert run_once() == first  # same data, same users
