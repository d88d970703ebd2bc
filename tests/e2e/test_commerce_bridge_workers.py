"""The commerce bridge on a production-shaped worker deployment (config/workers/): the main
process and two generic workers on PostgreSQL and Redis, the bridge's registration loaded by all
three, application-service transactions sent by worker1 (`notify_appservices_from_worker`).

The bridge reaches the homeserver through a small reverse proxy that routes as
config/workers/nginx.conf does: what a generic worker serves goes round robin to worker1 and
worker2, the rest (media, the admin API) to the main process. Users' requests alternate between
the workers. Every delivery must reach Matrix exactly once, which the tests count in /messages."""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from urllib3.exceptions import NewConnectionError

from devtools.commerce import BridgeProcess, CommerceClient, MockProcess
from devtools.devserver import PROJECT_ROOT, free_port
from tests.conftest import skip_or_fail
from tests.e2e.test_commerce_bridge import ITEM, item_shares
from tests.harness.client import MatrixClient, wait_until
from tests.harness.servers import postgres_available, redis_available, sql
from tests.harness.workers import WorkerDeployment

pytestmark = pytest.mark.postgres

NGINX_CONF = PROJECT_ROOT / "config" / "workers" / "nginx.conf"
# The worker that sends application-service transactions (as in the sample homeserver.yaml).
APPSERVICE_WORKER = "worker1"
# A duplicate from a second process would land within this after the first copy.
SETTLE_S = 4.0
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-encoding",
    "content-length",
}


def worker_routes(conf: Path = NGINX_CONF) -> list[re.Pattern[str]]:
    """The client paths nginx.conf sends to the workers (`synapse_workers`), as regexes."""
    routes = []
    for location, upstream in re.findall(
        r"location\s+(.+?)\s*\{\s*proxy_pass\s+http://(\w+);", conf.read_text()
    ):
        if upstream != "synapse_workers":
            continue
        if location.startswith("~ "):
            routes.append(re.compile(location[2:]))
        else:  # a prefix location
            routes.append(re.compile("^" + re.escape(location)))
    return routes


class RoutingProxy:
    """The reverse proxy of config/workers/nginx.conf, in process: worker routes round robin
    over the workers (the next one when one refuses connections, as nginx's default
    `proxy_next_upstream error` does), everything else to the main process."""

    def __init__(self, deployment: WorkerDeployment):
        self.port = free_port()
        # Read at each request: a start on a port clash moves the processes to new ports.
        self.deployment = deployment
        self.routes = worker_routes()
        self._next = itertools.cycle(range(len(deployment.workers)))
        self._lock = threading.Lock()
        self.served: Counter[str] = Counter()  # requests answered, by upstream
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def upstreams(self, path: str) -> list[str]:
        """Where a request for `path` goes, in the order to try."""
        if not any(r.search(path) for r in self.routes):
            return [self.deployment.main.base_url]
        with self._lock:
            first = next(self._next)
        urls = self.deployment.worker_urls
        return [urls[(first + i) % len(urls)] for i in range(len(urls))]

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> requests.Response:
        error: Exception | None = None
        for upstream in self.upstreams(path.split("?", 1)[0]):
            try:
                # No connection pool: a worker that restarted leaves no stale connections.
                r = requests.request(
                    method, upstream + path, headers=headers, data=body, timeout=120,
                    allow_redirects=False,
                )  # fmt: skip
            except requests.ConnectionError as e:
                # Only a refused connection goes on to the next worker: a request that reached
                # one is not sent twice (nginx's rule for non-idempotent requests).
                if not isinstance(getattr(e.args[0], "reason", None), NewConnectionError):
                    raise
                error = e
                continue
            with self._lock:
                self.served[upstream] += 1
            return r
        assert error is not None
        raise error

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                try:
                    r = proxy.forward(self.command, self.path, headers, body)
                    status, content = r.status_code, r.content
                    out = [(k, v) for k, v in r.headers.items() if k.lower() not in _HOP_BY_HOP]
                except requests.RequestException:
                    status, content, out = 502, b'{"errcode":"M_UNKNOWN"}', []
                self.send_response(status)
                for k, v in out:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def start(self) -> RoutingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Deployment:
    def __init__(
        self, d: WorkerDeployment, mock: MockProcess, bridge: BridgeProcess, proxy: RoutingProxy
    ):
        self.d, self.mock, self.bridge, self.proxy = d, mock, bridge, proxy
        self.api: CommerceClient = mock.client()
        self.server_name = d.main.server_name

    def shop_room(self, user: MatrixClient, shop_id: str) -> str:
        """The shop's room, joined (by alias, on whichever worker the join goes to)."""
        return user.join(f"#shop_{shop_id}:{self.server_name}")

    def ghost(self, shop_id: str) -> str:
        return f"@shop_{shop_id}:{self.server_name}"

    def new_item(self, shop_id: str, title: str) -> str:
        created = self.api.post(
            f"/v1/shops/{shop_id}/items",
            {"title": title, "price": {"amount": 990, "currency": "CNY"}},
        )
        return str(created["item_id"])


