"""Run real Synapse processes with the module loaded: for the demo command and the tests.

Writes a complete homeserver config into a folder (SQLite or PostgreSQL, the module enabled,
registration by shared secret, optionally a TLS federation listener for loopback federation),
starts `python -m synapse.app.homeserver` and waits until it answers. Only the standard library
and packages Synapse itself depends on are used here, so the demo needs nothing extra.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import attr
import yaml

# The checkout this file is in: Synapse processes load the module from here.
PROJECT_ROOT = Path(__file__).resolve().parents[1]

LOOPBACK_WHITELIST = ["127.0.0.0/8", "::1/128"]
# Where the module serves the msisdn validation endpoints (laiwang_module.rest.msisdn).
MSISDN_DELEGATE_PATH = "/_synapse/client/laiwang/identity"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_self_signed_cert(cert_path: Path, key_path: Path) -> None:
    """A certificate for `localhost`, for the TLS federation listener (peers don't verify it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def write_signing_key(path: Path) -> None:
    from signedjson.key import generate_signing_key, write_signing_keys

    with path.open("w") as f:
        write_signing_keys(f, [generate_signing_key("a_" + secrets.token_hex(2))])


# Generous limits: the tests drive many users from one address in a short time.
_TEST_RATELIMITS: dict[str, Any] = {
    key: {"per_second": 1000, "burst_count": 1000}
    for key in (
        "rc_message",
        "rc_registration",
        "rc_admin_redaction",
        "rc_3pid_validation",
        "rc_presence",
        "rc_delayed_event_mgmt",
        "rc_room_creation",
        "rc_reports",
    )
}
_TEST_RATELIMITS.update(
    {
        "rc_login": {
            k: {"per_second": 1000, "burst_count": 1000}
            for k in ("address", "account", "failed_attempts")
        },
        "rc_joins": {k: {"per_second": 1000, "burst_count": 1000} for k in ("local", "remote")},
        "rc_joins_per_room": {"per_second": 1000, "burst_count": 1000},
        "rc_invites": {
            k: {"per_second": 1000, "burst_count": 1000}
            for k in ("per_room", "per_user", "per_issuer")
        },
        "rc_federation": {"window_size": 1000, "sleep_limit": 1000, "reject_limit": 1000},
    }
)


@attr.s(auto_attribs=True)
class HomeserverSpec:
    """What one homeserver looks like. `database` is None for SQLite, or psycopg2 args."""

    directory: Path
    client_port: int
    server_name: str
    federation_port: int | None = None
    module_config: dict[str, Any] = attr.Factory(dict)
    database: dict[str, Any] | None = None
    registration_shared_secret: str = attr.Factory(lambda: secrets.token_hex(16))
    relaxed_ratelimits: bool = False
    # Serve Prometheus metrics (Synapse's and the module's) at /_synapse/metrics on the client port.
    metrics: bool = False
    extra: dict[str, Any] = attr.Factory(dict)
    # Worker mode: generic workers by name → client port; needs PostgreSQL and Redis.
    workers: dict[str, int] = attr.Factory(dict)
    replication_port: int | None = None
    # The worker that runs the background tasks (`run_background_tasks_on`); None: the main one.
    background_worker: str | None = None
    # The worker whose listener takes inbound federation (on `federation_port`) instead of the
    # main process; None: the main process.
    federation_worker: str | None = None
    # Synapse loads its TLS certificate only when the main config has a TLS listener, workers
    # included: with a federation worker, the main process listens (unused) on this port.
    main_tls_port: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def config_path(self) -> Path:
        return self.directory / "homeserver.yaml"

    def write(self) -> Path:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        if not (d / "signing.key").exists():
            write_signing_key(d / "signing.key")
        listeners: list[dict[str, Any]] = [
            {
                "port": self.client_port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ]
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "public_baseurl": self.base_url + "/",
            "pid_file": str(d / "homeserver.pid"),
            "listeners": listeners,
            "database": (
                {"name": "sqlite3", "args": {"database": str(d / "homeserver.db")}}
                if self.database is None
                else {"name": "psycopg2", "args": self.database}
            ),
            "log_config": str(d / "log.config"),
            "media_store_path": str(d / "media_store"),
            "registration_shared_secret": self.registration_shared_secret,
            "report_stats": False,
            "signing_key_path": str(d / "signing.key"),
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "enable_registration": False,
            "presence": {"enabled": True},
            "url_preview_enabled": False,
            # Invites must carry the contact-request state so that the invitee's server can
            # apply its acquaintances-only policy before it is in the room.
            # Knocks carry the cluster state so that the knocker's server knows it asked a
            # cluster (rooms.clusters.CLUSTER_STATE). Timeline invites carry the timeline state
            # so that the invitee's server accepts them (rooms.shares.TIMELINE_STATE).
            "room_prejoin_state": {
                "additional_event_types": [
                    "org.laiwang.acquaintance",
                    "org.laiwang.cluster",
                    "org.laiwang.timeline",
                ]
            },
            "modules": [{"module": "laiwang_module.LaiwangModule", "config": self.module_config}],
        }
        if self.federation_port is not None:
            if not (d / "tls.crt").exists():
                write_self_signed_cert(d / "tls.crt", d / "tls.key")
            if self.federation_worker is None:
                listeners.append(self._federation_listener())
            else:
                assert self.main_tls_port is not None
                listeners.append({**self._federation_listener(), "port": self.main_tls_port})
            config.update(
                {
                    "tls_certificate_path": str(d / "tls.crt"),
                    "tls_private_key_path": str(d / "tls.key"),
                    "federation_verify_certificates": False,
                    "ip_range_whitelist": LOOPBACK_WHITELIST,
                    # Loopback peers come and go with the tests: retry them at once.
                    "federation": {
                        "destination_min_retry_interval": 100,
                        "destination_max_retry_interval": 1000,
                    },
                }
            )
        else:
            config["federation_domain_whitelist"] = []
            # Loopback services of the tests. The msisdn delegate below needs none: Synapse calls
            # URLs of its own config with a client that ip_range_blacklist does not restrict.
            config["ip_range_whitelist"] = LOOPBACK_WHITELIST
        # Phone numbers are validated by the module itself, on this same server.
        config["account_threepid_delegates"] = {"msisdn": self.base_url + MSISDN_DELEGATE_PATH}
        if self.workers:
            assert self.replication_port is not None and self.database is not None
            listeners.append(
                {
                    "port": self.replication_port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "resources": [{"names": ["replication"]}],
                }
            )
            config["instance_map"] = {"main": {"host": "127.0.0.1", "port": self.replication_port}}
            config["redis"] = {"enabled": True, "host": "127.0.0.1", "port": 6379}
            if self.background_worker is not None:
                assert self.background_worker in self.workers
                config["run_background_tasks_on"] = self.background_worker
            for name, port in self.workers.items():
                self._write_worker(name, port)
        if self.metrics:
            config["enable_metrics"] = True
            listeners[0]["resources"][0]["names"].append("metrics")
        if self.relaxed_ratelimits:
            config.update(_TEST_RATELIMITS)
        config.update(self.extra)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        (d / "log.config").write_text(_log_config(d / "homeserver.log"))
        return self.config_path

    def _federation_listener(self) -> dict[str, Any]:
        return {
            "port": self.federation_port,
            "bind_addresses": ["127.0.0.1"],
            "type": "http",
            "tls": True,
            "resources": [{"names": ["federation"], "compress": False}],
        }

    def worker_config_path(self, name: str) -> Path:
        return self.directory / f"{name}.yaml"

    def _write_worker(self, name: str, port: int) -> None:
        worker = {
            "worker_app": "synapse.app.generic_worker",
            "worker_name": name,
            "worker_listeners": [
                {
                    "type": "http",
                    "port": port,
                    "bind_addresses": ["127.0.0.1"],
                    "resources": [{"names": ["client"]}],
                },
                *([self._federation_listener()] if name == self.federation_worker else []),
            ],
            "worker_log_config": str(self.directory / f"{name}.log.config"),
        }
        self.worker_config_path(name).write_text(yaml.safe_dump(worker, sort_keys=False))
        (self.directory / f"{name}.log.config").write_text(
            _log_config(self.directory / f"{name}.log")
        )


def _log_config(log_file: Path) -> str:
    return yaml.safe_dump(
        {
            "version": 1,
            "formatters": {
                "precise": {
                    "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - "
                    "%(request)s - %(message)s"
                }
            },
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "formatter": "precise",
                    "filename": str(log_file),
                    "filters": ["context"],
                    "encoding": "utf8",
                }
            },
            "filters": {"context": {"()": "synapse.logging.context.LoggingContextFilter"}},
            "loggers": {
                "synapse.storage.SQL": {"level": "INFO"},
                "laiwang_module": {"level": "DEBUG"},
            },
            "root": {"level": "INFO", "handlers": ["file"]},
            "disable_existing_loggers": False,
        }
    )


