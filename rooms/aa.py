"""AA (split the bill): splits, event shapes and every rule an AA event must follow.

This is the one place for the rules. The REST endpoints call these functions before they send an
event (and answer with precise Matrix errors); the event check calls the same functions on every
AA event, whether a client sent it raw or it arrived over federation. What the rules need to know
about the room (who is joined) or the ledger (is the share paid, was the receipt used) is passed
in by the caller, so this module does no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import attr
from signedjson.sign import SignatureVerifyException, verify_signed_json

from rooms.errors import Forbidden, InvalidParam, MissingParam
from rooms.money import format_amount, require_amount, require_currency
from rooms.validation import is_event_id, is_user_id, reject_unknown_keys, require, require_room_id

PREFIX = "org.laiwang.aa."
MSGTYPE_REQUEST = "org.laiwang.aa.request"
MSGTYPE_PAYMENT = "org.laiwang.aa.payment"
MSGTYPE_CLOSE = "org.laiwang.aa.close"
MSGTYPES = (MSGTYPE_REQUEST, MSGTYPE_PAYMENT, MSGTYPE_CLOSE)
STATUS_KEY = "org.laiwang.aa.status"

SPLITS = ("equal", "exact", "weights")
METHODS = ("cash", "provider")
# Request states. "void" is ours (the contract has the first three): the request was redacted.
OPEN, SETTLED, CLOSED, VOID = "open", "settled", "closed", "void"

MAX_PARTICIPANTS = 100
MAX_TITLE = 200
MAX_WEIGHT = 1_000_000
RECEIPT_FIELDS = ("receipt_id", "provider", "payer", "payee", "amount", "currency", "room_id")
MAX_RECEIPT_ID = 255


# --- splits ---------------------------------------------------------------------------------


def split_equal(total: int, participants: Sequence[str]) -> dict[str, int]:
    """Equal shares exact to the minor unit: the remainder goes one unit at a time to the
    participants in the order given."""
    base, remainder = divmod(total, len(participants))
    return {p: base + (1 if i < remainder else 0) for i, p in enumerate(participants)}


def split_weights(total: int, weights: Sequence[tuple[str, int]]) -> dict[str, int]:
    """Shares proportional to positive integer weights: each gets the floor of its exact share,
    then the remainder goes one unit at a time in the order given. Every share is therefore
    within one minor unit of its exact proportion, and the shares sum to `total`."""
    weight_sum = sum(w for _, w in weights)
    floors = [(p, total * w // weight_sum) for p, w in weights]
    remainder = total - sum(f for _, f in floors)
    return {p: f + (1 if i < remainder else 0) for i, (p, f) in enumerate(floors)}


# --- requests -------------------------------------------------------------------------------


@attr.s(frozen=True, slots=True, auto_attribs=True)
class AARequest:
    title: str
    currency: str
    total: int
    payee: str
    shares: Mapping[str, int]  # in participant order

    @property
    def participants(self) -> list[str]:
        return list(self.shares)

    def block(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "currency": self.currency,
            "total": self.total,
            "payee": self.payee,
            "shares": dict(self.shares),
        }

    def content(self, payee_name: str) -> dict[str, Any]:
        return {
            "msgtype": MSGTYPE_REQUEST,
            "body": request_body(payee_name, self),
            MSGTYPE_REQUEST: self.block(),
        }


def _title(value: Any, param: str = "title") -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidParam(param, "must be a non-empty string")
    if len(value) > MAX_TITLE:
        raise InvalidParam(param, f"must be at most {MAX_TITLE} characters")
    return value


def _participants(value: Any, param: str = "participants") -> list[str]:
    if not isinstance(value, list) or not value:
        raise InvalidParam(param, "must be a non-empty list of Matrix user ids")
    if len(value) > MAX_PARTICIPANTS:
        raise InvalidParam(param, f"must have at most {MAX_PARTICIPANTS} people")
    seen: set[str] = set()
    for user_id in value:
        if not is_user_id(user_id):
            raise InvalidParam(param, "must contain only Matrix user ids like @bob:example.org")
        if user_id in seen:
            raise InvalidParam(param, f"lists {user_id} twice")
        seen.add(user_id)
    return list(value)


def validate_request(req: AARequest) -> AARequest:
    """The value rules of a bill, for the endpoint and for events alike."""
    _title(req.title)
    require_currency(req.currency)
    require_amount(req.total, req.currency, "total")
    if not is_user_id(req.payee):
        raise InvalidParam("payee", "must be a Matrix user id")
    _participants(list(req.shares))
    for user_id, amount in req.shares.items():
        require_amount(amount, req.currency, f"shares.{user_id}")
    if sum(req.shares.values()) != req.total:
        raise InvalidParam(
            "shares",
            f"sum to {format_amount(sum(req.shares.values()), req.currency)}, "
            f"not the total {format_amount(req.total, req.currency)}",
        )
    return req


def _user_int_map(
    body: Mapping[str, Any], key: str, participants: Sequence[str]
) -> Mapping[str, Any]:
    value = body.get(key)
    if value is None:
        raise MissingParam(key)
    if not isinstance(value, Mapping):
        raise InvalidParam(key, "must be an object of user id to integer")
    if set(value) != set(participants):
        raise InvalidParam(key, "must have exactly one entry for each participant")
    return value


def parse_request_body(body: Mapping[str, Any], payee: str) -> tuple[str, AARequest]:
    """`POST /aa/requests`: returns the room id and the bill with computed shares."""
    reject_unknown_keys(
        body,
        ("room_id", "title", "currency", "total", "split", "participants", "amounts", "weights"),
    )
    room_id = require_room_id(body, "room_id")
    title = _title(require(body, "title"))
    currency = require_currency(require(body, "currency"))
    total = require_amount(require(body, "total"), currency, "total")
    split = body.get("split", "equal")
    if split not in SPLITS:
        raise InvalidParam("split", "must be one of " + ", ".join(f'"{s}"' for s in SPLITS))
    participants = _participants(require(body, "participants"))
    used = {"exact": "amounts", "weights": "weights"}.get(split)
    for other in ("amounts", "weights"):
        if other != used and body.get(other) is not None:
            raise InvalidParam(other, f'is not used with split "{split}"')
    if split == "equal":
        if total < len(participants):
            raise InvalidParam("total", "is too small to give every participant a share")
        shares = split_equal(total, participants)
    elif split == "exact":
        amounts = _user_int_map(body, "amounts", participants)
        shares = {p: require_amount(amounts[p], currency, f"amounts.{p}") for p in participants}
    else:
        raw = _user_int_map(body, "weights", participants)
        weights = []
        for p in participants:
            w = raw[p]
            if isinstance(w, bool) or not isinstance(w, int) or not 0 < w <= MAX_WEIGHT:
                raise InvalidParam(f"weights.{p}", f"must be an integer from 1 to {MAX_WEIGHT}")
            weights.append((p, w))
        shares = split_weights(total, weights)
        if min(shares.values()) <= 0:
            raise InvalidParam("total", "is too small to give every participant a share")
    return room_id, validate_request(AARequest(title, currency, total, payee, shares))


@attr.s(frozen=True, slots=True, auto_attribs=True)
class PayBody:
    """A `POST …/pay` body. `payer` is None when the caller pays their own share."""

    method: str
    payer: str | None = None
    receipt: dict[str, Any] | None = None


def parse_pay_body(body: Mapping[str, Any]) -> PayBody:
    """`POST /aa/requests/{room_id}/{event_id}/pay` `{method, payer?, receipt?}`."""
    reject_unknown_keys(body, ("method", "payer", "receipt"))
    method = body.get("method")
    if method is None:
        raise MissingParam("method")
    if method not in METHODS:
        raise InvalidParam("method", 'must be "cash" or "provider"')
    receipt = body.get("receipt")
    if receipt is not None and not isinstance(receipt, dict):
        raise InvalidParam("receipt", "must be an object")
    payer = body.get("payer")
    if payer is not None and not is_user_id(payer):
        raise InvalidParam("payer", "must be a Matrix user id")
    return PayBody(method, payer, receipt)


def parse_request_content(content: Mapping[str, Any]) -> AARequest:
    """The `org.laiwang.aa.request` block of an event, fully validated."""
    block = content.get(MSGTYPE_REQUEST)
    if not isinstance(block, Mapping):
        raise InvalidParam(MSGTYPE_REQUEST, "block is missing")
    shares = block.get("shares")
    if not isinstance(shares, Mapping):
        raise InvalidParam("shares", "must be an object of user id to amount")
    return validate_request(
        AARequest(
            title=block.get("title"),  # type: ignore[arg-type]  # validated below
            currency=block.get("currency"),  # type: ignore[arg-type]
            total=block.get("total"),  # type: ignore[arg-type]
            payee=block.get("payee"),  # type: ignore[arg-type]
            shares=dict(shares),
        )
    )


def check_request_context(req: AARequest, sender: str, joined: Collection[str]) -> None:
    """The rules that need the room: the payee is the sender, participants are joined.
    `joined` holds only members who joined by their own choice (`rooms.validation.own_join`):
    a bill names as debtor nobody who was put in the room."""
    if req.payee != sender:
        raise Forbidden("must be the sender: only the payee asks for money", param="payee")
    missing = [p for p in req.participants if p not in joined]
    if missing:
        raise InvalidParam(
            "participants", f"must be joined members of the room: {', '.join(missing)}"
        )


# --- the ledger's view of a request, as the payment and close rules need it ----------------


@attr.s(frozen=True, slots=True, auto_attribs=True)
class RequestView:
    event_id: str
    room_id: str
    title: str
    payee: str
    currency: str
    total: int
    state: str
    shares: Mapping[str, int]
    paid: Collection[str]  # participants whose share counts as paid (the payee always does)


# --- payments -------------------------------------------------------------------------------


@attr.s(frozen=True, slots=True, auto_attribs=True)
class AAPayment:
    request_event_id: str
    payer: str
    amount: int
    currency: str
    method: str
    receipt: Mapping[str, Any] | None = None

    def block(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "payer": self.payer,
            "amount": self.amount,
            "currency": self.currency,
            "method": self.method,
        }
        if self.receipt is not None:
            out["receipt"] = dict(self.receipt)
        return out

    def content(self, body: str) -> dict[str, Any]:
        return {
            "msgtype": MSGTYPE_PAYMENT,
            "body": body,
            "m.relates_to": {"rel_type": "m.reference", "event_id": self.request_event_id},
            MSGTYPE_PAYMENT: self.block(),
        }

    @property
    def receipt_key(self) -> tuple[str, str] | None:
        """(provider, receipt_id) when the receipt names both as strings."""
        if self.receipt is None:
            return None
        provider, receipt_id = self.receipt.get("provider"), self.receipt.get("receipt_id")
        if isinstance(provider, str) and isinstance(receipt_id, str):
            return provider, receipt_id
        return None


def reference_target(content: Mapping[str, Any]) -> str:
    """The request an AA payment or close refers to (an `m.reference` relation)."""
    rel = content.get("m.relates_to")
    if not isinstance(rel, Mapping) or rel.get("rel_type") != "m.reference":
        raise InvalidParam("m.relates_to", "must be an m.reference to the AA request")
    target = rel.get("event_id")
    if not is_event_id(target):
        raise InvalidParam("m.relates_to.event_id", "must be an event id")
    return str(target)


def parse_payment_content(content: Mapping[str, Any]) -> AAPayment:
    request_event_id = reference_target(content)
    block = content.get(MSGTYPE_PAYMENT)
    if not isinstance(block, Mapping):
        raise InvalidParam(MSGTYPE_PAYMENT, "block is missing")
    payer = block.get("payer")
    if not is_user_id(payer):
        raise InvalidParam("payer", "must be a Matrix user id")
    currency = require_currency(block.get("currency"))
    amount = require_amount(block.get("amount"), currency, "amount")
    method = block.get("method")
    if method not in METHODS:
        raise InvalidParam("method", 'must be "cash" or "provider"')
    receipt = block.get("receipt")
    if receipt is not None and not isinstance(receipt, Mapping):
        raise InvalidParam("receipt", "must be an object")
    return AAPayment(request_event_id, str(payer), amount, currency, method, receipt)


def check_payment_target(payment: AAPayment, request: RequestView) -> None:
    """The share rules, checked before the receipt: open bill, a participant's unpaid share,
    in the request's currency and amount."""
    if request.state == CLOSED:
        raise InvalidParam("request", "is closed: no payments after the close")
    if request.state == VOID:
        raise InvalidParam("request", "was withdrawn (redacted)")
    if payment.payer == request.payee:
        raise InvalidParam("payer", "is the payee, whose own share counts as paid")
    if payment.payer not in request.shares:
        raise InvalidParam("payer", "is not a participant of this bill")
    if payment.payer in request.paid:
        raise InvalidParam("payer", "has already paid this share: one payment per share")
    if payment.currency != request.currency:
        raise InvalidParam("currency", f"must be the request's currency, {request.currency}")
    share = request.shares[payment.payer]
    if payment.amount != share:
        raise InvalidParam(
            "amount", f"must be the payer's share, {format_amount(share, request.currency)}"
        )


