"""The customer self-service portal: identify with order number and email, see what is left
to refund, ask for a refund (with photos when the policy wants them), and see the policy's
answer before confirming it."""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import math
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeSerializer
from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from PIL import Image
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from refunddesk.bootstrap import Container
from refunddesk.core.errors import DomainError, NotFound
from refunddesk.core.ids import normalize_reference
from refunddesk.db.prepared import Driver
from refunddesk.orders.orm import Order
from refunddesk.policy.document import (
    Condition,
    Evidence,
    MethodRule,
    RefundMethod,
    RequiredCondition,
)
from refunddesk.policy.facts import order_facts
from refunddesk.policy.service import CACHE, DEFAULT_VERSION
from refunddesk.refunds import service as refunds
from refunddesk.refunds.domain import Channel, EventType, Reason, RefundStatus
from refunddesk.refunds.orm import Refund
from refunddesk.refunds.schemas import RefundCreate, RefundLineIn, RefundPreview
from refunddesk.returns.orm import ReturnRecord
from refunddesk.tenants.orm import Tenant
from refunddesk.tracking.service import REVIEW_DAYS, STATUS_LABELS, track
from refunddesk.web import security
from refunddesk.web.views import MAX_EMAIL, _breakdown, _clean, _field, _money, _render

log = logging.getLogger(__name__)

MAX_ORDER_NUMBER = 100
MAX_NOTE = 2000
MAX_PHOTOS = 5
PORTAL_REQUEST_PATH = "/portal/request"  # the form with photos: api/app.py lets it be larger
MAX_CANDIDATES = 20  # orders with one number across retailers; more would be odd
SESSION_SECONDS = 30 * 60  # a portal session lasts this long after the last page it showed
ACTOR = "customer:portal"
_SESSION_KEY = "portal"
_CHOICES_KEY = "portal_choices"
_DRAFT_SALT = "refunddesk.portal.draft"
_NO_ORDER_EMAIL = "no-such-order@invalid"

NOT_FOUND_TEXT = (
    "We could not find an order with this number and email address. Check both against "
    "your order confirmation email."
)
# The customer's words for the fixed reason vocabulary, in the order the form lists them.
REASON_WORDS: dict[str, str] = {
    Reason.DAMAGED: "It arrived damaged",
    Reason.DEFECTIVE: "It is faulty or stopped working",
    Reason.WRONG_ITEM: "I received the wrong item",
    Reason.NOT_AS_DESCRIBED: "It is not as described",
    Reason.NOT_RECEIVED: "It never arrived",
    Reason.LATE_DELIVERY: "It arrived too late",
    Reason.CHANGED_MIND: "I changed my mind",
    Reason.DUPLICATE_CHARGE: "I was charged twice",
    Reason.PRICE_ADJUSTMENT: "The price dropped after I bought it",
    Reason.OTHER: "Something else",
}
CONDITION_WORDS: dict[str, str] = {
    Condition.UNOPENED: "Unopened, in its original packaging",
    Condition.UNUSED: "Opened but unused",
    Condition.USED: "Used",
    Condition.DAMAGED: "Damaged",
}
REQUIRED_CONDITION_WORDS = {
    RequiredCondition.UNOPENED: "unopened",
    RequiredCondition.UNUSED: "unused",
}
METHOD_WORDS = {"original": "your original payment method", "store_credit": "store credit"}
DECISION_WORDS = {
    RefundStatus.APPROVED: "Approved at once",
    RefundStatus.AWAITING_RETURN: "Approved once the items are back",
    RefundStatus.PENDING_REVIEW: "Our team reviews it",
    RefundStatus.REJECTED: "It would be declined",
}
# The policy's findings in the customer's words; {message} is the policy's own detail.
FINDING_WORDS = {
    "within_return_window": "You are within the return window ({message}).",
    "outside_return_window": "The return window has passed ({message}).",
    "return_window_not_applied": "The return window does not apply to this reason.",
    "missing_evidence": "The retailer asks for evidence for this reason ({message}).",
    "condition_not_stated": "The retailer needs to know the item's condition.",
    "condition_unknown": "The condition you gave is not one the retailer knows.",
    "condition_not_accepted": "The item's condition does not meet the policy ({message}).",
    "non_refundable": "An item cannot be refunded under the retailer's policy ({message}).",
    "final_sale": "An item was sold as final sale ({message}).",
    "approval_required": "The amount needs a person at the retailer to approve it.",
    "return_required": "The items need to come back first.",
    "instant_refund": "No need to send the items back.",
    "refund_method_fixed": "The retailer decides how the money is paid back ({message}).",
    "clamped_to_budget": "The refund is limited to what is left to refund on the order.",
    "fees_exceed_refund": "Fees would take the whole refund ({message}).",
}
IMAGE_TYPES = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


