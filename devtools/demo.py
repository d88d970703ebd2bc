"""`python3 run.py demo`: a working homeserver with the module on SQLite, in one command.

Writes its config and data into ./demo-data (or --data), starts Synapse on localhost:8008,
creates demo users and prints how to log in. Ctrl-C stops it; running it again reuses the data
(and the same users and passwords).
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import sys
import urllib.error
from pathlib import Path
from types import FrameType

from devtools.devserver import HomeserverSpec, SynapseProcess, login, register_user

DEMO_USERS = ("alice", "bob", "carol")


def _load_or_create_state(data: Path) -> dict[str, object]:
    state_file = data / "demo.json"
    if state_file.exists():
        return dict(json.loads(state_file.read_text()))
    state: dict[str, object] = {
        "shared_secret": secrets.token_hex(16),
        "passwords": {name: secrets.token_urlsafe(9) for name in DEMO_USERS},
        "registered": [],
    }
    data.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(state, indent=2))
    state_file.chmod(0o600)
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=Path("demo-data"), help="data folder")
    parser.add_argument("--port", type=int, default=8008, help="client port (default 8008)")
    parser.add_argument("--server-name", default="localhost")
    args = parser.parse_args(argv)

    data: Path = args.data.resolve()
    state = _load_or_create_state(data)
    spec = HomeserverSpec(
        directory=data / "synapse",
        client_port=args.port,
        server_name=args.server_name,
        registration_shared_secret=str(state["shared_secret"]),
        # "Add phone number" works out of the box: codes go to this file instead of an SMS.
        module_config={"sms": {"sender": "log", "file": str(data / "sms-codes.jsonl")}},
    )
    proc = SynapseProcess(spec)
    print(f"Starting Synapse with the laiwang module ({spec.config_path}) …", flush=True)
    proc.start()
    try:
        proc.wait_ready()
    except Exception as e:
        print(f"Synapse failed to start: {e}", file=sys.stderr)
        proc.stop()
        return 1

    passwords: dict[str, str] = dict(state["passwords"])  # type: ignore[call-overload]
    registered: list[str] = list(state["registered"])  # type: ignore[call-overload]
    for name in DEMO_USERS:
        if name not in registered:
            register_user(
                spec.base_url,
                spec.registration_shared_secret,
                name,
                passwords[name],
                admin=(name == "alice"),
            )
            registered.append(name)
    state["registered"] = registered
    (data / "demo.json").write_text(json.dumps(state, indent=2))
    try:
        login(spec.base_url, DEMO_USERS[0], passwords[DEMO_USERS[0]])
    except urllib.error.HTTPError as e:
        print(f"warning: demo login check failed: {e}", file=sys.stderr)

    print(
        f"""
Laiwang demo homeserver is running.

  Homeserver URL : http://localhost:{args.port}
  Server name    : {args.server_name}
  Module API     : http://localhost:{args.port}/_synapse/client/laiwang/v1/settings
  Data folder    : {data}   (logs: {spec.directory / "homeserver.log"})
  SMS codes      : {data / "sms-codes.jsonl"}   ("add phone number" codes; no real SMS is sent)

Demo users (alice is a server admin):"""
    )
    for name in DEMO_USERS:
        print(f"  @{name}:{args.server_name}   password: {passwords[name]}")
    print(
        f"""
Log in with any Matrix client: in Element choose "Edit" next to the homeserver and enter
http://localhost:{args.port}, then a user name and password from above. From a script:

  curl -s -XPOST http://localhost:{args.port}/_matrix/client/v3/login \\
    -d '{{"type":"m.login.password","identifier":{{"type":"m.id.user","user":"alice"}},"password":"{passwords["alice"]}"}}'

Press Ctrl-C to stop. Running the command again reuses the same data and users.""",
        flush=True,
    )

    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    assert proc.proc is not None
    while not stopping and proc.proc.poll() is None:
        try:
            proc.proc.wait(timeout=0.5)
        except Exception:
            pass
    if proc.proc.poll() is not None and not stopping:
        print(f"Synapse exited with {proc.proc.returncode}; see {spec.directory}", file=sys.stderr)
        return 1
    print("\nStopping Synapse …", flush=True)
    proc.stop()
    print("Stopped. Run the same command again to continue with the same data.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
