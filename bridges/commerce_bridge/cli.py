"""`laiwang-commerce-bridge`: write the registration (-g), print an example config (-e), or run."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from mautrix.appservice import AppService
from mautrix.appservice.state_store import ASStateStore
from mautrix.client.state_store import MemoryStateStore

from bridges.commerce_bridge.bridge import CommerceBridge
from bridges.commerce_bridge.commerce import CommerceClient
from bridges.commerce_bridge.config import (
    EXAMPLE_CONFIG,
    BridgeConfig,
    ConfigError,
    generate_registration,
)
from bridges.commerce_bridge.db import BridgeDB


class MemoryASStateStore(MemoryStateStore, ASStateStore):
    """Room state the bridge learns while running; the database holds what must persist."""

    def __init__(self) -> None:
        MemoryStateStore.__init__(self)
        ASStateStore.__init__(self)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="laiwang-commerce-bridge",
        description="Matrix application service bringing the commerce service's shops in.",
    )
    p.add_argument("-c", "--config", type=Path, default=Path("bridge.yaml"))
    p.add_argument("-g", "--generate-registration", action="store_true")
    p.add_argument("-r", "--registration", type=Path, default=Path("registration.yaml"))
    p.add_argument("-e", "--example-config", action="store_true", help="print an example config")
    return p


async def run(config: BridgeConfig) -> None:
    if not config.as_token or not config.hs_token:
        raise ConfigError("appservice.as_token and hs_token are not set: generate them (-g)")
    db = BridgeDB(config.database)
    await db.start()
    az = AppService(
        server=config.hs_address,
        domain=config.domain,
        as_token=config.as_token,
        hs_token=config.hs_token,
        bot_localpart=config.bot_username,
        id=config.id,
        state_store=MemoryASStateStore(),
    )
    session = aiohttp.ClientSession()
    bridge = CommerceBridge(
        config, az, db, CommerceClient(session, config.commerce_url, config.commerce_api_key)
    )
    az.query_alias = bridge.query_alias  # type: ignore[assignment]
    az.matrix_event_handler(bridge.on_matrix_event)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def serve() -> None:
        await bridge.prepare()  # retries until the homeserver and the service answer
        az.ready = True
        logging.getLogger(__name__).info("Commerce bridge ready")
        await bridge.run()

    await az.start(config.hostname, config.port)
    try:
        task = asyncio.create_task(serve())
        # A stop signal ends the bridge at any point, start-up retries included.
        await asyncio.wait([task, asyncio.create_task(stop.wait())], return_when="FIRST_COMPLETED")
        bridge.stop()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    finally:
        await az.stop()
        await session.close()
        await db.stop()


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.example_config:
        print(EXAMPLE_CONFIG, end="")
        return
    try:
        if args.generate_registration:
            generate_registration(args.config, args.registration)
            print(f"Wrote {args.registration}; tokens saved in {args.config}")
            return
        config = BridgeConfig.load(args.config)
        logging.basicConfig(
            level=config.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
        asyncio.run(run(config))
    except ConfigError as e:
        print(f"laiwang-commerce-bridge: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
