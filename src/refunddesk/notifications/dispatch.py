"""The dispatcher: refund events not yet dispatched become messages and webhook deliveries.

A transactional outbox: refund_events.dispatched is false until one transaction has claimed
the event (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite serialises writers), stored its
customer messages with a send job each, queued its retailer webhooks, and set the flag. A
crash before the commit leaves the event undispatched; after it, everything exists. The
unique (tenant_id, event_id, channel) on messages makes a second message impossible.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from sqlalchemy import false, select, update
from sqlalchemy.orm import Session

from refunddesk.core.clock import Clock
from refunddesk.core.errors import Invalid, NotFound
from refunddesk.core.ids import new_id
from refunddesk.db.keys import pairs_in
from refunddesk.db.uow import Database
from refunddesk.jobs.queue import enqueue
from refunddesk.notifications import templates
from refunddesk.notifications.channels.sms import InvalidNumber, fit, to_e164
from refunddesk.notifications.events import DispatchEvent
from refunddesk.notifications.orm import (
    CustomerPreference,
    Message,
    NotificationSettings,
    NotificationTemplate,
)
from refunddesk.notifications.preferences import customer_key
from refunddesk.orders.orm import Order
from refunddesk.payouts.gateways.base import FailureReason
from refunddesk.payouts.orm import Payout
from refunddesk.payouts.settle import ARRIVAL_DAYS
from refunddesk.policy.calendar import add_business_days
from refunddesk.refunds.domain import EventType
from refunddesk.refunds.orm import Refund, RefundEvent
from refunddesk.returns.service import RETURN_AUTHORIZED
from refunddesk.tenants.orm import Tenant
from refunddesk.tracking.service import REVIEW_DAYS
from refunddesk.webhooks_out import fanout as webhooks
from refunddesk.webhooks_out.rules import matches

log = logging.getLogger(__name__)

SEND_JOB = "send_message"
DELAYED = "refund.delayed"
EMAIL, SMS = "email", "sms"
QUEUED, SENT, FAILED, SKIPPED = "queued", "sent", "failed", "skipped"
# Declines the customer can fix (another account, another method); others are the desk's.
CUSTOMER_FIXES = frozenset(
    {
        FailureReason.EXPIRED_OR_CANCELED_CARD,
        FailureReason.LOST_OR_STOLEN_CARD,
        FailureReason.DECLINED,
        FailureReason.INVALID_ACCOUNT,
        FailureReason.CURRENCY_NOT_SUPPORTED,
        FailureReason.REVERSED,
    }
)


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    email_on: bool
    sms_on: bool
    public_url: str
    max_attempts: int
    batch_size: int = 500


@dataclass(frozen=True, slots=True)
class _Extra:
    """What a customer message needs beyond the DispatchEvent."""

    retailer: str
    timezone: str
    method: str


class _Step(Protocol):
    """What customer_kind reads of an event: a DispatchEvent or a claimed row."""

    @property
    def type(self) -> str: ...
    @property
    def from_status(self) -> str | None: ...
    @property
    def to_status(self) -> str: ...
    @property
    def data(self) -> dict[str, Any]: ...


def customer_kind(event: _Step) -> str | None:
    """The message kind this event tells the customer, or None if it is not news to them."""
    if event.type == EventType.STATUS_CHANGED:
        if event.to_status == "pending_review" and event.from_status == "requested":
            return "received"
        return {
            "return_received": "return_received",
            "approved": "approved",
            "rejected": "rejected",
            "failed": "failed",
        }.get(event.to_status)
    if event.type == RETURN_AUTHORIZED:
        return "return_needed"
    # The first success carries the method; a later one only an ARN that came late.
    if event.type == EventType.PAYOUT_SUCCEEDED and "method" in event.data:
        return "paid"
    if event.type == DELAYED:
        return "delayed"
    return None


def run(*, db: Database, clock: Clock, config: DispatchConfig, max_batches: int = 20) -> int:
    """Dispatch batches until none is left (or max_batches); return how many events."""
    total = 0
    for _ in range(max_batches):
        with db.write() as session:
            done = dispatch_batch(session, now=clock.now(), config=config)
        total += done
        if done < config.batch_size:
            break
    return total


def dispatch_batch(session: Session, *, now: datetime, config: DispatchConfig) -> int:
    """Claim the oldest undispatched events and dispatch them in the session's transaction."""
    claimed = session.execute(
        select(
            RefundEvent.tenant_id,
            RefundEvent.id,
            RefundEvent.type,
            RefundEvent.from_status,
            RefundEvent.to_status,
            RefundEvent.data,
        )
        .where(RefundEvent.dispatched == false())
        .order_by(RefundEvent.at, RefundEvent.id)
        .limit(config.batch_size)
        .with_for_update(skip_locked=True)
    ).all()
    if not claimed:
        return 0
    keys = [(row.tenant_id, row.id) for row in claimed]
    tenants = {row.tenant_id for row in claimed}
    endpoints = webhooks.enabled_endpoints(session, tenants)
    tell_customers = config.email_on or config.sms_on
    # Only events someone hears of are read in full (with their refund and order): most
    # steps (processing, payout sent) are news to no customer, and often to no endpoint.
    needed = [
        (row.tenant_id, row.id)
        for row in claimed
        if (tell_customers and customer_kind(row) is not None)
        or any(matches(patterns, row.type) for _, patterns in endpoints.get(row.tenant_id, ()))
    ]
    if needed:
        events, extras = _load(session, needed)
        _messages(session, events, extras, now=now, config=config)
        if endpoints:
            webhooks.enqueue_deliveries(
                session,
                events=events,
                now=now,
                max_attempts=config.max_attempts,
                endpoints=endpoints,
            )
    session.execute(
        update(RefundEvent)
        .where(pairs_in(RefundEvent.tenant_id, RefundEvent.id, keys))
        .values(dispatched=True)
    )
    return len(keys)