def check_payment(
    payment: AAPayment,
    sender: str,
    request: RequestView,
    providers: Mapping[str, Any],
    receipt_used: bool,
) -> None:
    """Every rule of a payment. `providers` maps a provider name to an object with `key_id`
    and `verify_key` (the module config's PaymentProvider); `receipt_used` says whether the
    ledger already holds another payment with this receipt id."""
    check_payment_target(payment, request)
    check_payment_authority(payment, sender, request, providers)
    if payment.method != "cash" and receipt_used:
        raise InvalidParam("receipt", "id was already used for a payment")


def check_payment_authority(
    payment: AAPayment, sender: str, request: RequestView, providers: Mapping[str, Any]
) -> None:
    """The rules of a payment that do not depend on the ledger's state: who may send it, and
    its receipt. The ledger applies them again (`check_payment_target`'s are its own keys):
    a federated payment whose request its server did not have yet was let in unchecked."""
    if payment.method == "cash":
        if sender != request.payee:
            raise Forbidden("cash payments are confirmed by the payee only", param="method")
        if payment.receipt is not None:
            raise InvalidParam("receipt", "is not used with cash")
        return
    if sender != payment.payer:
        raise Forbidden("must be the sender of a provider payment", param="payer")
    if payment.receipt is None:
        raise MissingParam("receipt")
    verify_receipt(payment.receipt, payment, request, providers)


