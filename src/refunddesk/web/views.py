"""Web pages: the home page, customer tracking, the desk overview, policy and payouts pages."""

from __future__ import annotations

import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.middleware.sessions import SessionMiddleware

from refunddesk.bootstrap import Container
from refunddesk.console import access
from refunddesk.console.access import ConsoleUser
from refunddesk.core.errors import Conflict, DomainError, NotFound
from refunddesk.core.money import Money
from refunddesk.jobs import queue
from refunddesk.notifications.queries import messages_of_refund
from refunddesk.orders.orm import Order
from refunddesk.payouts import consent
from refunddesk.payouts.queries import PayoutPublic, needing_attention, payouts_of_refund
from refunddesk.policy import service as policies
from refunddesk.refunds import service as refunds
from refunddesk.refunds.approvals import Approval
from refunddesk.refunds.domain import OPEN, RefundStatus
from refunddesk.refunds.orm import Refund, RefundEvent
from refunddesk.refunds.schemas import PayoutFallback
from refunddesk.reporting import service as reporting
from refunddesk.sla.service import count_lookup
from refunddesk.tenants.orm import Tenant
from refunddesk.tracking.service import STATUS_LABELS, Tracking, track
from refunddesk.web import security
from refunddesk.web.chart import stacked_bars

HERE = Path(__file__).parent
MAX_REFERENCE = 32
MAX_EMAIL = 320
MAX_KEY = 200
MAX_BANK_FIELD = 100
# The retry form's choices: "same" repeats the last attempt's way (a fallback chosen before
# included); the others choose a fallback, "original" being the order's own payment method.
RETRY_METHODS = {
    "same": "the same way",
    "original": "to the original payment method",
    "store_credit": "as store credit",
    "bank_transfer": "by bank transfer",
}
BANK_FIELDS = {"iban": "IBAN", "holder": "Account holder", "bic": "BIC"}
# What a customer may pick through a signed link: never the payment that just failed.
CUSTOMER_METHODS = frozenset({"store_credit", "bank_transfer"})
HEADLINE_TTL_SECONDS = 5.0
NOT_FOUND_TEXT = (
    "No refund matches this reference and email. Check both against your confirmation "
    "email; the reference looks like RF-7K2M9QXA."
)

templates = Jinja2Templates(directory=HERE / "templates")


def _when(value: datetime | None) -> str:
    return "" if value is None else f"{value:%d %b %Y, %H:%M} UTC"


