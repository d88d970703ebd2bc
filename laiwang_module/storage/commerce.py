"""SQL for commerce: card images copied into the media repository, and provider payments
under way (docs/api/commerce.md). Account links live in the commerce service, not here."""

from __future__ import annotations

import json
from typing import Any

import attr
from synapse.storage.database import LoggingTransaction

from laiwang_module.storage.base import StoreMixin, fetch_value


@attr.s(frozen=True, slots=True, auto_attribs=True)
class PendingPayment:
    idempotency_key: str
    room_id: str
    request_event_id: str
    payer: str
    receipt: dict[str, Any] | None
    payment_event_id: str | None


class CommerceStore(StoreMixin):
    async def get_commerce_media(self, source_url: str) -> str | None:
        def get_commerce_media_txn(txn: LoggingTransaction) -> str | None:
            txn.execute(
                "SELECT mxc FROM laiwang_commerce_media WHERE source_url = ?", (source_url,)
            )
            value = fetch_value(txn)
            return None if value is None else str(value)

        return await self.run("get_commerce_media", get_commerce_media_txn)

    async def add_commerce_media(self, source_url: str, mxc: str) -> str:
        """Record the copy of an image; the first copy recorded wins (two workers may copy the
        same image at once), and is returned."""
        now = self._now()

        def add_commerce_media_txn(txn: LoggingTransaction) -> str:
            txn.execute(
                "INSERT INTO laiwang_commerce_media (source_url, mxc, created_ts) VALUES (?, ?, ?)"
                " ON CONFLICT (source_url) DO NOTHING",
                (source_url, mxc, now),
            )
            txn.execute(
                "SELECT mxc FROM laiwang_commerce_media WHERE source_url = ?", (source_url,)
            )
            return str(fetch_value(txn))

        return await self.run("add_commerce_media", add_commerce_media_txn)

    async def start_commerce_payment(
        self, key: str, room_id: str, request_event_id: str, payer: str
    ) -> PendingPayment:
        """The payment under this key, created (before its charge) if new."""
        now = self._now()

        def start_commerce_payment_txn(txn: LoggingTransaction) -> PendingPayment:
            txn.execute(
                "INSERT INTO laiwang_commerce_payments (idempotency_key, room_id,"
                " request_event_id, payer, created_ts, updated_ts) VALUES (?, ?, ?, ?, ?, ?)"
                # A retry touches the attempt, so that the job leaves a live one alone.
                " ON CONFLICT (idempotency_key) DO UPDATE SET updated_ts = excluded.updated_ts",
                (key, room_id, request_event_id, payer, now, now),
            )
            pending = _get_payment_txn(txn, key)
            assert pending is not None
            return pending

        return await self.run("start_commerce_payment", start_commerce_payment_txn)

    async def set_commerce_receipt(self, key: str, receipt: dict[str, Any]) -> None:
        now = self._now()

        def set_commerce_receipt_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "UPDATE laiwang_commerce_payments SET receipt = ?, updated_ts = ?"
                " WHERE idempotency_key = ?",
                (json.dumps(receipt), now, key),
            )

        await self.run("set_commerce_receipt", set_commerce_receipt_txn)

    async def finish_commerce_payment(self, key: str, payment_event_id: str) -> None:
        now = self._now()

        def finish_commerce_payment_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "UPDATE laiwang_commerce_payments SET payment_event_id = ?, updated_ts = ?"
                " WHERE idempotency_key = ?",
                (payment_event_id, now, key),
            )

        await self.run("finish_commerce_payment", finish_commerce_payment_txn)

    async def get_charged_unsent_payments(self, older_than_ts: int) -> list[PendingPayment]:
        """Charged payments whose event was not sent, last touched before `older_than_ts`."""

        def get_charged_unsent_payments_txn(txn: LoggingTransaction) -> list[PendingPayment]:
            txn.execute(
                "SELECT idempotency_key FROM laiwang_commerce_payments"
                " WHERE payment_event_id IS NULL AND receipt IS NOT NULL AND updated_ts < ?"
                " ORDER BY updated_ts LIMIT 100",
                (older_than_ts,),
            )
            keys = [key for (key,) in txn.fetchall()]
            return [p for p in (_get_payment_txn(txn, k) for k in keys) if p is not None]

        return await self.run("get_charged_unsent_payments", get_charged_unsent_payments_txn)

    async def get_uncharged_payments(self, older_than_ts: int) -> list[PendingPayment]:
        """Attempts without a receipt, last touched before `older_than_ts`: the service may
        have charged them after all (the process died before storing the receipt)."""

        def get_uncharged_payments_txn(txn: LoggingTransaction) -> list[PendingPayment]:
            txn.execute(
                "SELECT idempotency_key FROM laiwang_commerce_payments"
                " WHERE receipt IS NULL AND updated_ts < ? ORDER BY updated_ts LIMIT 100",
                (older_than_ts,),
            )
            keys = [key for (key,) in txn.fetchall()]
            return [p for p in (_get_payment_txn(txn, k) for k in keys) if p is not None]

        return await self.run("get_uncharged_payments", get_uncharged_payments_txn)

    async def forget_uncharged_payment(self, key: str, older_than_ts: int) -> None:
        """Drop an attempt the service never charged (unless a retry touched it since)."""

        def forget_uncharged_payment_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "DELETE FROM laiwang_commerce_payments"
                " WHERE idempotency_key = ? AND receipt IS NULL AND updated_ts < ?",
                (key, older_than_ts),
            )

        await self.run("forget_uncharged_payment", forget_uncharged_payment_txn)


def _get_payment_txn(txn: LoggingTransaction, key: str) -> PendingPayment | None:
    txn.execute(
        "SELECT room_id, request_event_id, payer, receipt, payment_event_id"
        " FROM laiwang_commerce_payments WHERE idempotency_key = ?",
        (key,),
    )
    row = txn.fetchone()
    if row is None:
        return None
    room_id, request_event_id, payer, receipt, payment_event_id = row
    return PendingPayment(
        idempotency_key=key,
        room_id=room_id,
        request_event_id=request_event_id,
        payer=payer,
        receipt=json.loads(receipt) if receipt else None,
        payment_event_id=payment_event_id,
    )