@pytest.fixture(scope="module")
def deployment(test_root: Path) -> Iterator[Deployment]:
    if not (postgres_available() and redis_available()):
        skip_or_fail("workers need PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379")
    root = test_root / "commerce-bridge-workers"
    mock = MockProcess(root / "mock").start()
    d: WorkerDeployment | None = None
    proxy: RoutingProxy | None = None
    bridge = BridgeProcess(root / "bridge")
    try:
        module_config = {
            "commerce": {"base_url": mock.base_url, "api_key": mock.api_key},
            "payment_providers": {"laiwang-pay": {"verify_key": mock.print_("--print-verify-key")}},
        }
        d = WorkerDeployment(root / "hs", module_config=module_config)
        proxy = RoutingProxy(d).start()
        registration = bridge.configure(proxy.base_url, d.main.server_name, mock)
        # The shared homeserver.yaml: every process loads the registration; worker1, not the
        # main process, sends the transactions (Synapse's docs/workers.md).
        d.main.spec.extra["app_service_config_files"] = [str(registration)]
        d.main.spec.extra["notify_appservices_from_worker"] = APPSERVICE_WORKER
        d.start()
        assert d.main.server_name in registration.read_text(), "server renamed on a port clash"
        bridge.start()
        yield Deployment(d, mock, bridge, proxy)
    finally:
        bridge.stop()
        if proxy is not None:
            proxy.stop()
        if d is not None:
            d.stop()
        mock.stop()


def shares_of(user: MatrixClient, room: str, item_id: str) -> list[dict[str, Any]]:
    return [e for e in item_shares(user, room) if e["content"][ITEM].get("item_id") == item_id]


def test_a_new_item_is_shared_once_in_the_shops_room(deployment: Deployment) -> None:
    t = deployment
    subscriber = t.d.new_user("subscriber")
    room = t.shop_room(subscriber, "teahouse")
    item_id = t.new_item("teahouse", "Dragon Well")

    wait_until(lambda: shares_of(subscriber, room, item_id), timeout=60)
    time.sleep(SETTLE_S)
    (share,) = shares_of(subscriber, room, item_id)
    assert share["sender"] == t.ghost("teahouse")
    # The bridge's traffic did cross both workers (its media went to the main process).
    assert all(t.proxy.served[url] for url in [*t.d.worker_urls, t.d.main.base_url])
    # Both workers serve the same single copy.
    for i in (0, 1):
        assert [e["event_id"] for e in shares_of(t.d.on(subscriber, i), room, item_id)] == [
            share["event_id"]
        ]

    # The count sees a copy when there is one: the ghost posts the card again (another
    # transaction id, as a second sender would).
    as_token = t.bridge.config_path.read_text().split("as_token:", 1)[1].split()[0]
    ghost = MatrixClient(t.d.worker_urls[1], t.ghost("teahouse"), as_token)
    ghost.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.message/copy-{item_id}",
        share["content"],
        params={"user_id": t.ghost("teahouse")},
    )
    wait_until(lambda: len(shares_of(subscriber, room, item_id)) == 2 or None, timeout=30)