def _age(value: timedelta | None) -> str:
    if value is None:
        return "none waiting"
    seconds = max(int(value.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{seconds} s"


def _status_words(status: str | None) -> str:
    return "\u2014" if not status else status.replace("_", " ")


def _event_words(event_type: str) -> str:
    return event_type.replace(".", " ").replace("_", " ")


def _day(value: date | None, *, long: bool = False) -> str:
    return "" if value is None else format(value, "%d %B %Y" if long else "%d %b %Y")


def _code_spans(text: str | None) -> Markup:
    """Text with its `backticked` parts (commands, mostly) set as code, the rest escaped."""
    parts = (text or "").split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: show the text as it is
        return escape(text or "")
    return Markup("").join(
        Markup("<code>{}</code>").format(part) if i % 2 else escape(part)
        for i, part in enumerate(parts)
    )


def _money(minor: int, currency: str) -> str:
    try:
        return Money(minor, currency).format()
    except (DomainError, TypeError):
        return f"{minor} {currency} (minor units)"


templates.env.filters["when"] = _when
templates.env.filters["age"] = _age
templates.env.filters["status_words"] = _status_words
templates.env.filters["event_words"] = _event_words
templates.env.filters["day"] = _day
templates.env.filters["money"] = _money
templates.env.filters["code_spans"] = _code_spans
templates.env.globals["STATUS_LABELS"] = STATUS_LABELS
templates.env.globals["STATUS_ORDER"] = [str(s) for s in reporting.STATUS_ORDER]


def _render(
    request: Request, name: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> Response:
    page: dict[str, Any] = {
        "csrf_field": security.CSRF_FIELD,
        "csrf_token": security.csrf_token(request),
        "signed_in": security.desk_user_id(request) is not None,
        "path": request.url.path,
    }
    page.update(context or {})
    return security.secure(templates.TemplateResponse(request, name, page, status_code=status))


def _redirect(url: str) -> Response:
    return security.secure(RedirectResponse(url, status_code=303))


def _forbidden(request: Request) -> Response:
    return _render(
        request,
        "forbidden.html",
        {"title": "Form expired"},
        status=403,
    )


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _clean(value: str, limit: int) -> str | None:
    """The trimmed value, or None if it is too long or holds control characters."""
    value = value.strip()
    if len(value) > limit or any(ord(c) < 32 or ord(c) == 127 for c in value):
        return None
    return value


def _plausible_id(value: str) -> bool:
    return 0 < len(value) <= 64 and value.isascii() and value.isalnum()


def refund_context(
    session: Session,
    tenant_id: str,
    refund_id: str,
    *,
    now: datetime,
    stuck_after: timedelta,
) -> dict[str, Any] | None:
    """Everything the desk's refund page shows, or None when there is no such refund."""
    refund = session.scalars(
        select(Refund).where(Refund.tenant_id == tenant_id, Refund.id == refund_id)
    ).first()
    if refund is None:
        return None
    tenant = session.get(Tenant, tenant_id)
    order = session.scalars(
        select(Order).where(Order.tenant_id == tenant_id, Order.id == refund.order_id)
    ).first()
    names = {line.sku: line for line in order.lines} if order else {}
    events = session.scalars(
        select(RefundEvent)
        .where(RefundEvent.tenant_id == tenant_id, RefundEvent.refund_id == refund_id)
        .order_by(RefundEvent.seq)
    ).all()
    approvals = session.scalars(
        select(Approval)
        .where(Approval.tenant_id == tenant_id, Approval.refund_id == refund_id)
        .order_by(Approval.at)
    ).all()
    findings = refund.findings
    if findings is None:  # decided before policies: the reasons are plain text
        findings = [{"code": "", "severity": "info", "message": r} for r in refund.decision_reasons]
    currency = refund.currency
    return {
        "title": f"Refund {refund.reference}",
        "tenant": tenant,
        "refund": refund,
        "status": refund.status,
        "amount": _money(refund.amount_minor, currency),
        "requested": None
        if refund.requested_minor is None
        else _money(refund.requested_minor, currency),
        "order": order,
        "lines": [
            {
                "sku": line.sku,
                "name": names[line.sku].name if line.sku in names else "",
                "quantity": line.quantity,
                "reason": line.reason,
                "condition": line.condition,
                "amount": _money(line.amount_minor, currency),
            }
            for line in refund.lines
        ],
        "order_total": _money(order.total_minor, order.currency) if order else "",
        "findings": findings,
        "breakdown": _breakdown(refund.breakdown, currency),
        "approvals": [
            {
                "actor": a.actor,
                "role": a.role,
                "amount": _money(a.amount_minor, currency),
                "at": a.at,
            }
            for a in approvals
        ],
        "events": events,
        "payouts": payouts_of_refund(
            session,
            tenant_id=tenant_id,
            refund_id=refund_id,
            now=now,
            stuck_after=stuck_after,
        ),
        "messages": messages_of_refund(session, tenant_id=tenant_id, refund_id=refund_id),
    }


def _breakdown(data: dict[str, Any] | None, currency: str) -> list[tuple[str, str]]:
    """The amount's parts that are not zero, as (label, money) rows."""
    if not data:
        return []
    rows = [
        ("Items", data.get("lines_minor", 0), 1),
        ("Shipping", data.get("shipping_minor", 0), 1),
        ("Tax", data.get("tax_minor", 0), 1),
        ("Restocking fee", data.get("restocking_fee_minor", 0), -1),
        ("Return label", data.get("return_shipping_minor", 0), -1),
        ("Store credit bonus", data.get("store_credit_bonus_minor", 0), 1),
    ]
    return [
        (label, ("\u2212 " if sign < 0 else "") + _money(int(minor), currency))
        for label, minor, sign in rows
        if minor
    ]


def fallback_from_form(form: FormData) -> PayoutFallback | str | None:
    """The retry form as a fallback (None: the same way again), or the message to show."""
    method = _field(form, "method")
    if method not in RETRY_METHODS:
        return "Choose how to pay it: the same way again, store credit or a bank transfer."
    if method == "same":
        return None
    bank: dict[str, str | None] | None = None
    if method == "bank_transfer":
        values: dict[str, str] = {}
        for name, label in BANK_FIELDS.items():
            value = _clean(_field(form, name), MAX_BANK_FIELD)
            if value is None:
                return f"{label}: too long, or holds characters that cannot be typed."
            values[name] = value
        missing = [BANK_FIELDS[name] for name in ("iban", "holder") if not values[name]]
        if missing:
            return f"A bank transfer needs the customer's {' and '.join(missing)}."
        bank = {"iban": values["iban"], "holder": values["holder"], "bic": values["bic"] or None}
    try:
        return PayoutFallback.model_validate({"method": method, "bank_account": bank})
    except ValidationError as exc:
        return _validation_words(exc)


def _validation_words(exc: ValidationError) -> str:
    """The first problem pydantic found, in the words of the form's labels."""
    error = exc.errors()[0]
    message = str(error["msg"]).removeprefix("Value error, ")
    field = str(error["loc"][-1]) if error["loc"] else ""
    for name, label in BANK_FIELDS.items():
        if message.startswith(f"{name}: "):
            return f"{label}: {message.removeprefix(name + ': ')}"
    if field in BANK_FIELDS:
        return f"{BANK_FIELDS[field]}: {message[:1].lower()}{message[1:]}"
    return message


def attention_summary(items: list[PayoutPublic]) -> dict[str, int]:
    """How many payouts need a person: failed (or reversed) and stuck without an answer."""
    stuck = sum(1 for i in items if i.stuck)
    return {"total": len(items), "stuck": stuck, "failed": len(items) - stuck}


def make_router(container: Container) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    stuck_after = timedelta(seconds=container.settings.payout_stuck_after_seconds)

    # ----- home -------------------------------------------------------------------------

    # The home page is public: cache its figures briefly so traffic cannot pile up count queries.
    cached: dict[str, tuple[float, dict[str, Any]]] = {}
    cache_lock = threading.Lock()

    def headline() -> dict[str, Any]:
        with cache_lock:
            hit = cached.get("headline")
            if hit is not None and hit[0] > time.monotonic():
                return hit[1]
            figures = count_headline()
            cached["headline"] = (time.monotonic() + HEADLINE_TTL_SECONDS, figures)
            return figures

    def count_headline() -> dict[str, Any]:
        with container.db.read() as session:
            counts = reporting.status_counts(session)
            totals = reporting.refunded_totals(session)
        return {
            "counts": counts,
            "total_refunds": sum(counts.values()),
            "open_refunds": sum(counts[str(s)] for s in OPEN),
            "paid_refunds": counts[str(RefundStatus.SUCCEEDED)],
            "totals": [(_money(t.minor, t.currency), t.count) for t in totals],
        }

    @router.get("/", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        return _render(request, "home.html", {"title": "Refund desk", **headline()})

    # ----- customer tracking ------------------------------------------------------------

    def lookup(reference: str, email: str) -> Tracking | None:
        ref, mail = _clean(reference, MAX_REFERENCE), _clean(email, MAX_EMAIL)
        if not ref or not mail:
            return None
        with container.db.read() as session:
            try:
                found = track(session, reference=ref, email=mail, now=container.clock.now())
            except NotFound:
                return None
        # A customer asking again is a signal for escalation (repeated contact).
        count_lookup(container.db, reference=found.reference, now=container.clock.now())
        return found

    def track_page(request: Request, reference: str, email: str) -> Response:
        context: dict[str, Any] = {
            "title": "Track your refund",
            "reference": reference[:MAX_REFERENCE],
            "email": email[:MAX_EMAIL],
        }
        if not reference.strip() or not email.strip():
            context["error"] = "Enter both your refund reference and your email address."
            return _render(request, "track.html", context, status=400)
        found = lookup(reference, email)
        if found is None:
            context["error"] = NOT_FOUND_TEXT
            return _render(request, "track.html", context, status=404)
        context.update(title=f"Refund {found.reference}", tracking=found)
        return _render(request, "track.html", context)

    @router.get("/track", response_class=HTMLResponse)
    def track_form(request: Request) -> Response:
        reference = request.query_params.get("reference", "")
        email = request.query_params.get("email", "")
        if reference or email:
            return track_page(request, reference, email)
        return _render(request, "track.html", {"title": "Track your refund"})

    @router.post("/track", response_class=HTMLResponse)
    async def track_submit(request: Request) -> Response:
        form = await request.form()
        if not security.csrf_valid(request, form.get(security.CSRF_FIELD)):
            return _forbidden(request)
        reference, email = _field(form, "reference"), _field(form, "email")
        return await run_in_threadpool(track_page, request, reference, email)

    # ----- the signed-in user (sign-in itself: refunddesk.console.views) -------------------

    def desk_user(request: Request) -> ConsoleUser | None:
        """The session's user if they are still enabled, else None."""
        user_id = security.desk_user_id(request)
        if user_id is None:
            return None
        with container.db.read() as session:
            return access.load(session, user_id)

    # ----- the desk ---------------------------------------------------------------------

    @router.get("/desk", response_class=HTMLResponse)
    def desk(request: Request) -> Response:
        user = desk_user(request)
        if user is None:
            security.forget_user(request)
            return _redirect("/desk/login")
        if not user.is_admin:  # the desk-wide overview is the admin's; agents start at work
            return _redirect("/desk/queue")
        now = container.clock.now()
        with container.db.read() as session:
            by_tenant = reporting.status_by_tenant(session)
            events = reporting.latest_events(session, limit=25)
            stats = queue.stats(session)
            dead = queue.list_jobs(session, status=queue.DEAD, limit=25)
            attention = needing_attention(session, tenant_id=None, now=now, stuck_after=stuck_after)
        totals = {str(s): sum(t.counts[str(s)] for t in by_tenant) for s in reporting.STATUS_ORDER}
        return _render(
            request,
            "desk.html",
            {
                "title": "Desk",
                "me": user,
                "flash": security.pop_flash(request),
                "by_tenant": by_tenant,
                "status_totals": totals,
                "grand_total": sum(totals.values()),
                "chart": stacked_bars(by_tenant),
                "events": events,
                "stats": stats,
                "oldest_age": None
                if stats.oldest_queued_at is None
                else now - stats.oldest_queued_at,
                "dead_jobs": dead,
                "attention": attention_summary(attention),
            },
        )

    def signed_out(request: Request) -> Response:
        security.forget_user(request)
        return _redirect("/desk/login")

    def missing(request: Request, what: str) -> Response:
        return _render(
            request, "desk_missing.html", {"title": "Not found", "what": what}, status=404
        )

    @router.get("/desk/tenants/{tenant_id}/policy", response_class=HTMLResponse)
    def tenant_policy(request: Request, tenant_id: str) -> Response:
        user = desk_user(request)
        if user is None:
            return signed_out(request)
        if not _plausible_id(tenant_id) or user.role_in(tenant_id) is None:
            return missing(request, "retailer")
        with container.db.read() as session:
            tenant = session.get(Tenant, tenant_id)
            if tenant is None:
                return missing(request, "retailer")
            active = policies.read_active(session, tenant_id=tenant_id)
            history = policies.read_versions(session, tenant_id=tenant_id)
        return _render(
            request,
            "policy.html",
            {
                "title": f"{tenant.name}: refund policy",
                "tenant": tenant,
                "active": active,
                "history": history.items,
            },
        )

    # ----- payouts that need a person ---------------------------------------------------

    @router.get("/desk/payouts", response_class=HTMLResponse)
    def payouts_page(request: Request) -> Response:
        user = desk_user(request)
        if user is None:
            return signed_out(request)
        now = container.clock.now()
        with container.db.read() as session:
            if user.is_admin:
                items = needing_attention(session, tenant_id=None, now=now, stuck_after=stuck_after)
            else:  # only the tenants the user serves
                items = [
                    item
                    for tenant_id in user.tenant_ids
                    for item in needing_attention(
                        session, tenant_id=tenant_id, now=now, stuck_after=stuck_after
                    )
                ]
            ids = {i.tenant_id for i in items}
            names = {
                row.id: row.name
                for row in session.execute(select(Tenant.id, Tenant.name).where(Tenant.id.in_(ids)))
            }
        newest_first = sorted(items, key=lambda i: i.updated_at, reverse=True)
        return _render(
            request,
            "payouts.html",
            {
                "title": "Payouts that need a person",
                "flash": security.pop_flash(request),
                "summary": attention_summary(items),
                "rows": [
                    {
                        "payout": i,
                        "retailer": names.get(i.tenant_id, i.tenant_id),
                        "age": now - i.updated_at,
                        "can_retry": i.refund_status == str(RefundStatus.FAILED)
                        and user.may(access.Action.RETRY, i.tenant_id),
                    }
                    for i in newest_first
                ],
            },
        )

    def retry(
        tenant_id: str, refund_id: str, fallback: PayoutFallback | None, actor: str
    ) -> tuple[str, str]:
        try:
            with container.db.write() as session:  # rolled back on a refusal
                refund = refunds.retry_payout(
                    session,
                    clock=container.clock,
                    config=container.intake,
                    tenant_id=tenant_id,
                    refund_id=refund_id,
                    actor=actor,
                    fallback=fallback,
                )
                reference = refund.reference
        except DomainError as exc:
            return exc.detail, "error"
        how = RETRY_METHODS["same" if fallback is None else fallback.method]
        return f"Refund {reference} is being paid again {how}.", "ok"

    @router.post("/desk/payouts/{tenant_id}/{refund_id}/retry")
    async def retry_payout(request: Request, tenant_id: str, refund_id: str) -> Response:
        form = await request.form()
        if not security.csrf_valid(request, form.get(security.CSRF_FIELD)):
            return _forbidden(request)
        user = await run_in_threadpool(desk_user, request)
        if user is None:
            security.forget_user(request)
            return _redirect("/desk/login")
        fallback = fallback_from_form(form)
        if not (_plausible_id(tenant_id) and _plausible_id(refund_id)) or (
            user.role_in(tenant_id) is None
        ):
            security.flash(request, "There is no such refund.", "error")
        elif not user.may(access.Action.RETRY, tenant_id):
            return _render(
                request,
                "console/denied.html",
                {"title": "Not allowed", "reason": "Your role may not retry payouts here."},
                status=403,
            )
        elif isinstance(fallback, str):
            security.flash(request, fallback, "error")
        else:
            message, kind = await run_in_threadpool(
                retry, tenant_id, refund_id, fallback, user.actor
            )
            security.flash(request, message, kind)
        return _redirect("/desk/payouts")

    # ----- the customer's choice after a failed payout (signed link) ---------------------

    def choice_context(token: str) -> dict[str, Any] | None:
        try:
            tenant_id, refund_id = consent.read_token(container.secret_key, token)
        except NotFound:
            return None
        with container.db.read() as session:
            row = session.execute(
                select(Refund, Tenant.name)
                .join(Tenant, Tenant.id == Refund.tenant_id)
                .where(Refund.tenant_id == tenant_id, Refund.id == refund_id)
            ).first()
        if row is None:
            return None
        refund, retailer = row
        return {
            "title": f"{retailer}: how should we pay your refund?",
            "retailer": retailer,
            "reference": refund.reference,
            "amount": _money(refund.amount_minor, refund.currency),
            "status": refund.status,
            "can_choose": refund.state is RefundStatus.FAILED,
            "token": token,
            "tenant_id": tenant_id,
            "refund_id": refund_id,
        }

    def choice_page(request: Request, token: str, **extra: Any) -> Response:
        context = choice_context(token)
        if context is None:
            return _render(
                request,
                "refund_choice.html",
                {"title": "Link not valid", "invalid": True},
                status=404,
            )
        return _render(request, "refund_choice.html", context | extra)

    @router.get("/refund-choice/{token}", response_class=HTMLResponse)
    def refund_choice(request: Request, token: str) -> Response:
        return choice_page(request, token[:500])

    @router.post("/refund-choice/{token}", response_class=HTMLResponse)
    async def refund_choice_submit(request: Request, token: str) -> Response:
        form = await request.form()
        if not security.csrf_valid(request, form.get(security.CSRF_FIELD)):
            return _forbidden(request)
        token = token[:500]
        context = await run_in_threadpool(choice_context, token)
        if context is None:
            return await run_in_threadpool(choice_page, request, token)
        if _field(form, "method") not in CUSTOMER_METHODS:
            return await run_in_threadpool(
                choice_page, request, token, error="Choose store credit or a bank transfer."
            )
        fallback = fallback_from_form(form)
        if not isinstance(fallback, PayoutFallback):
            return await run_in_threadpool(
                choice_page, request, token, error=fallback or "Choose how to be paid."
            )
        message, kind = await run_in_threadpool(
            retry,
            context["tenant_id"],
            context["refund_id"],
            fallback,
            f"customer:{context['reference']}",
        )
        if kind == "error":
            return await run_in_threadpool(choice_page, request, token, error=message)
        return await run_in_threadpool(
            choice_page, request, token, done=RETRY_METHODS[fallback.method]
        )

    def rerun(job_id: int) -> tuple[str, str]:
        with container.db.write() as session:
            try:
                queue.rerun(session, job_id, now=container.clock.now())
            except (NotFound, Conflict) as exc:
                return exc.detail, "error"
        return f"Job {job_id} is queued again.", "ok"

    @router.post("/desk/jobs/{job_id}/rerun")
    async def rerun_job(request: Request, job_id: str) -> Response:
        form = await request.form()
        if not security.csrf_valid(request, form.get(security.CSRF_FIELD)):
            return _forbidden(request)
        user = await run_in_threadpool(desk_user, request)
        if user is None:
            security.forget_user(request)
            return _redirect("/desk/login")
        if not user.is_admin:
            return _render(
                request,
                "console/denied.html",
                {"title": "Not allowed", "reason": "Only a desk admin may re-run jobs."},
                status=403,
            )
        number = int(job_id) if job_id.isascii() and job_id.isdigit() and len(job_id) < 19 else 0
        if number < 1:
            security.flash(request, f"There is no job {job_id[:30]!r}.", "error")
        else:
            message, kind = await run_in_threadpool(rerun, number)
            security.flash(request, message, kind)
        return _redirect("/desk")

    return router


def install(app: FastAPI, container: Container) -> None:
    """Mount the web pages, their static files and the signed session cookie on app."""
    app.include_router(make_router(container))
    from refunddesk.web import portal  # imported here: the portal builds on this module

    app.include_router(portal.make_router(container))
    from refunddesk.console import views as console  # the agent console builds on it too

    app.include_router(console.make_router(container))
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_middleware(
        SessionMiddleware,
        secret_key=container.secret_key,
        session_cookie=security.SESSION_COOKIE,
        max_age=security.SESSION_MAX_AGE,
        same_site="lax",
        https_only=container.settings.session_https_only,
    )
