"""The commerce service mock and the commerce bridge as real processes (for the demo, the tests
and the benchmarks), and a small client for the mock's HTTP API."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from devtools.devserver import PROJECT_ROOT, free_port


def checkout_env() -> dict[str, str]:
    """The environment for a process that must import this checkout's code (see devserver)."""
    path = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path)


class MockProcess:
    """`python -m bridges.commerce_mock` on `port` (a free one by default) with its data in
    `data`."""

    def __init__(
        self,
        data: Path,
        *,
        api_key: str | None = None,
        provider: str | None = None,
        port: int | None = None,
    ):
        self.data = data
        self.api_key_arg = api_key
        self.provider = provider
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._api_key: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _args(self, *extra: str) -> list[str]:
        args = [sys.executable, "-m", "bridges.commerce_mock", "--data", str(self.data)]
        if self.api_key_arg:
            args += ["--api-key", self.api_key_arg]
        if self.provider:
            args += ["--provider", self.provider]
        return args + list(extra)

    def print_(self, flag: str) -> str:
        return subprocess.run(
            self._args(flag),
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
            env=checkout_env(),
        ).stdout.strip()

    @property
    def api_key(self) -> str:
        if self._api_key is None:
            self._api_key = self.api_key_arg or self.print_("--print-api-key")
        return self._api_key

    def start(self) -> MockProcess:
        self.data.mkdir(parents=True, exist_ok=True)
        log = (self.data / "mock.log").open("ab")
        self.proc = subprocess.Popen(
            self._args("--listen", f"127.0.0.1:{self.port}"),
            stdout=log,
            stderr=log,
            env=checkout_env(),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mock exited early; see {self.data / 'mock.log'}")
            try:
                if requests.get(f"{self.base_url}/health", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError("mock did not start within 30s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self, api_key: str | None = None) -> CommerceClient:
        return CommerceClient(self.base_url, self.api_key if api_key is None else api_key)


class CommerceError(Exception):
    def __init__(self, response: requests.Response):
        self.status = response.status_code
        self.body = response.json()
        self.errcode = self.body.get("errcode")
        super().__init__(f"{self.status} {self.body}")


class CommerceClient:
    def __init__(self, base_url: str, api_key: str):
        self.base_url = base_url
        self.api_key = api_key
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"

    def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        r = self.session.request(
            method, f"{self.base_url}{path}", json=body, timeout=kwargs.pop("timeout", 30), **kwargs
        )
        if r.status_code != 200:
            raise CommerceError(r)
        return r.json()

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, body, **kwargs)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def linked_account(self, name: str, user_id: str) -> str:
        """A new account linked to `user_id`."""
        created = self.post("/v1/accounts", {"display_name": name})
        self.post("/v1/links", {"token": created["link_token"], "matrix_user_id": user_id})
        return str(created["account_id"])

    def delivered_order(self, account_id: str, item_id: str) -> dict[str, Any]:
        order = self.post("/v1/orders", {"account_id": account_id, "item_id": item_id})
        self.post(f"/v1/orders/{order['order_id']}/pay")
        return dict(self.post(f"/v1/orders/{order['order_id']}/deliver"))


class BridgeProcess:
    """`python -m bridges.commerce_bridge` for a homeserver and a mock: `configure()` writes its
    config and registration (to list in the homeserver's `app_service_config_files`) before the
    homeserver starts; `start()` runs it once the homeserver is up."""

    def __init__(self, directory: Path, port: int | None = None):
        self.directory = directory
        self.port = port or free_port()
        self.config_path = directory / "bridge.yaml"
        self.registration_path = directory / "registration.yaml"
        self.proc: subprocess.Popen[bytes] | None = None

    def configure(self, hs_base_url: str, domain: str, mock: MockProcess) -> Path:
        import yaml

        self.directory.mkdir(parents=True, exist_ok=True)
        config = {
            "homeserver": {"address": hs_base_url, "domain": domain},
            "appservice": {
                "hostname": "127.0.0.1",
                "port": self.port,
                "address": f"http://127.0.0.1:{self.port}",
                "database": "bridge.db",
            },
            "commerce": {
                "base_url": mock.base_url,
                "api_key": mock.api_key,
                "poll_timeout_ms": 5000,
            },
        }
        self.config_path.write_text(yaml.safe_dump(config))
        subprocess.run(
            self._args("-g", "-r", str(self.registration_path)),
            check=True,
            capture_output=True,
            timeout=60,
            env=checkout_env(),
        )
        return self.registration_path

    def _args(self, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "bridges.commerce_bridge",
            "-c",
            str(self.config_path),
            *extra,
        ]

    def start(self) -> BridgeProcess:
        log = (self.directory / "bridge.log").open("ab")
        self.proc = subprocess.Popen(self._args(), stdout=log, stderr=log, env=checkout_env())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bridge exited early; see {self.directory / 'bridge.log'}")
            try:
                ready = requests.get(f"http://127.0.0.1:{self.port}/_matrix/mau/ready", timeout=1)
                if ready.ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise RuntimeError("bridge was not ready within 60s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        return (self.directory / "bridge.log").read_text(errors="replace")