def _load(
    session: Session, keys: Sequence[tuple[str, str]]
) -> tuple[list[DispatchEvent], dict[str, _Extra]]:
    # Columns, not RefundEvent entities: the events are only read, and building ORM
    # instances was a quarter of the dispatcher's time.
    found = session.execute(
        select(
            RefundEvent.tenant_id,
            RefundEvent.id,
            RefundEvent.refund_id,
            RefundEvent.seq,
            RefundEvent.type,
            RefundEvent.from_status,
            RefundEvent.to_status,
            RefundEvent.at,
            RefundEvent.data,
            Refund.reference,
            Refund.amount_minor,
            Refund.currency,
            Refund.refund_method,
            Refund.payout_override,
            Order.external_id,
            Order.customer_email,
            Order.customer_name,
            Order.customer_phone,
            Order.payment_method,
            Tenant.name,
            Tenant.timezone,
        )
        .join(
            Refund,
            (Refund.tenant_id == RefundEvent.tenant_id) & (Refund.id == RefundEvent.refund_id),
        )
        .join(Order, (Order.tenant_id == Refund.tenant_id) & (Order.id == Refund.order_id))
        .join(Tenant, Tenant.id == Refund.tenant_id)
        .where(pairs_in(RefundEvent.tenant_id, RefundEvent.id, keys))
    ).all()
    # Sorted here, not by ORDER BY: with it, SQLite reads the tenant's whole event history
    # through ix_refund_events_tenant_at instead of the batch's keys through the primary key.
    rows = sorted(found, key=lambda row: (row.at, row.id))
    events: list[DispatchEvent] = []
    extras: dict[str, _Extra] = {}
    for row in rows:
        events.append(
            DispatchEvent(
                tenant_id=row.tenant_id,
                event_id=row.id,
                refund_id=row.refund_id,
                seq=row.seq,
                type=row.type,
                from_status=row.from_status,
                to_status=row.to_status,
                at=row.at,
                data=dict(row.data or {}),
                refund_reference=row.reference,
                amount_minor=row.amount_minor,
                currency=row.currency,
                order_external_id=row.external_id,
                customer_email=row.customer_email,
                customer_name=row.customer_name,
                customer_phone=row.customer_phone,
            )
        )
        override = (row.payout_override or {}).get("method")
        method = row.payment_method
        if override and override != "original":
            method = str(override)
        elif row.refund_method == "store_credit":
            method = "store_credit"
        extras[row.id] = _Extra(retailer=row.name, timezone=row.timezone, method=method)
    return events, extras


