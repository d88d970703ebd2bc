#!/usr/bin/env python3
"""Bootstrap and run Laiwang with nothing but Python 3.10+ and pip.

    python3 run.py demo     # a homeserver with the module on http://localhost:8008
    python3 run.py test     # the whole test suite (SQLite, then again on PostgreSQL)
    python3 run.py lint     # ruff and mypy
    python3 run.py bench    # every benchmark, written up in docs/benchmarks.md (--quick: smaller)

The first run creates ./.venv and installs the project (with its test, lint and bench extras) into it;
later runs reuse it and reinstall only when setup.cfg has changed. Set LAIWANG_VENV to use another
virtual environment.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("LAIWANG_VENV", ROOT / ".venv"))
PY = VENV / "bin" / "python"


def ensure_venv() -> None:
    stamp = VENV / ".laiwang-installed"
    want = hashlib.sha256((ROOT / "setup.cfg").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == want and PY.exists():
        return
    if not PY.exists():
        print(f"Creating virtual environment in {VENV} …", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    print("Installing laiwang and its dependencies (first run takes a few minutes) …", flush=True)
    subprocess.run([*pip, "-e", f"{ROOT}[test,lint,bench]"], check=True)
    stamp.write_text(want)


def _run_forwarding_signals(cmd: list[str]) -> int:
    """Run the demo so that Ctrl-C reaches it once and its own clean shutdown decides the exit."""
    proc = subprocess.Popen(cmd)

    def forward(signum: int, frame: object) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    return proc.wait()


def _postgres_listening() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def run_tests(args: list[str]) -> int:
    """The whole suite on SQLite, then its end-to-end tests again with every homeserver on
    PostgreSQL (when one answers at 127.0.0.1:5432; with CI=true it must). Arguments select
    tests and run one pass, on SQLite (or on PostgreSQL with LAIWANG_TEST_DATABASE=postgres)."""
    pytest = [str(PY), "-m", "pytest"]
    if args:
        return subprocess.call([*pytest, *args])
    status = subprocess.call(pytest)
    if not _postgres_listening() and not os.environ.get("CI"):
        print("No PostgreSQL at 127.0.0.1:5432: the PostgreSQL pass is skipped.", flush=True)
        return status
    print("\nThe end-to-end tests again, every homeserver on PostgreSQL:", flush=True)
    env = dict(os.environ, LAIWANG_TEST_DATABASE="postgres")
    # Tests that start their own PostgreSQL servers ran in the first pass, and so did those
    # with no homeserver database to change: the commerce mock alone (its own SQLite), the
    # browser tests (the web companion's pages, over endpoints the other tests cover on both),
    # and start-up (a bad config stops Synapse before it opens a database; the README's demo
    # runs on SQLite by design). The fuzzer runs on both: it found a PostgreSQL-only 500.
    # (Run side by side, the two passes took longer than one after the other: two cores.)
    same_either_way = ("test_commerce_mock", "test_web", "test_foundation")
    deselect = [f"--ignore=tests/e2e/{name}.py" for name in same_either_way]
    pg_pass = [*pytest, "tests/e2e", "-m", "not postgres", *deselect]
    return status | subprocess.call(pg_pass, env=env)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "lint", "bench"):
        print(__doc__)
        return 2
    ensure_venv()
    command, rest = argv[0], argv[1:]
    os.chdir(ROOT)
    if command == "demo":
        return _run_forwarding_signals([str(PY), "-m", "devtools.demo", *rest])
    if command == "test":
        return run_tests(rest)
    if command == "bench":
        env = dict(os.environ, LAIWANG_BENCH_COMMAND=" ".join(["python3 run.py bench", *rest]))
        return subprocess.call([str(PY), "-m", "bench.runner", *rest], env=env)
    status = subprocess.call([str(PY), "-m", "ruff", "check", "."])
    status |= subprocess.call([str(PY), "-m", "ruff", "format", "--check", "."])
    return status | subprocess.call([str(PY), "-m", "mypy"])


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
