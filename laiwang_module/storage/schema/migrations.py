"""Every table of the module, as each feature's migrations in the order they are applied.

A feature's `Schema` is a list of versions; `laiwang_schema_versions` records the version each
feature's tables have reached, keyed by the feature's name. Never change a released migration:
add the next version. Table names keep the names they were created with (`laiwang_timeline_*`
belong to shares, `laiwang_acquaintances` to contacts).
"""

from __future__ import annotations

from laiwang_module.storage.schema import Schema

# storage/settings.py
SETTINGS = Schema(
    "settings",
    [
        (
            1,
            [
                "CREATE TABLE IF NOT EXISTS laiwang_user_settings ("
                " user_id TEXT NOT NULL PRIMARY KEY,"
                " discoverable BOOLEAN,"  # NULL: the configured default
                " accept_requests_from TEXT,"  # NULL: the configured default
                " updated_ts BIGINT NOT NULL)",
            ],
        )
    ],
)


# storage/discovery.py. The msisdn feature's tables (storage/msisdn.py: laiwang_msisdn_sessions,
# laiwang_sms_sends) were created by discovery's versions 1 and 5, before msisdn was a feature of
# its own, and stay in this history: a released migration never changes. A later change to them
# may start an "msisdn" schema.
DISCOVERY = Schema(
    "discovery",
    [
        (
            1,
            [
                # Who has whom in their address book: users found by the owner's lookups.
                # `updated_ts` is the last lookup that matched; entries expire after the
                # configured address_book_ttl (reads filter on it, a job purges).
                "CREATE TABLE IF NOT EXISTS laiwang_address_book ("
                " owner_id TEXT NOT NULL,"
                " contact_id TEXT NOT NULL,"
                " updated_ts BIGINT NOT NULL,"
                " PRIMARY KEY (owner_id, contact_id))",
                "CREATE INDEX IF NOT EXISTS laiwang_address_book_contact"
                " ON laiwang_address_book (contact_id)",
                "CREATE INDEX IF NOT EXISTS laiwang_address_book_ts"
                " ON laiwang_address_book (updated_ts)",
                # One row: the public lookup pepper. `gen` numbers peppers so the hash index
                # need not repeat the pepper on every row. While a rotation builds the index
                # for the next pepper, `next_gen`/`next_pepper` are set.
                "CREATE TABLE IF NOT EXISTS laiwang_discovery_state ("
                " singleton INTEGER NOT NULL PRIMARY KEY,"
                " gen BIGINT NOT NULL,"
                " pepper TEXT NOT NULL,"
                " rotated_ts BIGINT NOT NULL,"
                " built BOOLEAN NOT NULL,"
                " next_gen BIGINT,"
                " next_pepper TEXT)",
                # hash(msisdn, pepper of gen) -> user, for every local user with an msisdn.
                "CREATE TABLE IF NOT EXISTS laiwang_discovery_hashes ("
                " gen BIGINT NOT NULL,"
                " hash TEXT NOT NULL,"
                " user_id TEXT NOT NULL,"
                " PRIMARY KEY (gen, hash))",
                # Addresses looked up per user per UTC day (the enumeration budget).
                "CREATE TABLE IF NOT EXISTS laiwang_discovery_usage ("
                " user_id TEXT NOT NULL,"
                " day BIGINT NOT NULL,"
                " addresses BIGINT NOT NULL,"
                " PRIMARY KEY (user_id, day))",
                # (msisdn) Validation sessions of the msisdn identity endpoints. The number is sealed
                # with a key derived from the client secret; the code is kept as a hash.
                "CREATE TABLE IF NOT EXISTS laiwang_msisdn_sessions ("
                " sid TEXT NOT NULL PRIMARY KEY,"
                " lookup_key TEXT NOT NULL,"
                " sealed_address TEXT NOT NULL,"
                " code_hash TEXT NOT NULL,"
                " send_attempt BIGINT NOT NULL,"
                " attempts INTEGER NOT NULL,"
                " created_ts BIGINT NOT NULL,"
                " expires_ts BIGINT NOT NULL,"
                " validated_ts BIGINT)",
                "CREATE UNIQUE INDEX IF NOT EXISTS laiwang_msisdn_sessions_lookup"
                " ON laiwang_msisdn_sessions (lookup_key)",
                "CREATE INDEX IF NOT EXISTS laiwang_msisdn_sessions_expiry"
                " ON laiwang_msisdn_sessions (expires_ts)",
            ],
        ),
        (
            2,
            [
                # The hash leads the key: with (gen, hash) and stale statistics PostgreSQL
                # scanned the whole generation instead of probing each hash. The index is
                # derived data: drop it and let the job rebuild it.
                "DROP TABLE laiwang_discovery_hashes",
                "CREATE TABLE laiwang_discovery_hashes ("
                " hash TEXT NOT NULL,"
                " gen BIGINT NOT NULL,"
                " user_id TEXT NOT NULL,"
                " PRIMARY KEY (hash, gen))",
                "UPDATE laiwang_discovery_state SET built = FALSE, next_gen = NULL,"
                " next_pepper = NULL",
            ],
        ),
        (
            3,
            [
                # Keyed by the first 64 bits of the hash (rooms.discovery.hash_key): a quarter
                # of the size, so a million numbers' index stays in memory. Rebuilt by the job.
                "DROP TABLE laiwang_discovery_hashes",
                "CREATE TABLE laiwang_discovery_hashes ("
                " hkey BIGINT NOT NULL,"
                " gen BIGINT NOT NULL,"
                " user_id TEXT NOT NULL,"
                " PRIMARY KEY (hkey, gen))",
                "UPDATE laiwang_discovery_state SET built = FALSE, next_gen = NULL,"
                " next_pepper = NULL",
            ],
        ),
        (
            4,
            [
                # The full hash rides along (not indexed) so a hit is exact without reading
                # Synapse's user_threepids on every lookup; the index stays exact instead:
                # writes check user_threepids, and removals during a build are replayed.
                "DROP TABLE laiwang_discovery_hashes",
                "CREATE TABLE laiwang_discovery_hashes ("
                " hkey BIGINT NOT NULL,"
                " gen BIGINT NOT NULL,"
                " hash TEXT NOT NULL,"
                " user_id TEXT NOT NULL,"
                " PRIMARY KEY (hkey, gen))",
                "CREATE TABLE laiwang_discovery_removals ("
                " gen BIGINT NOT NULL,"
                " hkey BIGINT NOT NULL,"
                " user_id TEXT NOT NULL)",
                "UPDATE laiwang_discovery_state SET built = FALSE, next_gen = NULL,"
                " next_pepper = NULL",
            ],
        ),
        (
            5,
            [
                # (msisdn) SMS sent per number per UTC day (sms.max_per_number_per_day): the identity
                # endpoints are public, so this caps what anyone can make the server send.
                "CREATE TABLE IF NOT EXISTS laiwang_sms_sends ("
                " number_key TEXT NOT NULL,"
                " day BIGINT NOT NULL,"
                " sends BIGINT NOT NULL,"
                " PRIMARY KEY (number_key, day))",
            ],
        ),
        (
            6,
            [
                # Identity Service API v2 (`/_matrix/identity/v2/account/register`): the tokens
                # the module issues, by their SHA-256 (rooms.discovery.identity_token_hash).
                "CREATE TABLE IF NOT EXISTS laiwang_identity_tokens ("
                " token_hash TEXT NOT NULL PRIMARY KEY,"
                " user_id TEXT NOT NULL,"
                " created_ts BIGINT NOT NULL)",
                "CREATE INDEX IF NOT EXISTS laiwang_identity_tokens_user"
                " ON laiwang_identity_tokens (user_id)",
            ],
        ),
        (
            7,
            [
                # Across servers (storage/discovery_peers.py): for each peer server, the pepper
                # its lookups use and whether this server's set for it is built...
                "CREATE TABLE IF NOT EXISTS laiwang_discovery_peer_state ("
                " peer TEXT NOT NULL PRIMARY KEY,"
                " pepper TEXT NOT NULL,"
                " built BOOLEAN NOT NULL,"
                " requested_ts BIGINT NOT NULL)",
                # ... and that set: the OPRF value, under this server's key for the peer, of
                # each local number's lookup hash under the peer's pepper. `pkey` (its first
                # 64 bits) is what the peer is shown; `prf` confirms a resolve.
                "CREATE TABLE IF NOT EXISTS laiwang_discovery_peer_prfs ("
                " peer TEXT NOT NULL,"
                " pepper TEXT NOT NULL,"
                " pkey BIGINT NOT NULL,"
                " prf TEXT NOT NULL,"
                " user_id TEXT NOT NULL,"
                " PRIMARY KEY (peer, pepper, pkey))",
            ],
        ),
    ],
)


