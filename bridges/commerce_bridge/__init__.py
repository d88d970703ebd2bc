"""The commerce bridge: a Matrix application service that brings the commerce service's shops
into Matrix (a room and a ghost per shop, new items posted there, delivered orders announced to
their owners). See docs/commerce-bridge.md."""