def _messages(
    session: Session,
    events: Sequence[DispatchEvent],
    extras: dict[str, _Extra],
    *,
    now: datetime,
    config: DispatchConfig,
) -> None:
    wanted = [(e, kind) for e in events if (kind := customer_kind(e)) is not None]
    if not wanted:
        return
    tenants = {e.tenant_id for e, _ in wanted}
    settings = {
        s.tenant_id: s
        for s in session.scalars(
            select(NotificationSettings).where(NotificationSettings.tenant_id.in_(tenants))
        )
    }
    emails = {(e.tenant_id, customer_key(e.customer_email)) for e, _ in wanted}
    prefs = {
        (p.tenant_id, p.email): p
        for p in session.scalars(
            select(CustomerPreference).where(
                pairs_in(CustomerPreference.tenant_id, CustomerPreference.email, emails)
            )
        )
    }
    overrides = _overrides(session, tenants)
    existing: set[tuple[str, str]] = {
        (row.event_id, row.channel)
        for row in session.execute(
            select(Message.event_id, Message.channel).where(
                pairs_in(
                    Message.tenant_id,
                    Message.event_id,
                    [(e.tenant_id, e.event_id) for e, _ in wanted],
                )
            )
        )
    }
    payouts = _payouts(session, [e for e, kind in wanted if kind == "paid"])
    # A channel this desk has not configured stores nothing: there is nobody to tell, and a
    # "skipped" row per event would only say so again. A retailer's or customer's choice is
    # kept as a skipped row: agents must see why a customer heard nothing.
    channels = [c for c, on in ((EMAIL, config.email_on), (SMS, config.sms_on)) if on]
    rows: list[Message] = []
    for event, kind in wanted:
        tenant = settings.get(event.tenant_id)
        pref = prefs.get((event.tenant_id, customer_key(event.customer_email)))
        locale = templates.resolve_locale(
            pref.locale if pref else None, tenant.default_locale if tenant else None
        )
        extra = extras[event.event_id]
        rendered: templates.Rendered | None = None
        for channel in channels:
            if (event.event_id, channel) in existing:
                continue
            recipient, skip = _recipient(event, channel, config, tenant, pref)
            message = Message(
                tenant_id=event.tenant_id,
                id=new_id(),
                refund_id=event.refund_id,
                event_id=event.event_id,
                channel=channel,
                recipient=recipient,
                locale=locale,
                template=kind,
                status=SKIPPED if skip else QUEUED,
                attempts=0,
                last_error=skip,
                created_at=now,
                updated_at=now,
            )
            if skip is None:
                if rendered is None:
                    try:
                        rendered = _render(
                            event, kind, locale, extra, tenant, overrides, payouts, config
                        )
                    except templates.TemplateProblem as exc:
                        log.warning("tenant template failed, using the default: %s", exc)
                        rendered = _render(event, kind, locale, extra, tenant, {}, payouts, config)
                if channel == EMAIL:
                    message.subject = rendered.subject
                    message.body_text, message.body_html = rendered.text, rendered.html
                else:
                    message.body_text, counted = fit(rendered.sms)
                    message.segments = counted.count
            rows.append(message)
    session.add_all(rows)
    session.flush()
    for message in rows:
        if message.status == QUEUED:
            enqueue(
                session,
                kind=SEND_JOB,
                payload={"message_id": message.id},
                now=now,
                max_attempts=config.max_attempts,
                tenant_id=message.tenant_id,
                dedupe_key=f"message:{message.tenant_id}:{message.id}",
            )