def verify_receipt(
    receipt: Mapping[str, Any],
    payment: AAPayment,
    request: RequestView,
    providers: Mapping[str, Any],
) -> None:
    """A provider's signed receipt must name this very payment and carry a valid signature."""
    for field in (*RECEIPT_FIELDS, "event_id", "signatures"):
        if field not in receipt:
            raise InvalidParam(f"receipt.{field}", "is required")
    receipt_id = receipt["receipt_id"]
    if not isinstance(receipt_id, str) or not 0 < len(receipt_id) <= MAX_RECEIPT_ID:
        raise InvalidParam("receipt.receipt_id", "must be a non-empty string")
    expected = {
        "payer": payment.payer,
        "payee": request.payee,
        "amount": payment.amount,
        "currency": request.currency,
        "room_id": request.room_id,
        "event_id": request.event_id,
    }
    for field, value in expected.items():
        got = receipt[field]
        if got != value or isinstance(got, bool):
            raise InvalidParam(f"receipt.{field}", "does not match this payment")
    provider_name = receipt["provider"]
    provider = providers.get(provider_name) if isinstance(provider_name, str) else None
    if provider is None:
        raise InvalidParam("receipt.provider", "is not a payment provider this server trusts")
    try:
        verify_signed_json(dict(receipt), provider_name, provider.verify_key)
    except (SignatureVerifyException, KeyError, TypeError, ValueError):
        raise InvalidParam("receipt", "signature is not valid for the provider's key") from None


