"""`python3 run.py demo`: a working homeserver with the module on SQLite, in one command.

Writes its config and data into ./demo-data (or --data) and starts three processes: the
commerce service mock (localhost:8090), Synapse with the module (localhost:8008) and the
commerce bridge (an application service on localhost:8091). Creates demo users, links their shop
accounts, seeds a small world once (`devtools/demo_world.py`: acquaintances, timelines, a
cluster, a bill; the `seeded` flag in demo.json) and prints how to log in and try it. Ctrl-C
stops all three; running it again reuses every process's data (the same users, passwords,
shops, links, rooms and world).
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

import requests

from devtools import demo_world
from devtools.commerce import BridgeProcess, MockProcess
from devtools.devserver import HomeserverSpec, SynapseProcess, login, register_user

# dave lives on the same server as the others. A second, federating Synapse would double the
# demo's start (and its CI test) for one user, and federation needs server names that resolve
# to a federation port ("localhost:8448"), which would orphan every existing demo folder (its
# data names "localhost"); the e2e tests cover federation (hs1, hs2).
DEMO_USERS = ("alice", "bob", "carol", "dave")
WEB_PATH = "/_synapse/client/laiwang/web/"


def _load_or_create_state(data: Path) -> dict[str, object]:
    state_file = data / "demo.json"
    if state_file.exists():
        loaded = dict(json.loads(state_file.read_text()))
        passwords: dict[str, str] = loaded["passwords"]
        for name in DEMO_USERS:  # a demo folder from before a user was added
            passwords.setdefault(name, secrets.token_urlsafe(9))
        return loaded
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
    parser.add_argument("--commerce-port", type=int, default=8090, help="the commerce mock")
    parser.add_argument("--bridge-port", type=int, default=8091, help="the commerce bridge")
    args = parser.parse_args(argv)

    data: Path = args.data.resolve()
    state = _load_or_create_state(data)
    mock = MockProcess(data / "commerce", port=args.commerce_port)
    print(f"Starting the commerce service mock ({mock.data}) …", flush=True)
    mock.start()
    bridge = BridgeProcess(data / "bridge", port=args.bridge_port)
    spec = HomeserverSpec(
        directory=data / "synapse",
        client_port=args.port,
        server_name=args.server_name,
        registration_shared_secret=str(state["shared_secret"]),
        module_config={
            # "Add phone number" works out of the box: codes go to this file instead of an SMS.
            "sms": {"sender": "log", "file": str(data / "sms-codes.jsonl")},
            "commerce": {"base_url": mock.base_url, "api_key": mock.api_key},
            "payment_providers": {"laiwang-pay": {"verify_key": mock.print_("--print-verify-key")}},
        },
    )
    if not bridge.registration_path.exists():  # a rerun keeps the bridge's tokens
        bridge.configure(spec.base_url, args.server_name, mock)
    spec.extra["app_service_config_files"] = [str(bridge.registration_path)]
    proc = SynapseProcess(spec)
    print(f"Starting Synapse with the laiwang module ({spec.config_path}) …", flush=True)
    proc.start()
    try:
        proc.wait_ready()
        print("Starting the commerce bridge …", flush=True)
        bridge.start()
    except Exception as e:
        print(f"The demo failed to start: {e}", file=sys.stderr)
        bridge.stop()
        proc.stop()
        mock.stop()
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
        tokens = {name: login(spec.base_url, name, passwords[name]) for name in DEMO_USERS}
        _link_shop_accounts(spec.base_url, mock, tokens)
        if not state.get("seeded"):
            users = {name: demo_world.User(spec.base_url, reply) for name, reply in tokens.items()}
            state["world"] = demo_world.seed(users, mock, lambda line: print(line, flush=True))
            state["seeded"] = True  # only now: an interrupted seeding is finished next time
            (data / "demo.json").write_text(json.dumps(state, indent=2))
    except (urllib.error.HTTPError, requests.RequestException, demo_world.SeedError) as e:
        print(f"warning: demo set-up failed (the next start tries again): {e}", file=sys.stderr)

    print(
        f"""