# ----- the portal session -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PortalSession:
    """One identified order: its retailer, internal id and number, and a nonce of the session."""

    tenant_id: str
    order_id: str
    number: str
    nonce: str


def _read_session(request: Request, now: float) -> PortalSession | None:
    value: Any = request.session.get(_SESSION_KEY)
    if not isinstance(value, dict):
        return None
    parts = [value.get(k) for k in ("t", "o", "n", "k")]
    expires = value.get("e")
    if not all(isinstance(p, str) for p in parts) or not isinstance(expires, int | float):
        return None
    if expires < now:
        request.session.pop(_SESSION_KEY, None)
        return None
    value["e"] = int(now) + SESSION_SECONDS  # sliding: each page keeps it alive
    request.session[_SESSION_KEY] = value
    return PortalSession(*parts)  # type: ignore[arg-type]


def _start_session(request: Request, candidate: Candidate, now: float) -> None:
    request.session.pop(_CHOICES_KEY, None)
    request.session[_SESSION_KEY] = {
        "t": candidate.tenant_id,
        "o": candidate.order_id,
        "n": candidate.number,
        "k": secrets.token_urlsafe(16),
        "e": int(now) + SESSION_SECONDS,
    }


# ----- identification ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    tenant_id: str
    order_id: str
    number: str
    retailer: str


def _casefold(email: str) -> bytes:
    return email.strip().casefold().encode()


def find_orders(session: Session, *, number: str, email: str) -> list[Candidate]:
    """The orders with this number whose customer has this email, across retailers.

    Every candidate's email is compared in constant time, and one is compared even when no
    order has the number, so that neither the answer nor its timing says which was wrong.
    """
    # One index lookup per retailer (uq_orders_tenant_external leads with tenant_id): a desk
    # has tens of retailers and millions of orders, so never scan orders by number alone.
    names: dict[str, str] = {
        row.id: row.name for row in session.execute(select(Tenant.id, Tenant.name))
    }
    rows = session.execute(
        select(Order.tenant_id, Order.id, Order.customer_email)
        .where(Order.tenant_id.in_(list(names)), Order.external_id == number)
        .limit(MAX_CANDIDATES)
    ).all()
    given = _casefold(email)
    found: list[Candidate] = []
    # (candidate or None, stored email): a stand-in when no order has this number
    stored: list[tuple[Candidate | None, str]] = [
        (Candidate(row.tenant_id, row.id, number, names[row.tenant_id]), str(row.customer_email))
        for row in sorted(rows, key=lambda r: (names[r.tenant_id], r.tenant_id))
    ] or [(None, _NO_ORDER_EMAIL)]
    for candidate, mail in stored:
        if hmac.compare_digest(_casefold(mail), given) and candidate is not None:
            found.append(candidate)
    return found


# ----- rate limits ------------------------------------------------------------------------


class RateLimits:
    """Moving-window limits per client IP and per order number (the `limits` package)."""

    def __init__(self, storage_uri: str, lookup: str, request: str) -> None:
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))
        self.lookup = parse_many(lookup)
        self.request = parse_many(request)

    def retry_after(self, kind: str, items: list[RateLimitItem], *keys: str) -> int | None:
        """Count one attempt; None when it is allowed, else seconds until the next one is."""
        try:
            for key in keys:
                digest = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:32]
                for item in items:
                    if not self._limiter.hit(item, "portal", kind, digest):
                        stats = self._limiter.get_window_stats(item, "portal", kind, digest)
                        return max(1, math.ceil(stats.reset_time - time.time()))
        except Exception:  # the shared store is down: serve customers rather than fail them
            log.exception("portal rate limit store unavailable; request allowed")
        return None


def _client(request: Request) -> str:
    return f"ip:{request.client.host if request.client else 'unknown'}"


# ----- photos -----------------------------------------------------------------------------


