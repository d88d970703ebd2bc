"""Every SQL statement of the mock: one SQLite file in the data directory.

Each public method is one transaction (`BEGIN IMMEDIATE`, so two processes on the same file
serialize too). The rules that must hold under concurrency live in the schema: a payment's
idempotency key and a receipt id are primary/unique keys, an order moves on with a conditional
UPDATE, a link token is consumed by a conditional UPDATE, and an event is written in the same
transaction as the change it announces.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import attr

from bridges.commerce_mock import catalogue

T = TypeVar("T")

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE shops (
    shop_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    currency TEXT NOT NULL
);
CREATE TABLE items (
    n INTEGER PRIMARY KEY,  -- item<n>: the order items were created in
    item_id TEXT NOT NULL UNIQUE,
    shop_id TEXT NOT NULL REFERENCES shops (shop_id),
    title TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    image_url TEXT,  -- NULL: the mock draws the image itself
    created_ts BIGINT NOT NULL
);
CREATE TABLE tracks (
    n INTEGER PRIMARY KEY,
    track_id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    artist TEXT NOT NULL,
    album TEXT NOT NULL,
    duration_ms BIGINT NOT NULL
);
CREATE TABLE accounts (
    account_id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    matrix_user_id TEXT UNIQUE,
    created_ts BIGINT NOT NULL
);
CREATE TABLE link_tokens (
    token_hash TEXT PRIMARY KEY,  -- sha256 of the token: the file holds no usable token
    account_id TEXT NOT NULL REFERENCES accounts (account_id),
    expires_ts BIGINT NOT NULL,
    used_ts BIGINT
);
CREATE TABLE orders (
    order_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (account_id),
    item_id TEXT NOT NULL REFERENCES items (item_id),
    quantity INTEGER NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    state TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    paid_ts BIGINT,
    delivered_ts BIGINT,
    delivered_to TEXT  -- the linked Matrix user when it was delivered
);
CREATE TABLE payments (
    idempotency_key TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    receipt_id TEXT NOT NULL UNIQUE,
    payer_account TEXT NOT NULL,
    payee_account TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    receipt TEXT NOT NULL,
    ts BIGINT NOT NULL
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    ref TEXT NOT NULL,  -- item_id or order_id
    matrix_user_id TEXT,
    ts BIGINT NOT NULL
);
"""

ORDER_CREATED, ORDER_PAID, ORDER_DELIVERED = "created", "paid", "delivered"
ITEM_CREATED, ORDER_DELIVERED_EVENT = "item.created", "order.delivered"


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Shop:
    shop_id: str
    name: str
    description: str
    currency: str


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Item:
    item_id: str
    shop_id: str
    shop_name: str
    title: str
    amount: int
    currency: str
    image_url: str | None
    created_ts: int


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Track:
    track_id: str
    title: str
    artist: str
    album: str
    duration_ms: int


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Account:
    account_id: str
    display_name: str
    matrix_user_id: str | None
    created_ts: int


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Order:
    order_id: str
    account_id: str
    matrix_user_id: str | None  # the account's linked user now
    item_id: str
    quantity: int
    amount: int
    currency: str
    state: str
    created_ts: int
    paid_ts: int | None
    delivered_ts: int | None


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Event:
    id: int
    type: str
    ref: str
    matrix_user_id: str | None
    ts: int


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Charge:
    receipt: dict[str, Any]
    created: bool  # False: the same key was used before and this is its receipt


