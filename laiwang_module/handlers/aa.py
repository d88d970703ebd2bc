"""AA decisions: requests, payments, closes, reminders, the event check and the ledger.

The endpoints and the event check both go through `rooms.aa`; this handler only gathers what
those rules need (who is joined, what the ledger says) and sends events on the user's behalf
with `create_and_send_event_into_room`, which runs the same check again before persisting.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attr
from synapse.events import EventBase
from synapse.util.caches.descriptors import cached

from laiwang_module.caches import ModuleCache
from laiwang_module.storage.aa import LedgerChange
from laiwang_module.synapse_compat import (
    fake_event_id,
    get_events,
    get_events_as_list,
    is_shadow_banned,
    latest_room_events,
    ratelimit_message,
)
from rooms import aa
from rooms.errors import (
    Forbidden,
    InvalidParam,
    LaiwangError,
    LimitExceeded,
    MissingParam,
    NotFound,
    ValidationError,
)
from rooms.money import format_amount
from rooms.validation import own_join

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer

logger = logging.getLogger(__name__)

REMIND_INTERVAL_MS = 3600 * 1000  # at most one reminder an hour per request
RECONCILE_WINDOW = 1000  # the latest messages of an AA room the reconcile re-reads


class AAStatusCache(ModuleCache):
    """`unsigned["org.laiwang.aa.status"]` of request events, cached per event and invalidated
    across workers whenever the ledger changes the request (see `AAHandler._changed`)."""

    def __init__(self, server: LaiwangServer):
        super().__init__(server.api)
        self._store = server.store

    @cached(max_entries=50000)
    async def get_aa_status(self, event_id: str) -> dict[str, Any] | None:
        """The request's live status for `unsigned`, or None for an event that is no AA request."""
        status = await self._store.get_aa_status(event_id)
        if status is None:
            return None
        state, paid_count, unpaid = status
        return {"state": state, "paid_count": paid_count, "unpaid": unpaid}