class StartupError(RuntimeError):
    pass


class SynapseProcess:
    """One running homeserver process."""

    def __init__(self, spec: HomeserverSpec, worker: str | None = None):
        self.spec = spec
        self.worker = worker  # None: the main process
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def output_path(self) -> Path:
        return self.spec.directory / (f"{self.worker}.stdout.log" if self.worker else "stdout.log")

    @property
    def base_url(self) -> str:
        port = self.spec.workers[self.worker] if self.worker else self.spec.client_port
        return f"http://127.0.0.1:{port}"

    def start(self) -> None:
        if self.worker is None:
            self.spec.write()
            args = ["synapse.app.homeserver", "-c", str(self.spec.config_path)]
        else:
            args = [
                "synapse.app.generic_worker",
                "-c",
                str(self.spec.config_path),
                "-c",
                str(self.spec.worker_config_path(self.worker)),
            ]
        out = self.output_path.open("ab")
        # Synapse imports the module from this checkout, whatever an editable install of the
        # virtualenv points at (several worktrees may share one virtualenv).
        path = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p)
        env = dict(os.environ, SYNAPSE_ASYNC_IO_REACTOR="0", PYTHONPATH=path)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.spec.directory,
            env=env,
        )
        out.close()

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise StartupError(
                    f"Synapse exited with {self.proc.returncode}:\n{self.output()[-4000:]}"
                )
            try:
                with urllib.request.urlopen(self.base_url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise StartupError(f"Synapse did not answer within {timeout}s:\n{self.output()[-4000:]}")

    def output(self) -> str:
        try:
            return self.output_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log(self) -> str:
        try:
            name = f"{self.worker}.log" if self.worker else "homeserver.log"
            return (self.spec.directory / name).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()
        self.wait_ready()


def register_user(
    base_url: str, shared_secret: str, localpart: str, password: str, admin: bool = False
) -> dict[str, Any]:
    """Register through Synapse's shared-secret admin API; returns its JSON (with the token)."""
    url = base_url + "/_synapse/admin/v1/register"
    with urllib.request.urlopen(url, timeout=30) as r:
        nonce = json.load(r)["nonce"]
    body = {
        "nonce": nonce,
        "username": localpart,
        "password": password,
        "admin": admin,
        # The MAC covers the fields up to here; the trailing separator is not part of it.
        "mac": hmac.new(
            shared_secret.encode(),
            b"\x00".join(
                p.encode() for p in (nonce, localpart, password, "admin" if admin else "notadmin")
            ),
            hashlib.sha1,
        ).hexdigest(),
    }
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return dict(json.load(r))


def login(base_url: str, localpart: str, password: str) -> dict[str, Any]:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": localpart},
        "password": password,
    }
    req = urllib.request.Request(
        base_url + "/_matrix/client/v3/login",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return dict(json.load(r))