# storage/contacts.py (recorded as "acquaintances" by earlier releases: RENAMED_FEATURES)
CONTACTS = Schema(
    "contacts",
    [
        (
            1,
            [
                "CREATE TABLE IF NOT EXISTS laiwang_contact_rooms ("
                " room_id TEXT NOT NULL PRIMARY KEY,"
                " requester TEXT NOT NULL,"
                " target TEXT NOT NULL,"
                " message TEXT,"
                " source TEXT NOT NULL,"
                " state TEXT NOT NULL,"
                " created_ts BIGINT NOT NULL,"
                " updated_ts BIGINT NOT NULL)",
                "CREATE INDEX IF NOT EXISTS laiwang_contact_rooms_requester"
                " ON laiwang_contact_rooms (requester, target)",
                "CREATE INDEX IF NOT EXISTS laiwang_contact_rooms_target"
                " ON laiwang_contact_rooms (target, requester)",
                "CREATE TABLE IF NOT EXISTS laiwang_acquaintances ("
                " user_id TEXT NOT NULL,"
                " other_id TEXT NOT NULL,"
                " room_id TEXT NOT NULL,"
                " source TEXT NOT NULL,"
                " since_ts BIGINT NOT NULL,"
                " PRIMARY KEY (user_id, other_id))",
            ],
        )
    ],
)