def _recipient(
    event: DispatchEvent,
    channel: str,
    config: DispatchConfig,
    tenant: NotificationSettings | None,
    pref: CustomerPreference | None,
) -> tuple[str | None, str | None]:
    """The address to send to, and why not (None: send)."""
    if channel == EMAIL:
        address: str | None = event.customer_email.strip() or None
        if tenant is not None and not tenant.email_enabled:
            return address, "the retailer turned email off"
    else:
        address = event.customer_phone.strip() if event.customer_phone else None
        if tenant is not None and not tenant.sms_enabled:
            return address, "the retailer turned SMS off"
    if pref is not None and pref.opted_out:
        return address, "the customer opted out of messages"
    if pref is not None and not (pref.email_enabled if channel == EMAIL else pref.sms_enabled):
        return address, f"the customer turned {channel} off"
    if address is None:
        return None, f"no {'email address' if channel == EMAIL else 'phone number'}"
    if channel == SMS:
        try:
            return to_e164(address, _region(pref, tenant)), None
        except InvalidNumber as exc:
            return address, str(exc)
    return address, None


def _region(pref: CustomerPreference | None, tenant: NotificationSettings | None) -> str | None:
    """The country a national phone number is read in: from the customer's locale (de_AT)."""
    for name in (pref.locale if pref else None, tenant.default_locale if tenant else None):
        if name:
            try:
                territory = Locale.parse(name.replace("-", "_")).territory
            except (ValueError, UnknownLocaleError):
                continue
            if territory:
                return str(territory)
    return None


def _overrides(
    session: Session, tenants: set[str]
) -> dict[tuple[str, str, str], templates.Override]:
    """Each tenant's own wording by (tenant, kind, locale), email and SMS merged."""
    merged: dict[tuple[str, str, str], dict[str, str | None]] = {}
    for t in session.scalars(
        select(NotificationTemplate).where(NotificationTemplate.tenant_id.in_(tenants))
    ):
        entry = merged.setdefault((t.tenant_id, t.kind, t.locale), {})
        if t.channel == EMAIL:
            entry.update(subject=t.subject, body=t.body_text, html=t.body_html)
        else:
            entry["sms"] = t.body_text
    return {key: templates.Override(**value) for key, value in merged.items()}


def _payouts(session: Session, events: Sequence[DispatchEvent]) -> dict[str, Payout]:
    """The latest payout of each paid refund: its arrival window and ARN, when known."""
    if not events:
        return {}
    latest: dict[str, Payout] = {}
    for payout in session.scalars(
        select(Payout)
        .where(
            pairs_in(
                Payout.tenant_id, Payout.refund_id, {(e.tenant_id, e.refund_id) for e in events}
            )
        )
        .order_by(Payout.attempt)
    ):
        latest[payout.refund_id] = payout
    return latest


def _render(
    event: DispatchEvent,
    kind: str,
    locale: str,
    extra: _Extra,
    tenant: NotificationSettings | None,
    overrides: dict[tuple[str, str, str], templates.Override],
    payouts: dict[str, Payout],
    config: DispatchConfig,
) -> templates.Rendered:
    context = message_context(
        event, kind, locale, extra, payouts.get(event.refund_id), config.public_url
    )
    return templates.render(
        kind,
        locale=locale,
        context=context,
        branding=templates.Branding(
            retailer=extra.retailer, brand_color=tenant.brand_color if tenant else "#1f6feb"
        ),
        track_url=context["track_url"],
        override=overrides.get((event.tenant_id, kind, locale)),
    )