# --- closes and edits -----------------------------------------------------------------------


def parse_close_content(content: Mapping[str, Any]) -> str:
    """The request a close refers to."""
    return reference_target(content)


def check_close(sender: str, request: RequestView) -> None:
    if sender != request.payee:
        raise Forbidden("only the payee may close the request", param="sender")
    if request.state == CLOSED:
        raise InvalidParam("request", "is already closed")
    if request.state == SETTLED:
        raise InvalidParam("request", "is settled: nothing is left to close")
    if request.state == VOID:
        raise InvalidParam("request", "was withdrawn (redacted)")


def edit_target(content: Mapping[str, Any]) -> str | None:
    rel = content.get("m.relates_to")
    if isinstance(rel, Mapping) and rel.get("rel_type") == "m.replace":
        target = rel.get("event_id")
        return target if isinstance(target, str) else ""
    return None


def aa_msgtype(content: Mapping[str, Any]) -> str | None:
    msgtype = content.get("msgtype")
    if isinstance(msgtype, str) and msgtype.startswith(PREFIX):
        return msgtype
    return None


def check_not_an_aa_edit(content: Mapping[str, Any], target_is_aa: bool) -> None:
    """AA events cannot be edited, and an edit cannot turn a message into an AA event."""
    if edit_target(content) is None:
        return
    new_content = content.get("m.new_content")
    if (
        target_is_aa
        or aa_msgtype(content)
        or (isinstance(new_content, Mapping) and aa_msgtype(new_content))
    ):
        raise Forbidden("AA requests, payments and closes cannot be edited", param="m.relates_to")


