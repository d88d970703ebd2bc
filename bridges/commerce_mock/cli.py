"""`laiwang-commerce-mock`: run the mock, or print its verify key or API key."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from bridges.commerce_mock import receipts
from bridges.commerce_mock.app import MockConfig, make_app, now_ms
from bridges.commerce_mock.store import Store

DEFAULT_LISTEN = "127.0.0.1:8090"
DEFAULT_PROVIDER = "laiwang-pay"
DB_FILE = "commerce.db"


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError("expected HOST:PORT, such as 127.0.0.1:8090")
    return host.strip("[]"), int(port)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="laiwang-commerce-mock",
        description="The commerce service mock: shops, orders and a payment provider.",
    )
    p.add_argument("--data", required=True, type=Path, help="directory for its SQLite and keys")
    p.add_argument("--listen", default=DEFAULT_LISTEN, type=parse_listen, help="HOST:PORT")
    p.add_argument(
        "--public-url",
        help="base URL of item and track pages and images (default: http://HOST:PORT)",
    )
    p.add_argument("--api-key", help="the bearer token callers present (default: one in --data)")
    p.add_argument("--provider", default=DEFAULT_PROVIDER, help="provider name of its receipts")
    p.add_argument(
        "--print-verify-key",
        action="store_true",
        help="print the receipts' verify key (the module's payment_providers value) and exit",
    )
    p.add_argument("--print-api-key", action="store_true", help="print the API key and exit")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    data: Path = args.data
    data.mkdir(parents=True, exist_ok=True)
    key = receipts.load_signing_key(data)
    if args.print_verify_key or args.print_api_key:
        if args.print_verify_key:
            print(receipts.verify_key_line(key))
        if args.print_api_key:
            print(args.api_key or receipts.load_api_key(data))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    host, port = args.listen
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    public_url = (args.public_url or f"http://{netloc}").rstrip("/")
    store = Store(data / DB_FILE)
    if store.seed_if_empty(now_ms()):
        logging.getLogger(__name__).info("Seeded the catalogue in %s", data)
    config = MockConfig(
        api_key=args.api_key or receipts.load_api_key(data),
        provider=args.provider,
        public_url=public_url,
        signing_key=key,
    )
    try:
        # Long polls in flight must not hold a stop for long.
        web.run_app(make_app(store, config), host=host, port=port, print=None, shutdown_timeout=2)
    finally:
        store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