# storage/aa.py
AA = Schema(
    "aa",
    [
        (
            1,
            [
                # Every AA event the ledger has seen, with what it did ("applied" or "ignored").
                "CREATE TABLE IF NOT EXISTS laiwang_aa_events ("
                " event_id TEXT NOT NULL PRIMARY KEY,"
                " kind TEXT NOT NULL,"  # request | payment | close
                " request_event_id TEXT NOT NULL,"
                " outcome TEXT NOT NULL,"  # applied | ignored | void
                " reason TEXT)",
                "CREATE TABLE IF NOT EXISTS laiwang_aa_requests ("
                " event_id TEXT NOT NULL PRIMARY KEY,"
                " room_id TEXT NOT NULL,"
                " payee TEXT NOT NULL,"
                " title TEXT NOT NULL,"
                " currency TEXT NOT NULL,"
                " total BIGINT NOT NULL,"
                " state TEXT NOT NULL,"
                " close_event_id TEXT,"
                " redaction_event_id TEXT,"
                " ts BIGINT NOT NULL)",
                "CREATE TABLE IF NOT EXISTS laiwang_aa_shares ("
                " request_event_id TEXT NOT NULL,"
                " user_id TEXT NOT NULL,"
                " position INTEGER NOT NULL,"
                " amount BIGINT NOT NULL,"
                " paid BOOLEAN NOT NULL,"
                " payment_event_id TEXT,"
                " PRIMARY KEY (request_event_id, user_id))",
                "CREATE TABLE IF NOT EXISTS laiwang_aa_payments ("
                " event_id TEXT NOT NULL PRIMARY KEY,"
                " request_event_id TEXT NOT NULL,"
                " payer TEXT NOT NULL,"
                " sender TEXT NOT NULL,"
                " amount BIGINT NOT NULL,"
                " currency TEXT NOT NULL,"
                " method TEXT NOT NULL,"
                " provider TEXT,"
                " receipt_id TEXT,"
                " ts BIGINT NOT NULL)",
                "CREATE INDEX IF NOT EXISTS laiwang_aa_payments_request"
                " ON laiwang_aa_payments (request_event_id, payer)",
                # A receipt id proves one payment only: the primary key makes reuse impossible.
                "CREATE TABLE IF NOT EXISTS laiwang_aa_receipts ("
                " provider TEXT NOT NULL,"
                " receipt_id TEXT NOT NULL,"
                " payment_event_id TEXT NOT NULL,"
                " PRIMARY KEY (provider, receipt_id))",
                "CREATE TABLE IF NOT EXISTS laiwang_aa_reminders ("
                " request_event_id TEXT NOT NULL PRIMARY KEY,"
                " last_ts BIGINT NOT NULL)",
                "CREATE TABLE IF NOT EXISTS laiwang_aa_balances ("
                " user_id TEXT NOT NULL,"
                " counterparty TEXT NOT NULL,"
                " currency TEXT NOT NULL,"
                " net BIGINT NOT NULL,"
                " PRIMARY KEY (user_id, counterparty, currency))",
                "CREATE TABLE IF NOT EXISTS laiwang_aa_redactions ("
                " redaction_event_id TEXT NOT NULL PRIMARY KEY,"
                " redacted_event_id TEXT NOT NULL,"
                " kind TEXT NOT NULL,"
                " request_event_id TEXT NOT NULL,"
                " notice_claimed BOOLEAN NOT NULL)",
            ],
        ),
        (
            2,
            [
                # A `pay` call in flight for a share, so that a double click sends one payment.
                "CREATE TABLE IF NOT EXISTS laiwang_aa_pay_claims ("
                " request_event_id TEXT NOT NULL,"
                " payer TEXT NOT NULL,"
                " claimed_ts BIGINT NOT NULL,"
                " PRIMARY KEY (request_event_id, payer))",
            ],
        ),
    ],
)