Laiwang demo homeserver is running.

  Homeserver URL : http://localhost:{args.port}
  Server name    : {args.server_name}
  Module API     : http://localhost:{args.port}/_synapse/client/laiwang/v1/settings
  Web companion  : http://localhost:{args.port}{WEB_PATH}   (log in as a demo user)
  Data folder    : {data}   (logs: {spec.directory / "homeserver.log"})
  SMS codes      : {data / "sms-codes.jsonl"}   ("add phone number" codes; no real SMS is sent)

Demo users (alice is a server admin), each also at the web companion
http://localhost:{args.port}{WEB_PATH}:"""
    )
    for name in DEMO_USERS:
        print(f"  @{name}:{args.server_name}   password: {passwords[name]}")
    if state.get("seeded"):
        print(
            """
The demo world: alice, bob and carol are acquainted (bob through alice's address book, carol
through a contact request), dave through carol. alice's timeline has a post, a music card, a tea
she bought (with bob's reaction and carol's comment); bob posted too, so alice's feed merges
both. alice follows the teahouse shop. The "Weekend hiking" cluster runs three people deep
(alice brought bob, bob carol, carol dave); its hotpot bill is paid by bob, not yet by carol.
In Element, timelines and shops sit in each user's "Laiwang" space rather than among the chats,
the acquaintances' timelines marked low priority (docs/clients.md)."""
        )
    print(
        f"""
Log in with any Matrix client: in Element choose "Edit" next to the homeserver and enter
http://localhost:{args.port}, then a user name and password from above. From a script:

  curl -s -XPOST http://localhost:{args.port}/_matrix/client/v3/login \\
    -d '{{"type":"m.login.password","identifier":{{"type":"m.id.user","user":"alice"}},"password":"{passwords["alice"]}"}}'

The commerce side (a shop platform mock on {mock.base_url}, its bridge keeps a room per shop;
every demo user's shop account is linked). With alice's access token in $TOKEN:

  API=http://localhost:{args.port}/_synapse/client/laiwang/v1
  # subscribe to a shop: you join its room, where new items appear
  curl -s -XPUT -H "Authorization: Bearer $TOKEN" $API/commerce/subscriptions/teahouse
  # share an item into a room you are in
  curl -s -XPOST -H "Authorization: Bearer $TOKEN" $API/shares/item \
    -d '{{"room_id": "!room:{args.server_name}", "item_id": "item3"}}'
  # split a bill, then the payer pays their share through the provider (charged once)
  curl -s -XPOST -H "Authorization: Bearer $TOKEN" $API/aa/requests -d '{{"room_id": "!room:{args.server_name}",
    "title": "Tea", "currency": "CNY", "total": 9900, "participants": ["@alice:{args.server_name}", "@bob:{args.server_name}"]}}'
  curl -s -XPOST -H "Authorization: Bearer $BOB_TOKEN" $API/aa/requests/<room_id>/<event_id>/pay -d '{{"method": "provider"}}'
  # a new item at the shop (the bridge posts it to the shop's room)
  curl -s -XPOST -H "Authorization: Bearer $(cat {mock.data / "api_key"})" {mock.base_url}/v1/shops/teahouse/items \
    -d '{{"title": "Silver Needle", "price": {{"amount": 32000, "currency": "CNY"}}}}'

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
    failed = proc.proc.poll() is not None and not stopping
    if failed:
        print(f"Synapse exited with {proc.proc.returncode}; see {spec.directory}", file=sys.stderr)
    print("\nStopping the bridge, Synapse and the commerce mock …", flush=True)
    bridge.stop()
    proc.stop()
    mock.stop()
    if failed:
        return 1
    print("Stopped. Run the same command again to continue with the same data.")
    return 0


def _link_shop_accounts(
    base_url: str, mock: MockProcess, logins: dict[str, dict[str, object]]
) -> None:
    """Give each demo user a shop account linked through the module, once (a rerun finds the
    links in the mock's data)."""
    shop = mock.client()
    for name, reply in logins.items():
        user_id, token = str(reply["user_id"]), str(reply["access_token"])
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{base_url}/_synapse/client/laiwang/v1/commerce/link"
        if requests.get(url, headers=headers, timeout=30).status_code == 200:
            continue
        created = shop.post("/v1/accounts", {"display_name": name})
        r = requests.post(url, json={"token": created["link_token"]}, headers=headers, timeout=30)
        r.raise_for_status()
        print(f"Linked {user_id} to shop account {created['account_id']}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