def message_context(
    event: DispatchEvent,
    kind: str,
    locale: str,
    extra: _Extra,
    payout: Payout | None,
    public_url: str,
) -> dict[str, Any]:
    """The template variables for one event, formatted for locale."""
    data = event.data
    tz = ZoneInfo(extra.timezone)
    day = event.at.astimezone(tz).date()
    method = str(data.get("method") or extra.method) if kind == "paid" else extra.method
    high = ARRIVAL_DAYS.get(method, (5, 10))[1]
    amount = data.get("amount_minor") if kind in ("approved", "received") else None
    if kind == "return_needed" or not isinstance(amount, int):
        amount = event.amount_minor
    expected: date | None = None
    if kind == "received":
        expected = add_business_days(day, REVIEW_DAYS + high + 1)
    elif kind == "approved":
        expected = add_business_days(day, high + 1)
    elif kind == "paid":
        expected = _day(data.get("arrival_latest")) or (payout.arrival_latest if payout else None)
    elif kind == "delayed":
        expected = _day(data.get("expected_on"))
    return_by = None
    if kind == "return_needed" and isinstance(data.get("expires_at"), str):
        return_by = datetime.fromisoformat(data["expires_at"]).astimezone(tz).date()
    arn = data.get("arn") or (payout.arn if payout else None)
    failure = data.get("failure_reason")
    customer_fixes = failure in {str(r) for r in CUSTOMER_FIXES}
    return {
        "customer_name": event.customer_name,
        "reference": event.refund_reference,
        "order": event.order_external_id,
        "amount": templates.format_money(amount, event.currency, locale),
        "method": templates.words(locale, "methods", method),
        "expected_date": templates.format_day(expected, locale),
        "return_by": templates.format_day(return_by, locale),
        "items": templates.join_items(
            [(str(li.get("sku")), int(li.get("quantity", 0))) for li in data.get("lines") or []]
        ),
        "arn": arn,
        "reasons": _reasons(data),
        "next_step": templates.words(
            locale, "next_steps", "customer" if customer_fixes else "desk"
        ),
        "track_url": f"{public_url.rstrip('/')}/track",
    }


def _day(value: object) -> date | None:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def _reasons(data: dict[str, Any]) -> list[str]:
    """Decision reasons in words: 'outside_return_window: ended 1 Oct' -> 'outside return ...'."""
    raw = data.get("reasons") or ([data["reason"]] if data.get("reason") else [])
    out = []
    for reason in raw if isinstance(raw, list) else [raw]:
        code, _, detail = str(reason).partition(": ")
        words = code.replace("_", " ")
        out.append(f"{words} ({detail})" if detail else words)
    return out


SAMPLE_DATA: dict[str, dict[str, Any]] = {
    "received": {},
    "return_needed": {
        "expires_at": "2026-12-04T23:59:59+00:00",
        "lines": [{"sku": "MUG", "quantity": 1}],
    },
    "return_received": {},
    "approved": {},
    "rejected": {"reasons": ["outside_return_window: delivered 2026-09-01, window 30 days"]},
    "paid": {"method": "card", "arrival_latest": "2026-12-04", "arn": "74987654321098765432109"},
    "failed": {"failure_reason": "expired_or_canceled_card"},
    "delayed": {"expected_on": "2026-11-30"},
}


def preview(
    session: Session, *, tenant_id: str, kind: str, locale: str, now: datetime, public_url: str
) -> tuple[str, templates.Rendered]:
    """A sample message of kind for tenant, with its branding and overrides; stores nothing."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id}", field="tenant")
    if kind not in templates.KINDS:
        raise Invalid(f"kind must be one of {', '.join(templates.KINDS)}", field="event")
    event = DispatchEvent(
        tenant_id=tenant_id,
        event_id="sample",
        refund_id="sample",
        seq=1,
        type="sample",
        from_status=None,
        to_status="approved",
        at=now,
        data=SAMPLE_DATA[kind],
        refund_reference="RD-SAMPLE",
        amount_minor=1250,
        currency=tenant.currency,
        order_external_id="ORDER-1001",
        customer_email="ada@example.com",
        customer_name="Ada Lovelace",
        customer_phone="+4915112345678",
    )
    settings = session.get(NotificationSettings, tenant_id)
    resolved = templates.resolve_locale(locale, settings.default_locale if settings else None)
    extra = _Extra(retailer=tenant.name, timezone=tenant.timezone, method="card")
    config = DispatchConfig(
        email_on=True, sms_on=True, public_url=public_url, max_attempts=1, batch_size=1
    )
    rendered = _render(
        event, kind, resolved, extra, settings, _overrides(session, {tenant_id}), {}, config
    )
    return resolved, rendered