# storage/shares.py (recorded as "timeline" by earlier releases: RENAMED_FEATURES)
SHARES = Schema(
    "shares",
    [
        (
            1,
            [
                "CREATE TABLE IF NOT EXISTS laiwang_timelines ("
                " owner TEXT NOT NULL PRIMARY KEY,"
                " room_id TEXT NOT NULL UNIQUE,"
                " created_ts BIGINT NOT NULL)",
                "CREATE TABLE IF NOT EXISTS laiwang_timeline_posts ("
                " event_id TEXT NOT NULL PRIMARY KEY,"
                " room_id TEXT NOT NULL,"
                " owner TEXT NOT NULL,"
                " ts BIGINT NOT NULL)",
                "CREATE INDEX IF NOT EXISTS laiwang_timeline_posts_owner_ts"
                " ON laiwang_timeline_posts (owner, ts, event_id)",
                "CREATE TABLE IF NOT EXISTS laiwang_timeline_relations ("
                " event_id TEXT NOT NULL PRIMARY KEY,"
                " post_id TEXT NOT NULL,"
                " kind TEXT NOT NULL)",
                "CREATE INDEX IF NOT EXISTS laiwang_timeline_relations_post"
                " ON laiwang_timeline_relations (post_id, kind)",
            ],
        ),
        (
            2,
            [
                # A relation counts only in its post's own room: remember each one's room
                # (taken from Synapse's events for those indexed before; unknown ones stop
                # counting).
                "ALTER TABLE laiwang_timeline_relations ADD COLUMN room_id TEXT",
                "UPDATE laiwang_timeline_relations SET room_id = (SELECT e.room_id FROM events"
                " AS e WHERE e.event_id = laiwang_timeline_relations.event_id)",
                # Posts rank by the time this server received them at the latest.
                "UPDATE laiwang_timeline_posts SET ts = (SELECT e.received_ts FROM events AS e"
                " WHERE e.event_id = laiwang_timeline_posts.event_id)"
                " WHERE ts > (SELECT e.received_ts FROM events AS e"
                " WHERE e.event_id = laiwang_timeline_posts.event_id)",
                # Joins to remote timelines this server made for its users on its own, one row
                # per join (the rate bound; rows older than the window are pruned).
                "CREATE TABLE IF NOT EXISTS laiwang_timeline_accepts ("
                " invitee TEXT NOT NULL,"
                " room_id TEXT NOT NULL,"
                " owner TEXT NOT NULL,"
                " ts BIGINT NOT NULL,"
                " PRIMARY KEY (invitee, room_id, ts))",
                "CREATE INDEX IF NOT EXISTS laiwang_timeline_accepts_invitee_ts"
                " ON laiwang_timeline_accepts (invitee, ts)",
            ],
        ),
        (
            3,
            [
                # A timeline being made: written before the room is created, removed once it is
                # recorded and its members added. A row left behind names a creation whose
                # process died; the job finishes it (adopting the room if one was created).
                "CREATE TABLE IF NOT EXISTS laiwang_timeline_creations ("
                " owner TEXT NOT NULL PRIMARY KEY,"
                " started_ts BIGINT NOT NULL)",
            ],
        ),
    ],
)