def check_known_msgtype(msgtype: str) -> None:
    if msgtype not in MSGTYPES:
        raise InvalidParam("msgtype", f"'{msgtype[:64]}' is not an AA message type")


# --- redactions -----------------------------------------------------------------------------


def redaction_voids(
    kind: str,
    redaction_room: str,
    request_room: str,
    sender: str,
    payee: str,
    payer: str | None = None,
) -> bool:
    """Whether a redaction undoes an AA event in the ledger (docs/api/aa.md, "Redactions").

    Synapse lets a room's moderators redact anything and still notifies a redaction whose
    target it does not apply (another room's event), so the ledger asks itself: the redaction
    must be in the request's room, and sent by
    - the payee, for a request (a moderator who owes money must not void the bill) or a close
      (the close is the payee's waiver of the unpaid shares; undoing it makes them owed again,
      which only the payee may decide);
    - the payer or the payee, for a payment (either side may say it did not happen; a third
      party may not make a share owed again)."""
    if redaction_room != request_room:
        return False
    if kind == "payment":
        return sender in (payee, payer)
    return sender == payee


# --- bodies that any client shows ----------------------------------------------------------


def request_body(payee_name: str, req: AARequest) -> str:
    shares = "/".join(format_amount(a, req.currency).split(" ", 1)[1] for a in req.shares.values())
    return (
        f"{payee_name} asks for AA: {req.title}, {format_amount(req.total, req.currency)}, "
        f"{req.currency} {shares}"
    )


def payment_body(payer_name: str, payee_name: str, payment: AAPayment, title: str) -> str:
    how = (
        "in cash"
        if payment.method == "cash"
        else f"via {payment.receipt_key[0] if payment.receipt_key else 'provider'}"
    )
    return (
        f"{payer_name} paid {payee_name} {format_amount(payment.amount, payment.currency)} "
        f"for AA: {title} ({how})"
    )


def close_body(payee_name: str, request: RequestView) -> str:
    paid = len([p for p in request.shares if p in request.paid])
    return f"{payee_name} closed AA: {request.title} ({paid} of {len(request.shares)} paid)"


def reminder_body(request: RequestView, unpaid_names: Mapping[str, str]) -> str:
    owed = ", ".join(
        f"{name} {format_amount(request.shares[user_id], request.currency)}"
        for user_id, name in unpaid_names.items()
    )
    return f"Reminder for AA: {request.title} — still unpaid: {owed}"