class IdempotencyConflict(Exception):
    """The key was used before with a different request."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_ITEM_COLUMNS = (
    "i.item_id, i.shop_id, s.name, i.title, i.amount, i.currency, i.image_url, i.created_ts"
)
_ORDER_COLUMNS = (
    "o.order_id, o.account_id, a.matrix_user_id, o.item_id, o.quantity, o.amount, o.currency,"
    " o.state, o.created_ts, o.paid_ts, o.delivered_ts"
)


class Store:
    def __init__(self, path: Path):
        # Autocommit mode: transactions are begun explicitly in `_txn`.
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self._prepare()

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def _txn(self) -> Iterator[sqlite3.Cursor]:
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        else:
            cur.execute("COMMIT")

    def _run(self, fn: Callable[[sqlite3.Cursor], T]) -> T:
        with self._txn() as cur:
            return fn(cur)

    # --- schema and seed --------------------------------------------------------------------

    def _prepare(self) -> None:
        with self._txn() as cur:
            (version,) = cur.execute("PRAGMA user_version").fetchone()
            if version == 0:
                # One by one: executescript() would COMMIT the open transaction.
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        cur.execute(statement)
                cur.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise RuntimeError(f"unknown schema version {version}; newer mock?")

    def seed_if_empty(self, now: int) -> bool:
        """Write the seed catalogue on first start; False when it is already there."""

        def seed_txn(cur: sqlite3.Cursor) -> bool:
            if cur.execute("SELECT 1 FROM shops LIMIT 1").fetchone():
                return False
            n = 0
            for shop in catalogue.SHOPS:
                cur.execute(
                    "INSERT INTO shops (shop_id, name, description, currency) VALUES (?, ?, ?, ?)",
                    (shop.shop_id, shop.name, shop.description, shop.currency),
                )
                for title, amount in shop.items:
                    n += 1
                    cur.execute(
                        "INSERT INTO items (n, item_id, shop_id, title, amount, currency,"
                        " image_url, created_ts) VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
                        (n, catalogue.item_id(n), shop.shop_id, title, amount, shop.currency, now),
                    )
            for i, (title, artist, album, duration_ms) in enumerate(catalogue.TRACKS, 1):
                cur.execute(
                    "INSERT INTO tracks (n, track_id, title, artist, album, duration_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (i, catalogue.track_id(i), title, artist, album, duration_ms),
                )
            return True

        return self._run(seed_txn)

    # --- catalogue --------------------------------------------------------------------------

    def list_shops(self) -> list[Shop]:
        rows = self.conn.execute(
            "SELECT shop_id, name, description, currency FROM shops ORDER BY shop_id"
        ).fetchall()
        return [Shop(*row) for row in rows]

    def get_shop(self, shop_id: str) -> Shop | None:
        row = self.conn.execute(
            "SELECT shop_id, name, description, currency FROM shops WHERE shop_id = ?", (shop_id,)
        ).fetchone()
        return Shop(*row) if row else None

    def shop_items(self, shop_id: str) -> list[Item]:
        rows = self.conn.execute(
            f"SELECT {_ITEM_COLUMNS} FROM items i JOIN shops s USING (shop_id)"
            " WHERE i.shop_id = ? ORDER BY i.n",
            (shop_id,),
        ).fetchall()
        return [Item(*row) for row in rows]

    def get_item(self, item_id: str) -> Item | None:
        row = self.conn.execute(
            f"SELECT {_ITEM_COLUMNS} FROM items i JOIN shops s USING (shop_id) WHERE i.item_id = ?",
            (item_id,),
        ).fetchone()
        return Item(*row) if row else None

    def add_item(
        self, shop_id: str, title: str, amount: int, currency: str, image_url: str | None, now: int
    ) -> Item:
        """A new item and its `item.created` event, together."""

        def add_item_txn(cur: sqlite3.Cursor) -> str:
            # Items are never deleted, and this transaction holds the write lock.
            (n,) = cur.execute("SELECT COALESCE(MAX(n), 0) + 1 FROM items").fetchone()
            item_id = catalogue.item_id(n)
            cur.execute(
                "INSERT INTO items (n, item_id, shop_id, title, amount, currency, image_url,"
                " created_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (n, item_id, shop_id, title, amount, currency, image_url, now),
            )
            cur.execute(
                "INSERT INTO events (type, ref, matrix_user_id, ts) VALUES (?, ?, NULL, ?)",
                (ITEM_CREATED, item_id, now),
            )
            return item_id

        item = self.get_item(self._run(add_item_txn))
        assert item is not None
        return item

    def list_tracks(self) -> list[Track]:
        rows = self.conn.execute(
            "SELECT track_id, title, artist, album, duration_ms FROM tracks ORDER BY n"
        ).fetchall()
        return [Track(*row) for row in rows]

    def get_track(self, track_id: str) -> Track | None:
        row = self.conn.execute(
            "SELECT track_id, title, artist, album, duration_ms FROM tracks WHERE track_id = ?",
            (track_id,),
        ).fetchone()
        return Track(*row) if row else None

    # --- accounts and links -----------------------------------------------------------------

    def create_account(
        self, account_id: str, display_name: str, token: str, expires_ts: int, now: int
    ) -> None:
        def create_account_txn(cur: sqlite3.Cursor) -> None:
            cur.execute(
                "INSERT INTO accounts (account_id, display_name, matrix_user_id, created_ts)"
                " VALUES (?, ?, NULL, ?)",
                (account_id, display_name, now),
            )
            cur.execute(
                "INSERT INTO link_tokens (token_hash, account_id, expires_ts) VALUES (?, ?, ?)",
                (token_hash(token), account_id, expires_ts),
            )

        self._run(create_account_txn)

    def get_account(self, account_id: str) -> Account | None:
        row = self.conn.execute(
            "SELECT account_id, display_name, matrix_user_id, created_ts FROM accounts"
            " WHERE account_id = ?",
            (account_id,),
        ).fetchone()
        return Account(*row) if row else None

    def add_link_token(self, account_id: str, token: str, expires_ts: int) -> None:
        self.conn.execute(
            "INSERT INTO link_tokens (token_hash, account_id, expires_ts) VALUES (?, ?, ?)",
            (token_hash(token), account_id, expires_ts),
        )

    def link(self, token: str, matrix_user_id: str, now: int) -> str | None:
        """Consume a live token and bind its account to `matrix_user_id` (which leaves any
        account it was bound to before): the account id, or None for a token that is unknown,
        used or expired."""

        def link_txn(cur: sqlite3.Cursor) -> str | None:
            row = cur.execute(
                "UPDATE link_tokens SET used_ts = ?"
                " WHERE token_hash = ? AND used_ts IS NULL AND expires_ts > ?"
                " RETURNING account_id",
                (now, token_hash(token), now),
            ).fetchone()
            if row is None:
                return None
            (account_id,) = row
            cur.execute(
                "UPDATE accounts SET matrix_user_id = NULL WHERE matrix_user_id = ?",
                (matrix_user_id,),
            )
            cur.execute(
                "UPDATE accounts SET matrix_user_id = ? WHERE account_id = ?",
                (matrix_user_id, account_id),
            )
            return str(account_id)

        return self._run(link_txn)

    def account_of_user(self, matrix_user_id: str) -> str | None:
        row = self.conn.execute(
            "SELECT account_id FROM accounts WHERE matrix_user_id = ?", (matrix_user_id,)
        ).fetchone()
        return str(row[0]) if row else None

    def unlink(self, matrix_user_id: str) -> bool:
        cur = self.conn.execute(
            "UPDATE accounts SET matrix_user_id = NULL WHERE matrix_user_id = ?",
            (matrix_user_id,),
        )
        return cur.rowcount > 0

    def balances(self, account_id: str) -> dict[str, int]:
        """Net per currency: received minus paid."""
        rows = self.conn.execute(
            "SELECT currency, SUM(CASE WHEN payee_account = ? THEN amount ELSE -amount END)"
            " FROM payments WHERE payer_account = ? OR payee_account = ? GROUP BY currency",
            (account_id, account_id, account_id),
        ).fetchall()
        return {currency: int(net) for currency, net in rows}

    def payment_count(self, account_id: str) -> int:
        (count,) = self.conn.execute(
            "SELECT COUNT(*) FROM payments WHERE payer_account = ? OR payee_account = ?",
            (account_id, account_id),
        ).fetchone()
        return int(count)

    # --- orders -----------------------------------------------------------------------------

    def create_order(
        self,
        order_id: str,
        account_id: str,
        item: Item,
        quantity: int,
        now: int,
    ) -> None:
        self.conn.execute(
            "INSERT INTO orders (order_id, account_id, item_id, quantity, amount, currency, state,"
            " created_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                order_id,
                account_id,
                item.item_id,
                quantity,
                item.amount * quantity,
                item.currency,
                ORDER_CREATED,
                now,
            ),
        )

    def get_order(self, order_id: str) -> Order | None:
        row = self.conn.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders o JOIN accounts a USING (account_id)"
            " WHERE o.order_id = ?",
            (order_id,),
        ).fetchone()
        return Order(*row) if row else None

    def pay_order(self, order_id: str, now: int) -> bool:
        """created → paid; False when the order was not `created`."""
        cur = self.conn.execute(
            "UPDATE orders SET state = ?, paid_ts = ? WHERE order_id = ? AND state = ?",
            (ORDER_PAID, now, order_id, ORDER_CREATED),
        )
        return cur.rowcount > 0

    def deliver_order(self, order_id: str, now: int) -> bool:
        """paid → delivered with its `order.delivered` event (naming the account's linked user
        at this moment); False when the order was not `paid`."""

        def deliver_order_txn(cur: sqlite3.Cursor) -> bool:
            row = cur.execute(
                "SELECT a.matrix_user_id FROM orders o JOIN accounts a USING (account_id)"
                " WHERE o.order_id = ? AND o.state = ?",
                (order_id, ORDER_PAID),
            ).fetchone()
            if row is None:
                return False
            (matrix_user_id,) = row
            cur.execute(
                "UPDATE orders SET state = ?, delivered_ts = ?, delivered_to = ?"
                " WHERE order_id = ?",
                (ORDER_DELIVERED, now, matrix_user_id, order_id),
            )
            cur.execute(
                "INSERT INTO events (type, ref, matrix_user_id, ts) VALUES (?, ?, ?, ?)",
                (ORDER_DELIVERED_EVENT, order_id, matrix_user_id, now),
            )
            return True

        return self._run(deliver_order_txn)

    # --- payments ---------------------------------------------------------------------------

    def charge(
        self,
        idempotency_key: str,
        request_hash: str,
        payer_account: str,
        payee_account: str,
        amount: int,
        currency: str,
        make_receipt: Callable[[], dict[str, Any]],
        now: int,
    ) -> Charge:
        """Charge once per key: the first request under a key records the payment and its
        receipt; the same request again gets that receipt; another request under the key
        raises IdempotencyConflict. The key is the primary key, so even concurrent writers on
        this file cannot record two payments for it."""

        def charge_txn(cur: sqlite3.Cursor) -> Charge:
            receipt = make_receipt()
            cur.execute(
                "INSERT INTO payments (idempotency_key, request_hash, receipt_id, payer_account,"
                " payee_account, amount, currency, receipt, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (idempotency_key) DO NOTHING",
                (
                    idempotency_key,
                    request_hash,
                    receipt["receipt_id"],
                    payer_account,
                    payee_account,
                    amount,
                    currency,
                    json.dumps(receipt),
                    now,
                ),
            )
            if cur.rowcount == 1:
                return Charge(receipt, created=True)
            stored_hash, stored = cur.execute(
                "SELECT request_hash, receipt FROM payments WHERE idempotency_key = ?",
                (idempotency_key,),
            ).fetchone()
            if stored_hash != request_hash:
                raise IdempotencyConflict()
            return Charge(json.loads(stored), created=False)

        return self._run(charge_txn)

    def replay(self, idempotency_key: str, request_hash: str) -> dict[str, Any] | None:
        """The receipt already recorded for this key and request (None: the key is unused)."""
        row = self.conn.execute(
            "SELECT request_hash, receipt FROM payments WHERE idempotency_key = ?",
            (idempotency_key,),
        ).fetchone()
        if row is None:
            return None
        stored_hash, stored = row
        if stored_hash != request_hash:
            raise IdempotencyConflict()
        receipt: dict[str, Any] = json.loads(stored)
        return receipt

    def receipt_of(self, idempotency_key: str) -> dict[str, Any] | None:
        """The receipt of the payment made under this key, whatever its request (None: none)."""
        row = self.conn.execute(
            "SELECT receipt FROM payments WHERE idempotency_key = ?", (idempotency_key,)
        ).fetchone()
        if row is None:
            return None
        receipt: dict[str, Any] = json.loads(row[0])
        return receipt

    # --- events -----------------------------------------------------------------------------

    def events_after(self, after: int, limit: int) -> list[Event]:
        rows = self.conn.execute(
            "SELECT id, type, ref, matrix_user_id, ts FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        ).fetchall()
        return [Event(*row) for row in rows]

    def last_event_id(self) -> int:
        (last,) = self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
        return int(last)