# storage/clusters.py
CLUSTERS = Schema(
    "clusters",
    [
        (
            1,
            [
                "CREATE TABLE IF NOT EXISTS laiwang_clusters ("
                " room_id TEXT NOT NULL PRIMARY KEY,"
                " topic TEXT NOT NULL,"
                " creator TEXT NOT NULL,"
                " created_ts BIGINT NOT NULL,"
                " member_count BIGINT NOT NULL DEFAULT 0,"
                " last_active_ts BIGINT NOT NULL,"
                # 0: members not yet read from the room's full state; 1: done.
                " members_synced SMALLINT NOT NULL DEFAULT 0)",
                "CREATE TABLE IF NOT EXISTS laiwang_cluster_members ("
                " room_id TEXT NOT NULL,"
                " user_id TEXT NOT NULL,"
                " membership TEXT NOT NULL,"
                " invited_by TEXT,"
                " joined_ts BIGINT NOT NULL,"
                " event_id TEXT NOT NULL,"
                " PRIMARY KEY (room_id, user_id))",
                "CREATE INDEX IF NOT EXISTS laiwang_cluster_members_user"
                " ON laiwang_cluster_members (user_id, room_id)",
                # One row per knock this server decided on: the claim that makes one process
                # (of several workers) approve it.
                "CREATE TABLE IF NOT EXISTS laiwang_cluster_knocks ("
                " event_id TEXT NOT NULL PRIMARY KEY,"
                " room_id TEXT NOT NULL,"
                " knocker TEXT NOT NULL,"
                " approver TEXT,"
                " ts BIGINT NOT NULL)",
            ],
        ),
        (
            2,
            [
                # Covering indexes: the join decision reads one cluster's members by
                # (room_id, user_id) and discovery reads acquaintances' memberships by user,
                # without touching the table rows (bench/clusters_bench.py: 5x to 15x faster on
                # SQLite, whose page cache is small).
                "CREATE INDEX IF NOT EXISTS laiwang_cluster_members_room_cover"
                " ON laiwang_cluster_members (room_id, user_id, membership, joined_ts)",
                "CREATE INDEX IF NOT EXISTS laiwang_cluster_members_user_join"
                " ON laiwang_cluster_members (user_id, membership, room_id)",
                "DROP INDEX IF EXISTS laiwang_cluster_members_user",
                "CREATE INDEX IF NOT EXISTS laiwang_clusters_active"
                " ON laiwang_clusters (room_id, last_active_ts)",
                # When a process claimed the member sync: a claim whose process died (or
                # stalled) for 10 minutes can be taken over.
                "ALTER TABLE laiwang_clusters ADD COLUMN sync_claimed_ts BIGINT",
            ],
        ),
        (
            3,
            [
                # When the knock's decision was carried out (the invite sent, or nobody could).
                # A claim without it whose process died is taken over by the job; `ts` is
                # when the claim was (last) taken.
                "ALTER TABLE laiwang_cluster_knocks ADD COLUMN decided_ts BIGINT",
                "UPDATE laiwang_cluster_knocks SET decided_ts = ts",
                "CREATE INDEX IF NOT EXISTS laiwang_cluster_knocks_undecided"
                " ON laiwang_cluster_knocks (ts) WHERE decided_ts IS NULL",
            ],
        ),
    ],
)