class AAHandler:
    def __init__(self, server: LaiwangServer):
        self._server = server
        self._api = server.api
        self._store = server.store
        self._providers = server.config.payment_providers
        # A `pay` still "under way" after this has died: its slot is taken over.
        self._unfinished_after_ms = server.config.upkeep.unfinished_after_ms
        self.status_cache = AAStatusCache(server)

    # --- room facts -------------------------------------------------------------------------

    async def _member_events(self, room_id: str, user_ids: Iterable[str]) -> dict[str, EventBase]:
        """The m.room.member event of each of `user_ids` who has one in the room."""
        state = await self._api.get_room_state(
            room_id, [("m.room.member", u) for u in set(user_ids)]
        )
        return {key[1]: event for key, event in state.items()}

    async def _members(self, room_id: str, user_ids: Iterable[str]) -> dict[str, Mapping[str, Any]]:
        """The m.room.member content of each of `user_ids` who has one in the room."""
        events = await self._member_events(room_id, user_ids)
        return {user_id: event.content for user_id, event in events.items()}

    async def _joined_by_choice(self, room_id: str, user_ids: Iterable[str]) -> set[str]:
        """Those of `user_ids` who are joined by their own join (`rooms.validation.own_join`):
        the only members a bill may name."""
        events = await self._member_events(room_id, user_ids)
        return {u for u, ev in events.items() if own_join(ev.membership, ev.sender, ev.state_key)}

    @staticmethod
    def _joined(members: Mapping[str, Mapping[str, Any]]) -> set[str]:
        return {u for u, c in members.items() if c.get("membership") == "join"}

    @staticmethod
    def _name(members: Mapping[str, Mapping[str, Any]], user_id: str) -> str:
        name = members.get(user_id, {}).get("displayname")
        return name if isinstance(name, str) and name.strip() else user_id

    async def _require_joined(self, room_id: str, user_id: str) -> dict[str, Mapping[str, Any]]:
        members = await self._members(room_id, [user_id])
        if user_id not in self._joined(members):
            raise Forbidden("You are not a joined member of this room")
        return members

    async def _request_in_room(self, room_id: str, event_id: str) -> aa.RequestView:
        request = await self._find_request(event_id)
        if request is None or request.room_id != room_id:
            raise NotFound("No AA request with this id in this room")
        return request

    async def _find_request(self, event_id: str) -> aa.RequestView | None:
        """The request as the ledger has it. The ledger follows the room in `on_new_event`,
        which runs after the event is persisted (and after a federated one's successors may
        have been checked): when it has not indexed a request this server has, the room
        decides, and the request is indexed now through the same code (idempotent). None when
        this server has no such request in any room's timeline."""
        request = await self._store.get_aa_request(event_id)
        if request is not None:
            return request
        event = await self._timeline_event(event_id)
        if (
            event is None
            or event.type != "m.room.message"
            or aa.aa_msgtype(event.content) != aa.MSGTYPE_REQUEST
            or aa.edit_target(event.content) is not None
        ):
            return None
        # Only requests: applying a request does not depend on the events around it, whereas
        # two payments of one share must be applied in the room's order.
        await self.apply_event(event)
        return await self._store.get_aa_request(event_id)

    async def _timeline_event(self, event_id: str) -> EventBase | None:
        """The event, if this server has it in a room's timeline as `on_new_event` sees it (not
        an outlier, not soft-failed, not rejected)."""
        event = (await get_events(self._api, [event_id])).get(event_id)
        if event is None:
            return None
        metadata = event.internal_metadata
        if metadata.is_outlier() or metadata.is_soft_failed():
            return None
        return event

    async def _send(self, room_id: str, sender: str, content: dict[str, Any]) -> EventBase:
        return await self._api.create_and_send_event_into_room(
            {"type": "m.room.message", "room_id": room_id, "sender": sender, "content": content}
        )

    async def _send_for(
        self, room_id: str, user_id: str, content: dict[str, Any]
    ) -> EventBase | None:
        """Send what the user asked for, as Synapse's /send would: counted against their
        `rc_message` (LimitExceeded when spent) and, for a shadow-banned user, not sent at all
        (None: the endpoint answers as if it worked). Counted before the ban is looked at, so a
        shadow-banned user meets the same 429s as anyone and cannot tell."""
        await ratelimit_message(self._api, user_id)
        if await is_shadow_banned(self._api, user_id):
            return None
        return await self._send(room_id, user_id, content)

    # --- endpoints --------------------------------------------------------------------------

    async def create_request(self, user_id: str, room_id: str, req: aa.AARequest) -> dict[str, Any]:
        """Send `req` (parsed by `rooms.aa.parse_request_body`, the caller as payee) into the
        room and record it. Raises Forbidden when the caller is not joined, ValidationError
        when a participant is not joined (the rules of `rooms.aa.check_request_context`)."""
        members = await self._members(room_id, [user_id, *req.participants])
        if user_id not in self._joined(members):
            raise Forbidden("You are not a joined member of this room")
        aa.check_request_context(
            req, user_id, await self._joined_by_choice(room_id, req.participants)
        )
        event = await self._send_for(room_id, user_id, req.content(self._name(members, user_id)))
        if event is None:  # shadow-banned: nothing is sent or recorded
            return {"event_id": fake_event_id(), "shares": dict(req.shares)}
        await self.apply_event(event)
        return {"event_id": event.event_id, "shares": dict(req.shares)}

    async def pay(
        self, user_id: str, room_id: str, event_id: str, body: aa.PayBody
    ) -> dict[str, Any]:
        """Pay a share of the request `event_id` (or, as its payee, confirm a cash payment),
        idempotently: a share already paid answers with the payment that settled it. A
        provider payment without a receipt, on a server with a commerce service, is charged
        through it first (at most once per share, whatever the retries).

        Raises NotFound (no such request in the room), Forbidden (not joined, or a rule of
        `rooms.aa.check_payment` that forbids), ValidationError (the other payment rules),
        LimitExceeded (a payment of this share is under way), and for a charge Conflict (no
        linked account) and Unavailable (the commerce service did not answer: nothing sent)."""
        request = await self._request_in_room(room_id, event_id)
        # The payer defaults to the caller; the payee confirming cash must say who paid.
        payer = body.payer
        if payer is None:
            if body.method == "cash" and user_id == request.payee:
                raise MissingParam("payer")
            payer = user_id
        members = await self._require_joined(room_id, user_id)
        # Idempotent: the share is paid already, so this is a retry (or a late duplicate):
        # answer with the payment that settled it and charge nothing.
        if payer != request.payee and payer in request.paid:
            first = await self._payment_of(event_id, payer)
            if first is not None:
                return first
        payment = aa.AAPayment(
            request_event_id=event_id,
            payer=payer,
            amount=request.shares.get(payer, 0),
            currency=request.currency,
            method=body.method,
            receipt=body.receipt,
        )
        commerce = self._server.commerce_handler
        charge = body.method == "provider" and body.receipt is None and commerce.enabled
        if charge:
            if payer != user_id:
                raise Forbidden("must be the sender of a provider payment", param="payer")
            aa.check_payment_target(payment, request)  # every rule the receipt does not decide
        elif payer in request.shares:
            await self.check_payment(payment, user_id, request)
        else:
            aa.check_payment_target(payment, request)
        members.update(await self._members(room_id, [payer, request.payee]))
        text = aa.payment_body(
            self._name(members, payer), self._name(members, request.payee), payment, request.title
        )
        # As Synapse's /send, before anything is charged: the rate limit, and a shadow-banned
        # payer's payment reaches no one (and charges nothing).
        await ratelimit_message(self._api, user_id)
        if await is_shadow_banned(self._api, user_id):
            return {
                "event_id": fake_event_id(),
                "payer": payer,
                "amount": payment.amount,
                "currency": payment.currency,
                "method": payment.method,
            }
        # One `pay` at a time per share (a double click, two devices, two workers): the event
        # check cannot see a payment that is sent but not yet in the ledger.
        now = self._api.get_current_time_msec()
        if not await self._store.claim_payment(event_id, payer, now, self._unfinished_after_ms):
            raise LimitExceeded(
                "A payment for this share is under way; retry to get its result",
                retry_after_ms=1000,
            )
        try:
            # Another `pay` of this share may have sent, applied and released between our read
            # of the request and this claim (two workers): answer with its payment, as a
            # retry does, rather than send a second one that the event check refuses.
            first = await self._payment_of(event_id, payer)
            if first is not None and payer != request.payee:
                return first
            key = None
            if charge:
                key, receipt = await commerce.charge(request, payer)
                payment = attr.evolve(payment, receipt=receipt)
                await self.check_payment(payment, user_id, request)
            event = await self._send(room_id, user_id, payment.content(text))
            await self.apply_event(event)
            if key is not None:
                await commerce.payment_sent(key, event.event_id)
        finally:
            await self._store.release_payment(event_id, payer)
        # A payment that raced another one is recorded but ignored: answer with the winner.
        first = await self._payment_of(event_id, payer)
        return first or await self._payment_json(event.event_id)

    async def complete_provider_payment(
        self, room_id: str, event_id: str, payer: str, receipt: Mapping[str, Any]
    ) -> str | None:
        """Send the payment event of a charge whose `pay` died before sending it (the commerce
        job); its id, or None when the share cannot take it any more (the request was closed
        or withdrawn meanwhile, or the payer left), which is logged for the operator."""
        request = await self._request_in_room(room_id, event_id)
        if payer in request.paid:
            return (await self._store.get_aa_share_payments(event_id)).get(payer)
        payment = aa.AAPayment(
            request_event_id=event_id,
            payer=payer,
            amount=request.shares.get(payer, 0),
            currency=request.currency,
            method="provider",
            receipt=receipt,
        )
        try:
            await self.check_payment(payment, payer, request)
        except (Forbidden, ValidationError) as e:
            logger.warning(
                "laiwang aa: a charged provider payment of %s cannot be posted: %s", event_id, e
            )
            return None
        members = await self._members(room_id, [payer, request.payee])
        text = aa.payment_body(
            self._name(members, payer), self._name(members, request.payee), payment, request.title
        )
        now = self._api.get_current_time_msec()
        if not await self._store.claim_payment(event_id, payer, now, self._unfinished_after_ms):
            raise LimitExceeded("A payment for this share is under way", retry_after_ms=1000)
        try:
            event = await self._send(room_id, payer, payment.content(text))
            await self.apply_event(event)
        finally:
            await self._store.release_payment(event_id, payer)
        return str(event.event_id)

    async def _payment_of(self, request_id: str, payer: str) -> dict[str, Any] | None:
        payment_id = (await self._store.get_aa_share_payments(request_id)).get(payer)
        return await self._payment_json(payment_id) if payment_id else None

    async def _payment_json(self, payment_event_id: str) -> dict[str, Any]:
        payment = await self._store.get_payment(payment_event_id)
        assert payment is not None
        return payment

    async def check_payment(
        self, payment: aa.AAPayment, sender: str, request: aa.RequestView
    ) -> None:
        """Apply every payment rule of `rooms.aa.check_payment`, with the ledger's word on the
        receipt id. Raises Forbidden or ValidationError; shared by `pay` and the event check."""
        key = payment.receipt_key
        used = key is not None and await self._store.is_receipt_used(*key)
        aa.check_payment(payment, sender, request, self._providers, used)

    async def close(self, user_id: str, room_id: str, event_id: str) -> dict[str, Any]:
        """Close the request as its payee (unpaid shares are no longer owed); a retry answers with
        the close that is there already. Raises NotFound (no such request in the room),
        Forbidden (not joined, or not the payee)."""
        request = await self._request_in_room(room_id, event_id)
        members = await self._require_joined(room_id, user_id)
        if request.state == aa.CLOSED and user_id == request.payee:
            # A retry: the request is closed already.
            return {"event_id": await self._store.get_aa_close_event(event_id)}
        aa.check_close(user_id, request)
        content = {
            "msgtype": aa.MSGTYPE_CLOSE,
            "body": aa.close_body(self._name(members, user_id), request),
            "m.relates_to": {"rel_type": "m.reference", "event_id": event_id},
            aa.MSGTYPE_CLOSE: {},
        }
        event = await self._send_for(room_id, user_id, content)
        if event is None:  # shadow-banned: the request stays open for everyone else
            return {"event_id": fake_event_id()}
        await self.apply_event(event)
        return {"event_id": event.event_id}

    async def remind(self, user_id: str, room_id: str, event_id: str) -> dict[str, Any]:
        """Mention the unpaid participants of an open request, as its payee, at most once an hour.
        Raises NotFound, Forbidden (not joined, not the payee), InvalidParam (the request is not
        open), LimitExceeded (a reminder within the hour)."""
        request = await self._request_in_room(room_id, event_id)
        await self._require_joined(room_id, user_id)
        if user_id != request.payee:
            raise Forbidden("Only the payee may send reminders for this request")
        if request.state != aa.OPEN:
            raise InvalidParam("request", f"is {request.state}: there is nobody to remind")
        unpaid = [p for p in request.shares if p not in request.paid]
        now = self._api.get_current_time_msec()
        wait_ms = await self._store.claim_reminder(event_id, now, REMIND_INTERVAL_MS)
        if wait_ms:
            raise LimitExceeded(
                "A reminder for this request was sent less than an hour ago",
                retry_after_ms=wait_ms,
            )
        members = await self._members(room_id, unpaid)
        content = {
            "msgtype": "m.notice",
            "body": aa.reminder_body(request, {u: self._name(members, u) for u in unpaid}),
            "m.mentions": {"user_ids": unpaid},
            "m.relates_to": {"rel_type": "m.reference", "event_id": event_id},
        }
        try:
            event = await self._send_for(room_id, user_id, content)
        except Exception:
            await self._store.release_reminder(event_id, now)
            raise
        # Shadow-banned: nothing was sent; the hour's claim stays, as after a real reminder.
        sent_id = fake_event_id() if event is None else event.event_id
        return {"event_id": sent_id, "mentioned": unpaid}

    async def get_request(self, user_id: str, room_id: str, event_id: str) -> dict[str, Any]:
        """The request with every share and its payment. Raises NotFound also when the caller is
        neither in the bill nor joined to the room (no oracle for strangers)."""
        request = await self._request_in_room(room_id, event_id)
        if user_id != request.payee and user_id not in request.shares:
            members = await self._members(room_id, [user_id])
            if user_id not in self._joined(members):
                raise NotFound("No AA request with this id in this room")
        payments = await self._store.get_aa_share_payments(event_id)
        return {
            "title": request.title,
            "payee": request.payee,
            "currency": request.currency,
            "total": request.total,
            "state": request.state,
            "shares": {
                user: {
                    "amount": amount,
                    "paid": user in request.paid,
                    "payment_event_id": payments.get(user),
                }
                for user, amount in request.shares.items()
            },
        }

    async def balances(self, user_id: str) -> dict[str, Any]:
        """The caller's net balance with each counterparty, per currency."""
        return {"balances": await self._store.get_balances(user_id)}

    # --- the event check (local and federated events alike) ---------------------------------

    async def check_event(self, event: EventBase) -> str | None:
        """Raise a ValidationError when an event breaks an AA rule. Cheap for other events.
        Returns the AA msgtype of an AA event judged now (None for other events, and for one
        judged before), for the metrics."""
        if event.type != "m.room.message":
            return None
        content = event.content
        target = aa.edit_target(content)
        msgtype = aa.aa_msgtype(content)
        if target is not None:
            target_is_aa = bool(target) and await self._is_aa_event(target)
            aa.check_not_an_aa_edit(content, target_is_aa)
            return None
        if msgtype is None:
            return None
        aa.check_known_msgtype(msgtype)
        if await self._store.is_aa_event(event.event_id):
            return None  # judged and applied already (a re-delivered or re-checked event)
        if msgtype == aa.MSGTYPE_REQUEST:
            req = aa.parse_request_content(content)
            joined = await self._joined_by_choice(event.room_id, req.participants)
            aa.check_request_context(req, event.sender, joined)
        elif msgtype == aa.MSGTYPE_PAYMENT:
            payment = aa.parse_payment_content(content)
            request = await self._referenced_request(event, payment.request_event_id)
            if request is not None:
                await self.check_payment(payment, event.sender, request)
        else:
            request_id = aa.parse_close_content(content)
            request = await self._referenced_request(event, request_id)
            if request is not None:
                aa.check_close(event.sender, request)
        return msgtype

    async def _is_aa_event(self, event_id: str) -> bool:
        """Whether the event is an AA event: the ledger's word, or the event's own content when
        the ledger has not applied it yet."""
        if await self._store.is_aa_event(event_id):
            return True
        event = await self._timeline_event(event_id)
        return (
            event is not None
            and event.type == "m.room.message"
            and aa.aa_msgtype(event.content) is not None
            and aa.edit_target(event.content) is None
        )

    async def _referenced_request(self, event: EventBase, request_id: str) -> aa.RequestView | None:
        """The request a payment or close refers to, decided from the room (`_find_request`).
        Raises InvalidParam when it is no AA request of the event's room. None when a remote
        sender's event refers to an event this server does not have yet: catch-up after an
        outage delivers the newest event first and fetches its predecessors after this check,
        so the request may be one of them. Nothing refuses such an event for a gap of this
        server's; the ledger applies it only against a known open request."""
        request = await self._find_request(request_id)
        if request is None and not self._api.is_mine(event.sender):
            stored = (await get_events(self._api, [request_id])).get(request_id)
            if stored is None or stored.internal_metadata.is_outlier():
                return None
        if request is None or request.room_id != event.room_id:
            raise InvalidParam("m.relates_to.event_id", "is not an AA request of this room")
        return request

    # --- the ledger -------------------------------------------------------------------------

    async def apply_event(self, event: EventBase, notify: bool = True) -> None:
        """Update the ledger from a persisted event; idempotent (keyed by event id)."""
        change: LedgerChange | None = None
        if event.type == "m.room.redaction":
            if event.redacts:
                change = await self._store.apply_aa_redaction(
                    event.event_id, event.redacts, event.room_id, event.sender
                )
                if change is not None and notify:
                    self._api.run_as_background_process(
                        "laiwang_aa_redaction_notice", self._redaction_notice, event, change
                    )
        elif event.type == "m.room.message" and aa.aa_msgtype(event.content):
            change = await self._apply_message(event)
        if change is not None:
            await self._api.invalidate_cache(
                self.status_cache.get_aa_status, (change.request_event_id,)
            )

    async def _apply_message(self, event: EventBase) -> LedgerChange | None:
        content, msgtype = event.content, event.content.get("msgtype")
        ts = event.origin_server_ts
        try:
            if aa.edit_target(content) is not None:
                return None
            if msgtype == aa.MSGTYPE_REQUEST:
                req = aa.parse_request_content(content)
                return await self._store.apply_aa_request(event.event_id, event.room_id, req, ts)
            if msgtype == aa.MSGTYPE_PAYMENT:
                payment = aa.parse_payment_content(content)
                refusal = await self._payment_refusal(event.sender, payment)
                return await self._store.apply_aa_payment(
                    event.event_id, event.room_id, event.sender, payment, ts, refusal
                )
            if msgtype == aa.MSGTYPE_CLOSE:
                request_id = aa.parse_close_content(content)
                return await self._store.apply_aa_close(
                    event.event_id, event.room_id, event.sender, request_id
                )
        except InvalidParam as e:
            # Only events persisted before the check existed can be malformed here.
            logger.warning("laiwang: AA event %s ignored by the ledger: %s", event.event_id, e)
        return None

    async def _payment_refusal(self, sender: str, payment: aa.AAPayment) -> str | None:
        """Why the ledger must not count a payment whatever its state says (who sent it, its
        receipt), or None. The event check applied these rules already unless the payment came
        over federation before its request did (`_referenced_request`)."""
        request = await self._store.get_aa_request(payment.request_event_id)
        if request is None:
            return None  # the ledger ignores a payment of an unknown request anyway
        try:
            aa.check_payment_authority(payment, sender, request, self._providers)
        except LaiwangError as e:
            return f"breaks a payment rule: {e.sentence}"
        return None

    async def _redaction_notice(self, redaction: EventBase, change: LedgerChange) -> None:
        """Say in the room what a redaction did to the ledger, once, from the payee's server."""
        request = await self._store.get_aa_request(change.request_event_id)
        if request is None or not self._api.is_mine(request.payee):
            return
        if not await self._store.claim_redaction_notice(redaction.event_id):
            return
        members = await self._members(request.room_id, [redaction.sender])
        who = self._name(members, redaction.sender)
        if change.kind == "request":
            text = f"{who} withdrew AA: {request.title} (redacted); it is void and nobody owes it."
        elif change.kind == "payment":
            amount = format_amount(change.detail.get("amount", 0), request.currency)
            payer = change.detail.get("payer", "")
            text = (
                f"{who} redacted the payment of {amount} by {payer} for AA: {request.title}; "
                "that share is unpaid again."
            )
        else:
            text = f"{who} redacted the close of AA: {request.title}; it is {request.state} again."
        content = {
            "msgtype": "m.notice",
            "body": text,
            "m.relates_to": {"rel_type": "m.reference", "event_id": request.event_id},
        }
        try:
            # The server's notice, not the payee's act: not counted against the payee's budget
            # (a redactor could otherwise spend it).
            await self._send(request.room_id, request.payee, content)
        except Exception:
            logger.exception("laiwang: could not post the AA redaction notice")

    async def rebuild_room(self, user_id: str, room_id: str) -> dict[str, Any]:
        """Rebuild a room's ledger from the room's history on this server (server admins;
        Forbidden for anyone else).

        The room's rows (and their part of every balance) are removed, then every message and
        redaction is applied again in this server's order, through the same code as
        `on_new_event`. Soft-failed and rejected events are left out, as they were the first
        time. A redacted event has lost its content, so it counts for nothing: a redacted
        request is gone rather than void, a redacted payment leaves its share unpaid."""
        if not await self._api.is_user_admin(user_id):
            raise Forbidden("Only server admins may rebuild the AA ledger")
        before = await self._store.forget_aa_room(room_id)
        event_ids = await self._store.get_room_event_ids(room_id)
        applied = 0
        for start in range(0, len(event_ids), 500):
            for event in await get_events_as_list(self._api, event_ids[start : start + 500]):
                if event.internal_metadata.is_soft_failed():
                    continue
                applied += 1
                await self.apply_event(event, notify=False)
        after = await self._store.get_aa_request_ids(room_id)
        for request_id in set(before) | set(after):
            await self._api.invalidate_cache(self.status_cache.get_aa_status, (request_id,))
        return {"room_id": room_id, "events": applied, "requests": len(after)}

    async def reconcile(self) -> int:
        """Apply the latest messages and redactions of every AA room that the ledger has not
        applied (an update that was lost), in the room's order, through the same code as
        `on_new_event`; returns how many rooms were looked at."""
        room_ids = await self._store.get_aa_room_ids()
        for room_id in room_ids:
            events = await latest_room_events(
                self._api, room_id, ("m.room.message", "m.room.redaction"), RECONCILE_WINDOW
            )
            applied = await self._store.get_applied_aa_events([e.event_id for e in events])
            for event in events:
                if event.event_id not in applied:
                    await self.apply_event(event)
        return len(room_ids)

    # --- unsigned status --------------------------------------------------------------------

    async def unsigned_fields(self, event: EventBase) -> dict[str, Any]:
        """`unsigned["org.laiwang.aa.status"]` of an AA request served to a client (cached); `{}`
        for every other event. A redacted event has lost its msgtype, yet a request redacted by
        someone without the authority to void it is still owed: ask the cache for those too
        (redactions are rare)."""
        if event.type != "m.room.message":
            return {}
        if (
            event.content.get("msgtype") != aa.MSGTYPE_REQUEST
            and not event.internal_metadata.is_redacted()
        ):
            return {}
        cache: Any = self.status_cache  # @cached is typed by Synapse's mypy plugin only
        status = await cache.get_aa_status(event.event_id)
        return {aa.STATUS_KEY: status} if status else {}