def image_extension(data: bytes) -> str | None:
    """The extension of a JPEG, PNG or WebP image, judged by its content; None otherwise."""
    try:
        with Image.open(io.BytesIO(data), formats=list(IMAGE_TYPES)) as image:
            kind = image.format
            image.verify()
    except Exception:  # Pillow raises many kinds of error for broken or hostile files
        return None
    return IMAGE_TYPES.get(kind or "")


def store_photo(root: Path, tenant_id: str, data: bytes, extension: str) -> str:
    """Write a checked photo under root/<tenant>/<random id>.<ext>; return that relative path."""
    folder = root / tenant_id
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{secrets.token_hex(16)}.{extension}"
    with (folder / name).open("xb") as out:
        out.write(data)
    return f"{tenant_id}/{name}"


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str
    data: bytes


def _display_name(upload: UploadFile) -> str:
    name = (upload.filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable())[:60]
    return name or "the file"


async def read_uploads(
    form: FormData, max_bytes: int
) -> tuple[list[Upload], list[tuple[str, str]]]:
    """The photos sent (bounded reads) and the problems with them, as (field, message)."""
    files = [
        v
        for v in form.getlist("photos")
        if isinstance(v, UploadFile) and (v.filename or (v.size or 0) > 0)
    ]
    if len(files) > MAX_PHOTOS:
        return [], [("photos", f"Attach at most {MAX_PHOTOS} photos.")]
    uploads: list[Upload] = []
    errors: list[tuple[str, str]] = []
    for upload in files:
        data = await upload.read(max_bytes + 1)
        name = _display_name(upload)
        if len(data) > max_bytes:
            errors.append(("photos", f"{name} is larger than {_size(max_bytes)}."))
        elif not data:
            errors.append(("photos", f"{name} is empty."))
        else:
            uploads.append(Upload(name, data))
    return uploads, errors


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} MB" if n >= 1024 * 1024 else f"{math.ceil(n / 1024)} KB"


# ----- the order and the request form -----------------------------------------------------


@dataclass
class FormValues:
    """What the customer entered on the request form, to show it again."""

    quantities: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    condition: str = ""
    note: str = ""
    method: str = ""