# storage/msisdn.py (its tables were created by DISCOVERY's versions 1 and 5)
MSISDN = Schema(
    "msisdn",
    [
        (
            1,
            [
                # Numbers and counters are now keyed with the server key: rows keyed the old
                # way (an unkeyed hash anyone can reverse) go. Sessions live minutes, counters
                # a day.
                "DELETE FROM laiwang_sms_sends",
                "DELETE FROM laiwang_msisdn_sessions",
            ],
        ),
    ],
)


# storage/commerce.py
COMMERCE = Schema(
    "commerce",
    [
        (
            1,
            [
                # Card images copied into the media repository, once per source URL.
                "CREATE TABLE IF NOT EXISTS laiwang_commerce_media ("
                " source_url TEXT NOT NULL PRIMARY KEY,"
                " mxc TEXT NOT NULL,"
                " created_ts BIGINT NOT NULL)",
                # Provider payments under way: written before the charge (receipt NULL), given
                # the receipt when the service answers, given the event once it is sent. A row
                # with a receipt and no event is finished by the background job (a charge is
                # never left without its payment event); one without a receipt is finished
                # only by the payer's retry (the charge may not have happened).
                "CREATE TABLE IF NOT EXISTS laiwang_commerce_payments ("
                " idempotency_key TEXT NOT NULL PRIMARY KEY,"
                " room_id TEXT NOT NULL,"
                " request_event_id TEXT NOT NULL,"
                " payer TEXT NOT NULL,"
                " receipt TEXT,"
                " payment_event_id TEXT,"
                " created_ts BIGINT NOT NULL,"
                " updated_ts BIGINT NOT NULL)",
                "CREATE INDEX IF NOT EXISTS laiwang_commerce_payments_pending"
                " ON laiwang_commerce_payments (payment_event_id, updated_ts)",
            ],
        ),
    ],
)


# storage/events.py: the updates of the features' tables that failed, to be retried.
EVENTS = Schema(
    "events",
    [
        (
            1,
            [
                # One row per (event, feature) whose `on_new_event` update failed; the retry
                # job (callbacks/events.py) runs it again at `next_try` and deletes the row once
                # it succeeds.
                "CREATE TABLE IF NOT EXISTS laiwang_event_retries ("
                " event_id TEXT NOT NULL,"
                " feature TEXT NOT NULL,"
                " room_id TEXT NOT NULL,"
                " attempts INTEGER NOT NULL,"
                " next_try BIGINT NOT NULL,"
                " last_error TEXT,"
                " PRIMARY KEY (event_id, feature))",
                "CREATE INDEX IF NOT EXISTS laiwang_event_retries_next"
                " ON laiwang_event_retries (next_try)",
            ],
        ),
    ],
)


# storage/spaces.py
SPACES = Schema(
    "spaces",
    [
        (
            1,
            [
                # Each local user's Laiwang space, made in their name on first need.
                "CREATE TABLE IF NOT EXISTS laiwang_spaces ("
                " user_id TEXT NOT NULL PRIMARY KEY,"
                " room_id TEXT NOT NULL UNIQUE,"
                " created_ts BIGINT NOT NULL)",
                # The rooms the module listed in a user's space (`m.space.child` sent): the row
                # is claimed before the event is sent, so one worker sends it.
                "CREATE TABLE IF NOT EXISTS laiwang_space_children ("
                " user_id TEXT NOT NULL,"
                " room_id TEXT NOT NULL,"
                " added_ts BIGINT NOT NULL,"
                " PRIMARY KEY (user_id, room_id))",
            ],
        ),
    ],
)


SCHEMAS: tuple[Schema, ...] = (
    SETTINGS,
    DISCOVERY,
    CONTACTS,
    AA,
    SHARES,
    CLUSTERS,
    MSISDN,
    COMMERCE,
    EVENTS,
    SPACES,
)