def test_a_delivered_order_is_announced_once(deployment: Deployment) -> None:
    t = deployment
    owner = t.d.new_user("buyer")
    account = t.api.linked_account("Buyer", owner.user_id)
    order = t.api.delivered_order(account, "item3")

    room = wait_until(lambda: next(iter(owner.invited_rooms()), None), timeout=60)
    owner.join(room)
    wait_until(lambda: item_shares(owner, room), timeout=60)
    time.sleep(SETTLE_S)
    (card,) = item_shares(owner, room)
    assert card["sender"] == f"@commerce:{t.server_name}"
    block = card["content"][ITEM]
    assert (block["item_id"], block["bought"], block["order_id"]) == (
        "item3",
        True,
        order["order_id"],
    )
    # One direct chat: one invite, from the bot.
    invites = [
        e["sender"]
        for e in owner.messages(room, limit=100)
        if e["type"] == "m.room.member"
        and e["state_key"] == owner.user_id
        and e["content"]["membership"] == "invite"
    ]
    assert invites == [f"@commerce:{t.server_name}"]
    assert owner.invited_rooms() == set()

    # A second delivery: the same chat, one more card.
    second = t.api.delivered_order(account, "item4")
    wait_until(lambda: len(item_shares(owner, room)) >= 2, timeout=60)
    time.sleep(SETTLE_S)
    orders = [e["content"][ITEM]["order_id"] for e in item_shares(owner, room)]
    assert orders == [second["order_id"], order["order_id"]]
    assert owner.invited_rooms() == set()


def test_a_worker_restart_mid_stream_loses_and_doubles_nothing(deployment: Deployment) -> None:
    """worker1 (half the bridge's client traffic, and the application-service transactions)
    goes down and comes back while items keep coming."""
    t = deployment
    watcher = t.d.new_user("watcher")
    room = t.shop_room(watcher, "stationery")
    reader = t.d.on(watcher, 1)  # worker2 stays up
    items = [t.new_item("stationery", "Eraser")]
    wait_until(lambda: shares_of(reader, room, items[0]), timeout=60)

    worker1 = t.d.workers[0]
    worker1.stop()
    try:
        items += [t.new_item("stationery", title) for title in ("Ruler", "Compass")]
        # The proxy sends the bridge's traffic to worker2 meanwhile.
        wait_until(lambda: all(shares_of(reader, room, i) for i in items), timeout=60)
    finally:
        worker1.start()
        worker1.wait_ready()
    items.append(t.new_item("stationery", "Stapler"))
    wait_until(lambda: shares_of(watcher, room, items[-1]), timeout=60)
    time.sleep(SETTLE_S)
    posted = [e["content"][ITEM]["item_id"] for e in item_shares(watcher, room)]
    assert sorted(posted) == sorted(items)
    # The bridge still gets its transactions from worker1: leaving the direct chat (a
    # membership event only the transaction carries) makes the bot leave too.
    owner = t.d.new_user("leaver")
    account = t.api.linked_account("Leaver", owner.user_id)
    t.api.delivered_order(account, "item5")
    dm = wait_until(lambda: next(iter(owner.invited_rooms()), None), timeout=60)
    owner.join(dm)
    wait_until(lambda: item_shares(owner, dm), timeout=60)
    owner.leave(dm)
    bot = f"@commerce:{t.server_name}"
    wait_until(lambda: last_membership(t, dm, bot) == "leave", timeout=60)


def last_membership(t: Deployment, room: str, user_id: str) -> str | None:
    found = sql(
        t.d.main,
        "SELECT membership FROM room_memberships WHERE room_id = ? AND user_id = ?"
        " ORDER BY event_stream_ordering DESC LIMIT 1",
        room,
        user_id,
    )
    return str(found[0][0]) if found else None
