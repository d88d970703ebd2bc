"""The commerce service mock: shops, items, music tracks, accounts, orders and a payment
provider that signs receipts, over JSON/HTTP with SQLite storage (see docs/api/commerce.md)."""