@dataclass(frozen=True, slots=True)
class Draft:
    """A checked request, carried signed from the preview to the confirmation."""

    lines: tuple[tuple[str, int], ...]
    reason: str
    condition: str | None
    note: str | None
    method: str | None
    photos: tuple[str, ...] = ()

    def refund(self, order_number: str) -> RefundCreate:
        return RefundCreate(
            order_id=order_number,
            lines=[
                RefundLineIn(sku=sku, quantity=qty, condition=self.condition)
                for sku, qty in self.lines
            ],
            reason=Reason(self.reason),
            channel=Channel.PORTAL,
            note=self.note,
            evidence=[Evidence.PHOTO] if self.photos else None,
            refund_method=RefundMethod(self.method) if self.method else None,
        )

    def as_data(self, ps: PortalSession) -> dict[str, Any]:
        return {
            "s": ps.nonce,
            "t": ps.tenant_id,
            "o": ps.order_id,
            "lines": [list(line) for line in self.lines],
            "reason": self.reason,
            "condition": self.condition,
            "note": self.note,
            "method": self.method,
            "photos": list(self.photos),
        }

    @classmethod
    def from_data(cls, data: Any, ps: PortalSession) -> Draft | None:
        """The draft, if it was made in this portal session for this order; None otherwise."""
        if not isinstance(data, dict):
            return None
        if (data.get("s"), data.get("t"), data.get("o")) != (ps.nonce, ps.tenant_id, ps.order_id):
            return None
        try:
            return cls(
                lines=tuple((str(sku), int(qty)) for sku, qty in data["lines"]),
                reason=str(data["reason"]),
                condition=data["condition"],
                note=data["note"],
                method=data["method"],
                photos=tuple(str(p) for p in data["photos"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def idempotency_key(token: str) -> str:
    """One key per portal session and form: a double submit makes one refund."""
    return "portal-" + hashlib.sha256(token.encode()).hexdigest()[:48]


def _words_of(text: str) -> str:
    return text.replace("_", " ")


def order_context(session: Session, ps: PortalSession) -> dict[str, Any] | None:
    """The order page: the retailer, what is left to refund per line, the refunds so far, and
    what the retailer's policy asks of a request."""
    order = session.scalars(
        select(Order).where(Order.tenant_id == ps.tenant_id, Order.id == ps.order_id)
    ).first()
    tenant = session.get(Tenant, ps.tenant_id)
    if order is None or tenant is None:
        return None
    facts = order_facts(Driver.of(session), tenant_id=ps.tenant_id, order_id=ps.order_id)
    lines: list[dict[str, Any]] = []
    for line in order.lines:
        refunded = min(facts.refunded_quantities.get(line.sku, 0), line.quantity)
        lines.append(
            {
                "field": f"qty-{line.line_no}",
                "sku": line.sku,
                "name": line.name,
                "ordered": line.quantity,
                "refunded": refunded,
                "left": line.quantity - refunded,
                "unit_price": _money(line.unit_price_minor, order.currency),
            }
        )
    rows = session.scalars(
        select(Refund)
        .where(Refund.tenant_id == ps.tenant_id, Refund.order_id == ps.order_id)
        .order_by(Refund.created_at.desc(), Refund.id.desc())
    ).all()
    policy = CACHE.parsed(session, ps.tenant_id, tenant.active_policy_version or DEFAULT_VERSION)
    photo_reasons, condition_reasons = [], []
    for reason in REASON_WORDS:
        condition, evidence = policy.requirements.for_reason(Reason(reason))
        if Evidence.PHOTO in evidence:
            photo_reasons.append(REASON_WORDS[reason].lower())
        if condition in REQUIRED_CONDITION_WORDS:
            condition_reasons.append(
                f"{REASON_WORDS[reason].lower()}: {REQUIRED_CONDITION_WORDS[condition]}"
            )
    return {
        "retailer": tenant.name,
        "number": order.external_id,
        "email": order.customer_email,
        "currency": order.currency,
        "purchased": order.purchased_at,
        "total": _money(order.total_minor, order.currency),
        "lines": lines,
        "refundable": any(line["left"] > 0 for line in lines) and facts.remaining_minor > 0,
        "refunds": [
            {
                "reference": r.reference,
                "status": r.status,
                "status_label": STATUS_LABELS.get(r.status, _words_of(r.status)),
                "amount": _money(r.amount_minor, r.currency),
                "created": r.created_at,
            }
            for r in rows
        ],
        "photo_reasons": photo_reasons,
        "condition_reasons": condition_reasons,
        "method_choice": policy.refund.method is MethodRule.CUSTOMER_CHOICE,
        "store_credit_bonus": policy.refund.store_credit_bonus_percent,
    }


def _text_field(form: FormData, name: str, limit: int) -> str | None:
    """A single-line field, trimmed; None when too long or holding control characters."""
    return _clean(_field(form, name), limit)


def _note(form: FormData) -> str | None:
    """The note with control characters (other than line breaks and tabs) removed."""
    text = _field(form, "note").replace("\r\n", "\n")
    text = "".join(c for c in text if c in "\n\t" or (ord(c) >= 32 and ord(c) != 127))
    return text.strip() or None


def read_request(
    form: FormData, context: dict[str, Any]
) -> tuple[Draft | None, list[tuple[str, str]], FormValues]:
    """The request form as a draft (without photos), or the problems with it as (field, message)."""
    errors: list[tuple[str, str]] = []
    values = FormValues()
    chosen: list[tuple[str, int]] = []
    for line in context["lines"]:
        if line["left"] <= 0:
            continue
        raw = _field(form, line["field"]).strip()[:12]
        values.quantities[line["field"]] = raw
        if not raw:
            continue
        if not (raw.isascii() and raw.isdigit()) or int(raw) > line["left"]:
            errors.append(
                (line["field"], f"{line['name']}: enter a whole number from 0 to {line['left']}.")
            )
        elif int(raw) > 0:
            chosen.append((line["sku"], int(raw)))
    if not chosen and not errors:
        first = next((li["field"] for li in context["lines"] if li["left"] > 0), "items")
        errors.append((first, "Choose at least one item and how many of it to refund."))
    values.reason = _field(form, "reason")[:40]
    if values.reason not in REASON_WORDS:
        errors.append(("reason", "Choose the reason for your refund."))
    values.condition = _field(form, "condition")[:40]
    if values.condition and values.condition not in CONDITION_WORDS:
        errors.append(("condition", "Choose the condition from the list, or leave it empty."))
    note = _note(form)
    values.note = (note or "")[: MAX_NOTE + 1]
    if note is not None and len(note) > MAX_NOTE:
        errors.append(("note", f"Keep the note under {MAX_NOTE} characters."))
    values.method = _field(form, "method")[:40]
    method: str | None = None
    if context["method_choice"]:
        if values.method not in METHOD_WORDS:
            errors.append(("method", "Choose how you want to be paid back."))
        method = values.method
    if errors:
        return None, errors, values
    draft = Draft(
        lines=tuple(chosen),
        reason=values.reason,
        condition=values.condition or None,
        note=note,
        method=method,
    )
    return draft, [], values


def what_happens_next(preview: RefundPreview, retailer: str, method: str) -> tuple[str, list[str]]:
    """A headline and the steps after confirming, for the preview's decision."""
    how = METHOD_WORDS.get(method, "your original payment method")
    status = preview.status
    if status is RefundStatus.APPROVED:
        return DECISION_WORDS[status], [
            f"As soon as you confirm, we pay the refund to {how}.",
            "You can follow it at any time on the tracking page with your refund reference.",
        ]
    if status is RefundStatus.AWAITING_RETURN:
        by = f" by {_long_day(preview.return_by)}" if preview.return_by else ""
        return DECISION_WORDS[status], [
            f"Send the items back to {retailer}{by}.",
            "Pack them well and write your refund reference (shown after you confirm) on "
            "the parcel; keep the carrier's receipt and tracking number.",
            f"Once the items arrive and are checked, we pay the refund to {how}.",
        ]
    if status is RefundStatus.PENDING_REVIEW:
        return DECISION_WORDS[status], [
            f"A person at the refund desk decides within {REVIEW_DAYS} business days.",
            f"If it is approved, we pay the refund to {how}.",
        ]
    return DECISION_WORDS.get(status, _words_of(str(status))), [
        f"Under the refund policy of {retailer} this request would be declined, for the "
        "reasons above. You can change it, or contact the retailer."
    ]


def _long_day(value: date | None) -> str:
    return "" if value is None else format(value, "%d %B %Y")


def finding_words(findings: Iterable[Any]) -> list[dict[str, str]]:
    """The policy's findings in the customer's words, worst first."""
    rank = {"hard": 0, "soft": 1, "info": 2}
    out = []
    for f in sorted(findings, key=lambda f: rank.get(str(f.severity), 3)):
        template = FINDING_WORDS.get(f.code)
        text = template.format(message=f.message) if template else f.message
        out.append({"severity": str(f.severity), "text": text, "code": f.code})
    return out


# ----- the pages --------------------------------------------------------------------------


def make_router(container: Container) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    settings = container.settings
    limits = RateLimits(
        settings.rate_limit_storage, settings.portal_lookup_limit, settings.portal_request_limit
    )
    drafts = URLSafeSerializer(container.secret_key, salt=_DRAFT_SALT)
    upload_root = Path(settings.upload_dir)
    photo_max = settings.upload_max_bytes

    def now() -> float:
        return container.clock.now().timestamp()

    def message(
        request: Request, title: str, text: str, *, status: int, link: tuple[str, str]
    ) -> Response:
        return _render(
            request,
            "portal_message.html",
            {"title": title, "message": text, "link": link},
            status=status,
        )

    def expired(request: Request) -> Response:
        return message(
            request,
            "Please identify again",
            "Your session with this order has ended, or this page was open too long. Nothing "
            "was sent. Enter your order number and email again to continue.",
            status=403,
            link=("/portal", "Find my order"),
        )

    def too_many(request: Request, seconds: int) -> Response:
        minutes = max(1, math.ceil(seconds / 60))
        wait = f"{minutes} minute{'s' if minutes != 1 else ''}"
        response = message(
            request,
            "Too many attempts",
            f"There have been too many attempts from here or for this order. For your "
            f"security, please wait {wait} and try again.",
            status=429,
            link=("/portal", "Back to the portal"),
        )
        response.headers["Retry-After"] = str(seconds)
        return response

    async def read_form(request: Request) -> FormData | None:
        try:
            return await request.form(max_files=MAX_PHOTOS * 4, max_fields=2000)
        except HTTPException:  # a malformed body, or more parts than any form of ours has
            return None

    def bad_form(request: Request) -> Response:
        return message(
            request,
            "We could not read that form",
            "The form arrived incomplete or malformed. Nothing was sent; please try again.",
            status=400,
            link=("/portal", "Back to the portal"),
        )

    def identify_page(
        request: Request,
        *,
        error: str | None = None,
        number: str = "",
        email: str = "",
        status: int = 200,
    ) -> Response:
        ps = _read_session(request, now())
        return _render(
            request,
            "portal_identify.html",
            {
                "title": "Request a refund",
                "error": error,
                "number": number[:MAX_ORDER_NUMBER],
                "email": email[:MAX_EMAIL],
                "current": ps.number if ps else None,
            },
            status=status,
        )

    @router.get("/portal", response_class=HTMLResponse)
    def portal_home(request: Request) -> Response:
        return identify_page(request)

    def identify(request: Request, number_raw: str, email_raw: str) -> Response:
        number, email = _clean(number_raw, MAX_ORDER_NUMBER), _clean(email_raw, MAX_EMAIL)
        if not number_raw.strip() or not email_raw.strip():
            return identify_page(
                request,
                error="Enter both your order number and your email address.",
                number=number_raw,
                email=email_raw,
                status=400,
            )
        wait = limits.retry_after("lookup", limits.lookup, _client(request))
        if wait is None:
            wait = limits.retry_after("lookup", limits.lookup, f"order:{number_raw.strip()}")
        if wait is not None:
            return too_many(request, wait)
        found: list[Candidate] = []
        if number and email:
            with container.db.read() as session:
                found = find_orders(session, number=number, email=email)
        if not found:
            return identify_page(
                request, error=NOT_FOUND_TEXT, number=number_raw, email=email_raw, status=404
            )
        if len(found) == 1:
            _start_session(request, found[0], now())
            return _see_other("/portal/order")
        request.session.pop(_SESSION_KEY, None)
        request.session[_CHOICES_KEY] = {
            "e": int(now()) + SESSION_SECONDS,
            "c": [[c.tenant_id, c.order_id, c.number, c.retailer] for c in found],
        }
        return _see_other("/portal/choose")

    @router.post("/portal", response_class=HTMLResponse)
    async def portal_identify(request: Request) -> Response:
        form = await read_form(request)
        if form is None:
            return bad_form(request)
        if not security.csrf_valid(request, form.get(security.CSRF_FIELD)):
            return expired(request)
        number, email = _field(form, "order_number"), _field(form, "email")
        return await run_in_threadpool(identify, request, number, email)

    def choices(request: Request) -> list[Candidate]:
        value: Any = request.session.get(_CHOICES_KEY)
        if not isinstance(value, dict):
            return []
        expires, items = value.get("e"), value.get("c")
        if not isinstance(expires, int) or expires < now() or not isinstance(items, list):
            return []
        out = []
        for item in items:
            if isinstance(item, list) and len(item) == 4 and all(isinstance(i, str) for i in item):
                out.append(Candidate(*item))
        return out

    @router.get("/portal/choose", response_class=HTMLResponse)
    def choose_page(request: Request) -> Response:
        found = choices(request)
        if not found:
            return _see_other("/portal")
        return _render(
            request,
            "portal_choose.html",
            {"title": "Which retailer?", "choices": found, "number": found[0].number},
        )

    @router.post("/portal/choose")
    async def choose(request: Request) -> Response:
        form = await read_form(request)
        if form is None:
            return bad_form(request)
        if not security.csrf_valid(request, form.get(security.CSRF_FIELD)):
            return expired(request)
        found = choices(request)
        picked = _field(form, "choice")
        index = int(picked) if picked.isascii() and picked.isdigit() and len(picked) < 4 else -1
        if not found:
            return expired(request)
        if not 0 <= index < len(found):
            return _see_other("/portal/choose")
        _start_session(request, found[index], now())
        return _see_other("/portal/order")

    @router.post("/portal/leave")
    async def leave(request: Request) -> Response:
        form = await read_form(request)
        if form is None:
            return bad_form(request)
        if not security.csrf_valid(request, form.get(security.CSRF_FIELD)):
            return expired(request)
        request.session.pop(_SESSION_KEY, None)
        request.session.pop(_CHOICES_KEY, None)
        return _see_other("/portal")

    def order_page(
        request: Request,
        ps: PortalSession,
        *,
        errors: list[tuple[str, str]] | None = None,
        values: FormValues | None = None,
        notice: str | None = None,
        status: int = 200,
    ) -> Response:
        with container.db.read() as session:
            context = order_context(session, ps)
        if context is None:
            request.session.pop(_SESSION_KEY, None)
            return expired(request)
        field_errors: dict[str, str] = {}
        for name, text in errors or []:
            field_errors.setdefault(name, text)
        context.update(
            title=f"Order {context['number']}",
            errors=[{"field": name, "message": text} for name, text in errors or []],
            field_errors=field_errors,
            values=values or FormValues(),
            notice=notice,
            reasons=REASON_WORDS,
            conditions=CONDITION_WORDS,
            methods=METHOD_WORDS,
            max_photos=MAX_PHOTOS,
            photo_max=_size(photo_max),
        )
        return _render(request, "portal_order.html", context, status=status)

    @router.get("/portal/order", response_class=HTMLResponse)
    def order(request: Request) -> Response:
        ps = _read_session(request, now())
        if ps is None:
            return _see_other("/portal")
        return order_page(request, ps)

    def preview_step(
        request: Request,
        ps: PortalSession,
        form: FormData,
        uploads: list[Upload],
        upload_errors: list[tuple[str, str]],
    ) -> Response:
        with container.db.read() as session:
            context = order_context(session, ps)
        if context is None:
            return expired(request)
        draft, errors, values = read_request(form, context)
        kinds = [(u, image_extension(u.data)) for u in uploads]
        errors += upload_errors + [
            ("photos", f"{u.filename} is not a JPEG, PNG or WebP photo.")
            for u, kind in kinds
            if kind is None
        ]
        if errors or draft is None:
            if uploads and not any(name == "photos" for name, _ in errors):
                # Browsers cannot fill a file field again: say so rather than lose them quietly.
                errors.append(("photos", "Please choose your photos again."))
            return order_page(request, ps, errors=errors, values=values, status=400)
        trial = replace(draft, photos=tuple("pending" for _ in kinds))
        try:
            with container.db.read() as session:
                preview = refunds.preview_refund(
                    session,
                    clock=container.clock,
                    tenant_id=ps.tenant_id,
                    data=trial.refund(ps.number),
                )
        except (DomainError, ValidationError) as exc:
            text = exc.detail if isinstance(exc, DomainError) else "This request is not valid."
            return order_page(
                request, ps, errors=[("items", _sentence(text))], values=values, status=409
            )
        stored = tuple(store_photo(upload_root, ps.tenant_id, u.data, k or "") for u, k in kinds)
        draft = replace(draft, photos=stored)
        token = drafts.dumps(draft.as_data(ps))
        headline, steps = what_happens_next(preview, context["retailer"], preview.refund_method)
        names = {line["sku"]: line["name"] for line in context["lines"]}
        return _render(
            request,
            "portal_preview.html",
            {
                "title": "Check your refund request",
                "retailer": context["retailer"],
                "number": context["number"],
                "preview": preview,
                "decision": headline,
                "steps": steps,
                "can_confirm": preview.status is not RefundStatus.REJECTED,
                "amount": _money(preview.amount_minor, preview.currency),
                "breakdown": _breakdown(preview.breakdown, preview.currency),
                "findings": finding_words(preview.findings),
                "lines": [(names.get(sku, sku), qty) for sku, qty in draft.lines],
                "reason": REASON_WORDS[draft.reason],
                "condition": CONDITION_WORDS.get(draft.condition or "", ""),
                "note": draft.note,
                "photos": len(draft.photos),
                "method": METHOD_WORDS.get(preview.refund_method, preview.refund_method),
                "token": token,
            },
        )

    @router.post(PORTAL_REQUEST_PATH, response_class=HTMLResponse)
    async def request_preview(request: Request) -> Response:
        form = await read_form(request)
        if form is None:
            return bad_form(request)
        if not security.csrf_valid(request, form.get(security.CSRF_FIELD)):
            return expired(request)
        ps = _read_session(request, now())
        if ps is None:
            return expired(request)
        wait = await run_in_threadpool(request_limited, request, ps, "preview")
        if wait is not None:
            return too_many(request, wait)
        uploads, upload_errors = await read_uploads(form, photo_max)
        return await run_in_threadpool(preview_step, request, ps, form, uploads, upload_errors)

    def request_limited(request: Request, ps: PortalSession, kind: str) -> int | None:
        wait = limits.retry_after(kind, limits.request, _client(request))
        if wait is None:
            wait = limits.retry_after(kind, limits.request, f"order:{ps.tenant_id}:{ps.order_id}")
        return wait

    def create(ps: PortalSession, draft: Draft, token: str) -> Refund:
        with container.db.write() as session:
            refund, created = refunds.request_refund(
                session,
                clock=container.clock,
                config=container.intake,
                tenant_id=ps.tenant_id,
                data=draft.refund(ps.number),
                actor=ACTOR,
                idempotency_key=idempotency_key(token),
            )
            if created and draft.photos:
                stored = refunds.load_for_update(
                    session, tenant_id=ps.tenant_id, refund_id=refund.id
                )
                # The photos are evidence for agents: the refund's history says where they are.
                stored.record(
                    EventType.NOTE,
                    actor=ACTOR,
                    at=container.clock.now(),
                    data={"photos": list(draft.photos), "source": "portal"},
                )
                session.flush()
            return refund

    def confirm_step(request: Request, ps: PortalSession, token: str) -> Response:
        try:
            data = drafts.loads(token)
        except BadSignature:
            data = None
        draft = Draft.from_data(data, ps)
        if draft is None:
            return expired(request)
        try:
            refund = create(ps, draft, token)
        except (DomainError, ValidationError) as exc:
            text = exc.detail if isinstance(exc, DomainError) else "This request is not valid."
            return order_page(
                request,
                ps,
                errors=[("items", f"We could not take this request: {_sentence(text)}")],
                status=409,
            )
        return _see_other(f"/portal/refunds/{refund.reference}")

    @router.post("/portal/confirm", response_class=HTMLResponse)
    async def confirm(request: Request) -> Response:
        form = await read_form(request)
        if form is None:
            return bad_form(request)
        if not security.csrf_valid(request, form.get(security.CSRF_FIELD)):
            return expired(request)
        ps = _read_session(request, now())
        if ps is None:
            return expired(request)
        wait = await run_in_threadpool(request_limited, request, ps, "confirm")
        if wait is not None:
            return too_many(request, wait)
        token = _field(form, "draft")[:20_000]
        return await run_in_threadpool(confirm_step, request, ps, token)

    def done_context(ps: PortalSession, reference: str) -> dict[str, Any] | None:
        with container.db.read() as session:
            row = session.execute(
                select(Refund, Order.customer_email, Tenant.name)
                .join(Order, (Order.tenant_id == Refund.tenant_id) & (Order.id == Refund.order_id))
                .join(Tenant, Tenant.id == Refund.tenant_id)
                .where(
                    Refund.tenant_id == ps.tenant_id,
                    Refund.order_id == ps.order_id,
                    Refund.reference == normalize_reference(reference),
                )
            ).first()
            if row is None:
                return None
            refund, email, retailer = row
            try:
                tracking = track(
                    session, reference=refund.reference, email=email, now=container.clock.now()
                )
            except NotFound:
                return None
            rma = session.scalars(
                select(ReturnRecord).where(
                    ReturnRecord.tenant_id == ps.tenant_id, ReturnRecord.refund_id == refund.id
                )
            ).first()
        return {
            "title": f"Refund {refund.reference}",
            "retailer": retailer,
            "reference": refund.reference,
            "email": email,
            "tracking": tracking,
            "findings": finding_words(
                _Finding(f.get("code", ""), f.get("severity", "info"), f.get("message", ""))
                for f in refund.findings or []
            ),
            "return_by": _long_day(rma.expires_at.date()) if rma is not None else None,
            "number": ps.number,
        }

    @router.get("/portal/refunds/{reference}", response_class=HTMLResponse)
    def done(request: Request, reference: str) -> Response:
        ps = _read_session(request, now())
        if ps is None:
            return _see_other("/portal")
        context = done_context(ps, reference[:32]) if len(reference) <= 32 else None
        if context is None:
            return message(
                request,
                "No such refund on this order",
                "This order has no refund with that reference.",
                status=404,
                link=("/portal/order", "Back to your order"),
            )
        return _render(request, "portal_done.html", context)

    return router


@dataclass(frozen=True, slots=True)
class _Finding:
    code: str
    severity: str
    message: str


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "." if text else text


def _see_other(url: str) -> Response:
    return security.secure(RedirectResponse(url, status_code=303))
