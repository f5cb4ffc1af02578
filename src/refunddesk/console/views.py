"""The agent console's pages: sign-in, queues, the refund page, search, supervisor, account."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from refunddesk.auth import users
from refunddesk.auth.orm import User
from refunddesk.auth.throttle import LoginThrottle
from refunddesk.bootstrap import Container
from refunddesk.console import charts, queues
from refunddesk.console import service as console
from refunddesk.console.access import Action, ConsoleUser, load
from refunddesk.console.queues import QUEUE_LABELS, Filter, Queue
from refunddesk.core.errors import DomainError, Forbidden, Invalid, NotFound
from refunddesk.escalation import service as escalations
from refunddesk.escalation.domain import Status as EscalationStatus
from refunddesk.escalation.orm import Escalation
from refunddesk.fraud import labels as fraud_labels
from refunddesk.refunds import service as refunds
from refunddesk.refunds.domain import RefundStatus
from refunddesk.refunds.orm import Refund
from refunddesk.sla import service as sla
from refunddesk.sla.config import TIER_ORDER, Tier
from refunddesk.sla.orm import RefundClock
from refunddesk.web import security
from refunddesk.web.views import (
    _clean,
    _field,
    _forbidden,
    _plausible_id,
    _redirect,
    _render,
    refund_context,
    templates,
)

MAX_REASON = 500
COUNT_CAP = 1000  # the queue tabs count up to here ("1000+"): a tab is not a report
COUNT_TTL_SECONDS = 10.0
MAX_BULK = 200
TOTP_PENDING = "totp_pending"
# What each console form posts to /desk/refunds/{tenant}/{refund}/{action}.
REFUND_ACTIONS: dict[str, Action] = {
    "claim": Action.CLAIM,
    "release": Action.CLAIM,
    "assign": Action.ASSIGN,
    "approve": Action.APPROVE,
    "reject": Action.REJECT,
    "cancel": Action.CANCEL,
    "escalate": Action.ESCALATE,
    "label": Action.LABEL,
}
BULK_ACTIONS: dict[str, Action] = {
    "claim": Action.CLAIM,
    "assign": Action.ASSIGN,
    "approve": Action.APPROVE,
    "reject": Action.REJECT,
}
ESCALATION_TIERS = tuple(str(t) for t in TIER_ORDER)  # l1, l2, finance
BULK_WORDS = {"claim": "Claim", "assign": "Assign", "approve": "Approve", "reject": "Reject"}


def _until(due: datetime | None, now: datetime) -> str:
    """Time left to a deadline in words ("in 3 h 20 min", "2 h overdue")."""
    if due is None:
        return ""
    seconds = int((due - now).total_seconds())
    left = abs(seconds)
    days, rest = divmod(left, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        words = f"{days} d {hours} h"
    elif hours:
        words = f"{hours} h {minutes} min"
    else:
        words = f"{max(minutes, 1)} min"
    return f"{words} overdue" if seconds < 0 else f"in {words}"


def _actor_name(actor: str, names: dict[str, str]) -> str:
    """A user's name for a `user:<id>` actor; other actors as they are."""
    kind, _, ident = actor.partition(":")
    return names.get(ident, actor) if kind == "user" else actor


templates.env.filters["until"] = _until
templates.env.filters["actor_name"] = _actor_name


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _next(form: FormData, default: str) -> str:
    """Where to go after a form: a console path only, never another site."""
    value = _field(form, "next")
    if value.startswith("/desk") and "//" not in value and "\\" not in value and len(value) < 500:
        return value
    return default


def _queue_url(tenant_id: str, flt: Filter | None = None) -> str:
    url = f"/desk/t/{tenant_id}/queue"
    if flt is None:
        return url
    params = "&".join(f"{k}={v}" for k, v in flt.as_params().items())
    return f"{url}?{params}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """A console action's result: a message for the next page, or a refusal page."""

    message: str
    kind: str = "ok"  # ok | error
    status: int = 303


def make_router(container: Container) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    settings = container.settings
    throttle = LoginThrottle(
        settings.rate_limit_storage, settings.login_failure_limit, settings.login_failure_ip_limit
    )
    stuck_after = timedelta(seconds=settings.payout_stuck_after_seconds)

    # Queue sizes for the tabs, per tenant, kept a few seconds: counting thousands of rows on
    # every page view would cost more than the page itself. This process's own actions
    # drop the tenant's entry, so a user sees their own approval leave the count at once.
    tab_counts: dict[str, tuple[float, dict[Queue, int]]] = {}
    tab_lock = threading.Lock()

    def counts_for(session: Session, tenant_id: str) -> dict[Queue, int]:
        now = time.monotonic()
        with tab_lock:
            hit = tab_counts.get(tenant_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        fresh = queues.counts(session, tenant_id=tenant_id, user_id="", cap=COUNT_CAP)
        with tab_lock:
            if len(tab_counts) > 10_000:
                tab_counts.clear()
            tab_counts[tenant_id] = (now + COUNT_TTL_SECONDS, fresh)
        return fresh

    def counts_changed(tenant_id: str) -> None:
        with tab_lock:
            tab_counts.pop(tenant_id, None)

    def desk_user(request: Request) -> ConsoleUser | None:
        user_id = security.desk_user_id(request)
        if user_id is None:
            return None
        with container.db.read() as session:
            return load(session, user_id)

    def signed_out(request: Request) -> Response:
        security.forget_user(request)
        return _redirect("/desk/login")

    def missing(request: Request, me: ConsoleUser | None, what: str = "refund") -> Response:
        return _render(
            request, "desk_missing.html", {"title": "Not found", "what": what, "me": me}, status=404
        )

    def denied(request: Request, me: ConsoleUser, reason: str) -> Response:
        return _render(
            request,
            "console/denied.html",
            {"title": "Not allowed", "reason": reason, "me": me},
            status=403,
        )

    def page(request: Request, me: ConsoleUser, name: str, context: dict[str, Any]) -> Response:
        return _render(request, name, {"me": me, "flash": security.pop_flash(request), **context})

    # ----- sign-in ----------------------------------------------------------------------

    def login_page(request: Request, *, error: str | None = None, status: int = 200) -> Response:
        return _render(
            request,
            "console/login.html",
            {"title": "Sign in to the desk", "error": error},
            status=status,
        )

    @router.get("/desk/login", response_class=HTMLResponse)
    def login_form(request: Request) -> Response:
        if desk_user(request) is not None:
            return _redirect("/desk")
        return login_page(request)

    def check_password(email: str, password: str) -> tuple[str, bool] | None:
        with container.db.read() as session:
            try:
                user = users.authenticate(session, email=email, password=password)
            except DomainError:
                return None
            return user.id, user.totp_secret is not None

    @router.post("/desk/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        form = await request.form()
        if not security.csrf_valid(request, form.get(security.CSRF_FIELD)):
            return _forbidden(request)
        email, password = _field(form, "email").strip(), _field(form, "password")
        if not email or not password:
            return login_page(request, error="Enter your email address and password.", status=401)
        wait = throttle.wait_seconds(account=email, ip=_client(request))
        if wait is not None:
            return login_page(
                request,
                error=f"Too many failed sign-ins. Try again in {wait} seconds.",
                status=429,
            )
        found = await run_in_threadpool(check_password, email, password)
        if found is None:
            throttle.failed(account=email, ip=_client(request))
            return login_page(
                request, error="That email and password do not match an account.", status=401
            )
        user_id, needs_code = found
        if needs_code:
            security.start_second_factor(request, user_id=user_id, now=time.time())
            return _redirect("/desk/login/code")
        security.sign_in(request, user_id=user_id)
        return _redirect("/desk")

    def code_page(request: Request, *, error: str | None = None, status: int = 200) -> Response:
        return _render(
            request,
            "console/login_code.html",
            {"title": "Enter your sign-in code", "error": error},
            status=status,
        )

    @router.get("/desk/login/code", response_class=HTMLResponse)
    def code_form(request: Request) -> Response:
        if security.second_factor_user(request, now=time.time()) is None:
            return _redirect("/desk/login")
        return code_page(request)

    def check_code(user_id: str, code: str) -> bool:
        with container.db.read() as session:
            user = session.get(User, user_id)
            if user is None or user.disabled_at is not None or user.totp_secret is None:
                return False
            return users.totp_matches(user.totp_secret, code, at=container.clock.now())

    @router.post("/desk/login/code", response_class=HTMLResponse)
    async def code_submit(request: Request) -> Response:
        form = await request.form()
        if not security.csrf_valid(request, form.get(security.CSRF_FIELD)):
            return _forbidden(request)
        user_id = security.second_factor_user(request, now=time.time())
        if user_id is None:
            return _redirect("/desk/login")
        wait = throttle.wait_seconds(account=f"code:{user_id}", ip=_client(request))
        if wait is not None:
            return code_page(
                request, error=f"Too many wrong codes. Try again in {wait} seconds.", status=429
            )
        if not await run_in_threadpool(check_code, user_id, _field(form, "code")):
            throttle.failed(account=f"code:{user_id}", ip=_client(request))
            return code_page(
                request,
                error="That code is not right. Enter the 6 digits your app shows now.",
                status=401,
            )
        security.sign_in(request, user_id=user_id)
        return _redirect("/desk")

    @router.get("/desk/logout", response_class=HTMLResponse)
    def logout_form(request: Request) -> Response:
        return _render(request, "logout.html", {"title": "Sign out"})

    @router.post("/desk/logout")
    async def logout(request: Request) -> Response:
        form = await request.form()
        if not security.csrf_valid(request, form.get(security.CSRF_FIELD)):
            return _forbidden(request)
        security.sign_out(request)
        return _redirect("/desk/login")

    # ----- queues -----------------------------------------------------------------------

    @router.get("/desk/queue", response_class=HTMLResponse)
    def my_queue(request: Request) -> Response:
        me = desk_user(request)
        if me is None:
            return signed_out(request)
        remembered = request.session.get("tenant")
        if isinstance(remembered, str) and remembered in me.roles:
            return _redirect(_queue_url(remembered))
        if not me.roles:
            return page(request, me, "console/no_tenants.html", {"title": "No retailer yet"})
        return _redirect(_queue_url(next(iter(me.roles))))

    @router.get("/desk/switch", response_class=HTMLResponse)
    def switch(request: Request) -> Response:
        me = desk_user(request)
        if me is None:
            return signed_out(request)
        tenant_id = request.query_params.get("tenant", "")
        if tenant_id not in me.roles:
            return missing(request, me, "retailer")
        return _redirect(_queue_url(tenant_id))

    def queue_context(
        session: Session, me: ConsoleUser, tenant_id: str, flt: Filter, after: str | None
    ) -> dict[str, Any]:
        found = queues.page(session, tenant_id=tenant_id, user_id=me.id, flt=flt, after=after)
        # Rows show their time to breach from the queue's own next_due_at (item.due_at).
        return {
            "items": found.items,
            "next_cursor": found.next_cursor,
            "now": container.clock.now(),
        }

    @router.get("/desk/t/{tenant_id}/queue", response_class=HTMLResponse)
    def queue_page(request: Request, tenant_id: str) -> Response:
        me = desk_user(request)
        if me is None:
            return signed_out(request)
        if me.role_in(tenant_id) is None:
            return missing(request, me, "retailer")
        request.session["tenant"] = tenant_id
        error = None
        try:
            flt = Filter.from_params(dict(request.query_params))
        except Invalid as exc:
            flt, error = Filter(), exc.detail
        after = request.query_params.get("after") or None
        fragment = request.headers.get("HX-Request") == "true" and after is not None
        with container.db.read() as session:
            try:
                context = queue_context(session, me, tenant_id, flt, after)
            except Invalid as exc:
                error = exc.detail
                context = queue_context(session, me, tenant_id, flt, None)
            rows_context = {
                "me": me,
                "tenant_id": tenant_id,
                "flt": flt,
                "may": {a: me.may(a, tenant_id) for a in Action},
                "bulk_actions": [
                    (name, BULK_WORDS[name])
                    for name, action in BULK_ACTIONS.items()
                    if me.may(action, tenant_id) and me.may(Action.BULK, tenant_id)
                ],
                "queue_url": _queue_url(tenant_id),
            }
            if fragment:
                return _render(request, "console/_rows.html", rows_context | context)
            context.update(
                counts=counts_for(session, tenant_id),
                filters=console.filters_of(session, tenant_id=tenant_id, user_id=me.id),
                workers=console.workers(session, tenant_id=tenant_id)
                if me.may(Action.ASSIGN, tenant_id)
                else [],
            )
        return page(
            request,
            me,
            "console/queue.html",
            {
                "title": f"{QUEUE_LABELS[flt.queue]} queue",
                "tenant_id": tenant_id,
                "tenant_name": me.tenant_names.get(tenant_id, tenant_id),
                "role": me.role_in(tenant_id),
                "flt": flt,
                "queue_labels": QUEUE_LABELS,
                "count_cap": COUNT_CAP,
                "scopes": [("all", "Everyone's"), ("mine", "Mine"), ("unclaimed", "Unclaimed")],
                "error": error,
                **rows_context,
                **context,
            },
        )

    # ----- the refund page --------------------------------------------------------------

    @router.get("/desk/refunds/{tenant_id}/{refund_id}", response_class=HTMLResponse)
    def refund_page(request: Request, tenant_id: str, refund_id: str) -> Response:
        me = desk_user(request)
        if me is None:
            return signed_out(request)
        if not (_plausible_id(tenant_id) and _plausible_id(refund_id)):
            return missing(request, me)
        if me.role_in(tenant_id) is None:
            return missing(request, me)
        now = container.clock.now()
        with container.db.read() as session:
            context = refund_context(
                session, tenant_id, refund_id, now=now, stuck_after=stuck_after
            )
            if context is None:
                return missing(request, me)
            context.update(
                claim=console.claim_of(session, tenant_id=tenant_id, refund_id=refund_id),
                clocks=sla.clocks_for(
                    session, tenant_id=tenant_id, refund_ids=[refund_id], now=now
                ).get(refund_id, []),
                escalations=console.escalations_of(
                    session, tenant_id=tenant_id, refund_id=refund_id
                ),
                workers=console.workers(session, tenant_id=tenant_id)
                if me.may(Action.ASSIGN, tenant_id)
                else [],
                queue_of=[
                    q
                    for q in (Queue.REVIEW, Queue.APPROVAL, Queue.FAILED)
                    if queues.in_queue(session, tenant_id=tenant_id, refund_id=refund_id, queue=q)
                ],
            )
            user_ids = {
                actor.partition(":")[2]
                for actor in [e.actor for e in context["events"]]
                + [a["actor"] for a in context["approvals"]]
                if actor.startswith("user:")
            }
            context["actors"] = (
                dict(session.execute(select(User.id, User.name).where(User.id.in_(user_ids))).all())
                if user_ids
                else {}
            )
        refund: Refund = context["refund"]
        context["now"] = now
        context["timeline"] = timeline(context)
        context["offer"] = offers(me, tenant_id, refund, context)
        context["role"] = me.role_in(tenant_id)
        context["next_url"] = request.query_params.get("from") or _queue_url(tenant_id)
        if not str(context["next_url"]).startswith("/desk/t/"):
            context["next_url"] = _queue_url(tenant_id)
        return page(request, me, "console/refund.html", context)

    def timeline(context: dict[str, Any]) -> list[dict[str, Any]]:
        """Events and customer messages in one list, oldest first."""
        rows: list[dict[str, Any]] = [
            {"at": e.at, "kind": "event", "event": e} for e in context["events"]
        ]
        rows += [{"at": m.at, "kind": "message", "message": m} for m in context["messages"]]
        return sorted(rows, key=lambda r: r["at"])

    def offers(
        me: ConsoleUser, tenant_id: str, refund: Refund, context: dict[str, Any]
    ) -> dict[str, bool]:
        """Which action buttons the page shows: allowed for the role and possible now."""
        state = refund.state
        claim = context["claim"]
        decidable = state in (RefundStatus.PENDING_REVIEW, RefundStatus.RETURN_RECEIVED)
        return {
            "claim": me.may(Action.CLAIM, tenant_id) and claim is None,
            "release": claim is not None
            and (claim.user_id == me.id or me.may(Action.ASSIGN, tenant_id))
            and me.may(Action.CLAIM, tenant_id),
            "assign": me.may(Action.ASSIGN, tenant_id),
            "approve": me.may(Action.APPROVE, tenant_id) and decidable,
            "reject": me.may(Action.REJECT, tenant_id) and decidable,
            "cancel": me.may(Action.CANCEL, tenant_id)
            and state
            in (
                RefundStatus.REQUESTED,
                RefundStatus.PENDING_REVIEW,
                RefundStatus.AWAITING_RETURN,
                RefundStatus.RETURN_RECEIVED,
                RefundStatus.APPROVED,
            ),
            "retry": me.may(Action.RETRY, tenant_id) and state is RefundStatus.FAILED,
            "escalate": me.may(Action.ESCALATE, tenant_id),
            "label": me.may(Action.LABEL, tenant_id),
        }

    # ----- actions on one refund ---------------------------------------------------------

    def perform(
        me: ConsoleUser, tenant_id: str, refund_id: str, name: str, form: dict[str, str]
    ) -> Outcome:
        try:
            return perform_once(me, tenant_id, refund_id, name, form)
        finally:  # after the commit: the next page counts afresh
            counts_changed(tenant_id)

    def perform_once(
        me: ConsoleUser, tenant_id: str, refund_id: str, name: str, form: dict[str, str]
    ) -> Outcome:
        """Run one refund action in its own transaction; a refusal becomes a message."""
        role = me.role_in(tenant_id)
        assert role is not None
        clock = container.clock
        try:
            with container.db.write() as session:
                reference = session.scalar(
                    select(Refund.reference).where(
                        Refund.tenant_id == tenant_id, Refund.id == refund_id
                    )
                )
                if reference is None:
                    return Outcome("There is no such refund.", "error", 404)
                if name == "claim":
                    console.claim(
                        session,
                        clock=clock,
                        tenant_id=tenant_id,
                        refund_id=refund_id,
                        user_id=me.id,
                    )
                    return Outcome(f"You are working on {reference}.")
                if name == "release":
                    console.release(
                        session,
                        tenant_id=tenant_id,
                        refund_id=refund_id,
                        user_id=me.id,
                        may_release_others=me.may(Action.ASSIGN, tenant_id),
                    )
                    return Outcome(f"{reference} is back in the queue.")
                if name == "assign":
                    assignee = form.get("user_id", "")
                    console.assign(
                        session,
                        clock=clock,
                        tenant_id=tenant_id,
                        refund_id=refund_id,
                        assignee_id=assignee,
                    )
                    who = session.get(User, assignee)
                    return Outcome(f"{reference} is assigned to {who.name if who else assignee}.")
                if name == "approve":
                    refund = refunds.approve(
                        session,
                        clock=clock,
                        config=container.intake,
                        tenant_id=tenant_id,
                        refund_id=refund_id,
                        actor=me.actor,
                        role=str(role),
                        note=form.get("note") or None,
                    )
                    if refund.state is RefundStatus.APPROVED:
                        return Outcome(f"{reference} is approved; its payout is queued.")
                    return Outcome(f"Your approval of {reference} is recorded; it needs a second.")
                if name == "reject":
                    reason = _clean(form.get("reason", ""), MAX_REASON)
                    if not reason:
                        return Outcome("Say why the refund is rejected.", "error")
                    refunds.reject(
                        session,
                        clock=clock,
                        tenant_id=tenant_id,
                        refund_id=refund_id,
                        actor=me.actor,
                        reason=reason,
                    )
                    return Outcome(f"{reference} is rejected.")
                if name == "cancel":
                    refunds.cancel(
                        session,
                        clock=clock,
                        tenant_id=tenant_id,
                        refund_id=refund_id,
                        actor=me.actor,
                        note=_clean(form.get("note", ""), MAX_REASON) or None,
                    )
                    return Outcome(f"{reference} is canceled.")
                if name == "escalate":
                    tier = form.get("tier", "")
                    reason = _clean(form.get("reason", ""), MAX_REASON)
                    if tier not in ESCALATION_TIERS or not reason:
                        return Outcome("Choose a tier and say why you escalate.", "error")
                    escalations.escalate(
                        session,
                        tenant_id=tenant_id,
                        refund_id=refund_id,
                        tier=Tier(tier),
                        reason=reason,
                        actor=me.actor,
                        now=clock.now(),
                    )
                    return Outcome(f"{reference} is escalated to {tier}.")
                if name == "label":
                    label = form.get("label", "")
                    if label not in fraud_labels.LABELS:
                        return Outcome("Label it fraud or legit.", "error")
                    fraud_labels.record_label(
                        session,
                        tenant_id=tenant_id,
                        refund_id=refund_id,
                        label=label,
                        actor=me.actor,
                        source="agent",
                        at=clock.now(),
                    )
                    return Outcome(f"{reference} is labelled {label}.")
        except Forbidden as exc:  # e.g. someone else's claim, an amount over the role's limit
            return Outcome(exc.detail, "error", 403)
        except DomainError as exc:
            return Outcome(exc.detail, "error")
        return Outcome("Unknown action.", "error", 404)

    @router.post("/desk/refunds/{tenant_id}/{refund_id}/{action}")
    async def refund_action(
        request: Request, tenant_id: str, refund_id: str, action: str
    ) -> Response:
        form = await request.form()
        if not security.csrf_valid(request, form.get(security.CSRF_FIELD)):
            return _forbidden(request)
        me = await run_in_threadpool(desk_user, request)
        if me is None:
            return signed_out(request)
        if (
            action not in REFUND_ACTIONS
            or not (_plausible_id(tenant_id) and _plausible_id(refund_id))
            or me.role_in(tenant_id) is None
        ):
            return missing(request, me)
        if not me.may(REFUND_ACTIONS[action], tenant_id):
            return denied(request, me, f"Your role may not {action} refunds of this retailer.")
        fields = {k: _field(form, k) for k in ("user_id", "reason", "note", "tier", "label")}
        outcome = await run_in_threadpool(perform, me, tenant_id, refund_id, action, fields)
        if outcome.status == 404:
            return missing(request, me)
        if outcome.status == 403:
            return denied(request, me, outcome.message.rstrip(".") + ".")
        security.flash(request, outcome.message, outcome.kind)
        return _redirect(_next(form, f"/desk/refunds/{tenant_id}/{refund_id}"))

    # ----- bulk actions (with a confirmation step) ----------------------------------------

    @router.post("/desk/t/{tenant_id}/bulk", response_class=HTMLResponse)
    async def bulk(request: Request, tenant_id: str) -> Response:
        form = await request.form()
        if not security.csrf_valid(request, form.get(security.CSRF_FIELD)):
            return _forbidden(request)
        me = await run_in_threadpool(desk_user, request)
        if me is None:
            return signed_out(request)
        if me.role_in(tenant_id) is None:
            return missing(request, me, "retailer")
        name = _field(form, "action")
        back = _next(form, _queue_url(tenant_id))
        if name not in BULK_ACTIONS:
            security.flash(request, "Choose what to do with the selected refunds.", "error")
            return _redirect(back)
        if not (me.may(Action.BULK, tenant_id) and me.may(BULK_ACTIONS[name], tenant_id)):
            return denied(request, me, f"Your role may not {name} refunds in bulk here.")
        ids = [v for v in form.getlist("refund_id") if isinstance(v, str) and _plausible_id(v)]
        ids = list(dict.fromkeys(ids))[:MAX_BULK]
        if not ids:
            security.flash(request, "Select at least one refund first.", "error")
            return _redirect(back)
        fields = {k: _field(form, k) for k in ("user_id", "reason", "note")}
        if _field(form, "confirm") != "yes":
            return await run_in_threadpool(confirm_page, request, me, tenant_id, name, ids, fields)
        done, failed = 0, []
        for refund_id in ids:
            outcome = await run_in_threadpool(perform, me, tenant_id, refund_id, name, fields)
            if outcome.kind == "ok":
                done += 1
            else:
                failed.append(outcome.message)
        message = f"{BULK_WORDS[name]}: {done} of {len(ids)} done."
        if failed:
            message += " Not done: " + "; ".join(dict.fromkeys(failed))[:400]
        security.flash(request, message, "ok" if not failed else "error")
        return _redirect(back)

    def confirm_page(
        request: Request,
        me: ConsoleUser,
        tenant_id: str,
        name: str,
        ids: list[str],
        fields: dict[str, str],
    ) -> Response:
        with container.db.read() as session:
            rows = session.execute(
                select(
                    Refund.id, Refund.reference, Refund.status, Refund.amount_minor, Refund.currency
                )
                .where(Refund.tenant_id == tenant_id, Refund.id.in_(ids))
                .order_by(Refund.reference)
            ).all()
            assignee = session.get(User, fields["user_id"]) if fields["user_id"] else None
        return page(
            request,
            me,
            "console/bulk_confirm.html",
            {
                "title": f"{BULK_WORDS[name]} {len(rows)} refunds?",
                "tenant_id": tenant_id,
                "action": name,
                "action_word": BULK_WORDS[name],
                "rows": rows,
                "fields": fields,
                "assignee": assignee.name if assignee else None,
                "back": _queue_url(tenant_id),
            },
        )

    # ----- saved filters -----------------------------------------------------------------

    @router.post("/desk/t/{tenant_id}/filters")
    async def save_filter(request: Request, tenant_id: str) -> Response:
        form = await request.form()
        if not security.csrf_valid(request, form.get(security.CSRF_FIELD)):
            return _forbidden(request)
        me = await run_in_threadpool(desk_user, request)
        if me is None:
            return signed_out(request)
        if me.role_in(tenant_id) is None:
            return missing(request, me, "retailer")
        try:
            flt = Filter.from_params(
                {k: _field(form, k) for k in ("queue", "scope", "min_amount", "risk")}
            )
        except Invalid as exc:
            security.flash(request, exc.detail, "error")
            return _redirect(_queue_url(tenant_id))

        def save() -> str | None:
            try:
                with container.db.write() as session:
                    console.save_filter(
                        session,
                        clock=container.clock,
                        tenant_id=tenant_id,
                        user_id=me.id,
                        name=_field(form, "name"),
                        flt=flt,
                    )
            except DomainError as exc:
                return exc.detail
            return None

        error = await run_in_threadpool(save)
        security.flash(request, error or "Filter saved.", "error" if error else "ok")
        return _redirect(_queue_url(tenant_id, flt))

    @router.post("/desk/t/{tenant_id}/filters/{filter_id}/delete")
    async def delete_filter(request: Request, tenant_id: str, filter_id: str) -> Response:
        form = await request.form()
        if not security.csrf_valid(request, form.get(security.CSRF_FIELD)):
            return _forbidden(request)
        me = await run_in_threadpool(desk_user, request)
        if me is None:
            return signed_out(request)
        if me.role_in(tenant_id) is None or not _plausible_id(filter_id):
            return missing(request, me, "filter")

        def drop() -> bool:
            try:
                with container.db.write() as session:
                    console.delete_filter(
                        session, tenant_id=tenant_id, user_id=me.id, filter_id=filter_id
                    )
            except NotFound:
                return False
            return True

        if not await run_in_threadpool(drop):
            return missing(request, me, "filter")
        security.flash(request, "Filter deleted.")
        return _redirect(_queue_url(tenant_id))

    # ----- search -------------------------------------------------------------------------

    @router.get("/desk/search", response_class=HTMLResponse)
    def search(request: Request) -> Response:
        me = desk_user(request)
        if me is None:
            return signed_out(request)
        term = request.query_params.get("q", "")[: console.MAX_SEARCH]
        with container.db.read() as session:
            hits = console.search(session, tenant_ids=me.tenant_ids, term=term)
        if len(hits) == 1 and request.query_params.get("go") == "1":
            return _redirect(f"/desk/refunds/{hits[0].tenant_id}/{hits[0].refund_id}")
        return page(
            request,
            me,
            "console/search.html",
            {"title": "Search", "term": term, "hits": hits},
        )

    # ----- the supervisor's view --------------------------------------------------------------

    @router.get("/desk/t/{tenant_id}/supervisor", response_class=HTMLResponse)
    def supervisor(request: Request, tenant_id: str) -> Response:
        me = desk_user(request)
        if me is None:
            return signed_out(request)
        if me.role_in(tenant_id) is None:
            return missing(request, me, "retailer")
        if not me.may(Action.SUPERVISE, tenant_id):
            return denied(request, me, "The supervisor's view is for supervisors.")
        now = container.clock.now()
        with container.db.read() as session:
            glance = clock_glance(session, tenant_id, now)
            tiers = escalations_by_tier(session, tenant_id)
            load_rows = console.workload(session, tenant_id=tenant_id)
            counts = queues.counts(session, tenant_id=tenant_id, user_id=me.id)
        return page(
            request,
            me,
            "console/supervisor.html",
            {
                "title": f"Supervisor: {me.tenant_names.get(tenant_id, tenant_id)}",
                "tenant_id": tenant_id,
                "tenant_name": me.tenant_names.get(tenant_id, tenant_id),
                "glance": glance,
                "clock_chart": charts.hbars(
                    [(label, n) for label, n, _ in glance["buckets"]],
                    classes=[cls for _, _, cls in glance["buckets"]],
                    name="clocks",
                ),
                "tiers": tiers,
                "tier_chart": charts.hbars(list(tiers.items()), name="escalations")
                if tiers
                else None,
                "workload": load_rows,
                "workload_chart": charts.hbars(
                    [(w.name, w.open_claims) for w in load_rows], name="workload"
                )
                if load_rows
                else None,
                "counts": counts,
                "queue_labels": QUEUE_LABELS,
            },
        )

    def clock_glance(session: Session, tenant_id: str, now: datetime) -> dict[str, Any]:
        """Running clocks by time left, and breaches since midnight UTC."""
        edges = [
            ("Breached", None, now, "breached"),
            ("Under 1 h", now, now + timedelta(hours=1), "soon"),
            ("1 to 4 h", now + timedelta(hours=1), now + timedelta(hours=4), "soon"),
            ("4 to 24 h", now + timedelta(hours=4), now + timedelta(hours=24), "later"),
            ("Over a day", now + timedelta(hours=24), None, "later"),
        ]
        buckets = []
        for label, low, high, cls in edges:
            due = RefundClock.next_due_at
            cond = [RefundClock.tenant_id == tenant_id, due.is_not(None)]
            if low is not None:
                cond.append(due >= low)
            if high is not None:
                cond.append(due < high)
            n = session.scalar(select(func.count()).select_from(RefundClock).where(and_(*cond)))
            buckets.append((label, int(n or 0), cls))
        midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        breaches = int(
            session.scalar(
                select(func.count())
                .select_from(RefundClock)
                .where(RefundClock.tenant_id == tenant_id, RefundClock.breached_at >= midnight)
            )
            or 0
        )
        return {
            "buckets": buckets,
            "breaches_today": breaches,
            "running": sum(n for _, n, _ in buckets),
        }

    def escalations_by_tier(session: Session, tenant_id: str) -> dict[str, int]:
        rows = session.execute(
            select(Escalation.tier, func.count())
            .where(
                Escalation.tenant_id == tenant_id,
                Escalation.status == str(EscalationStatus.OPEN),
            )
            .group_by(Escalation.tier)
        ).all()
        found = {str(row[0]): int(row[1]) for row in rows}
        words = {"l1": "L1", "l2": "L2", "finance": "Finance"}
        return {words.get(tier, tier): found.get(tier, 0) for tier in (*ESCALATION_TIERS, *found)}

    # ----- account: the second factor ------------------------------------------------------

    @router.get("/desk/account", response_class=HTMLResponse)
    def account(request: Request) -> Response:
        me = desk_user(request)
        if me is None:
            return signed_out(request)
        pending = request.session.get(TOTP_PENDING)
        context: dict[str, Any] = {"title": "Your account", "roles": me.roles}
        if isinstance(pending, str) and not me.totp:
            uri = users.provisioning_uri_for(me.email, pending)
            context.update(enrol_secret=pending, enrol_qr=Markup(users.qr_svg(uri)))  # noqa: S704
        return page(request, me, "console/account.html", context)

    def account_post(
        handler: Callable[[Request, ConsoleUser, FormData], Response],
    ) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            form = await request.form()
            if not security.csrf_valid(request, form.get(security.CSRF_FIELD)):
                return _forbidden(request)
            me = await run_in_threadpool(desk_user, request)
            if me is None:
                return signed_out(request)
            return await run_in_threadpool(handler, request, me, form)

        return endpoint

    def totp_start(request: Request, me: ConsoleUser, form: FormData) -> Response:
        if not me.totp:
            request.session[TOTP_PENDING] = users.new_totp_secret()
        return _redirect("/desk/account")

    def totp_confirm(request: Request, me: ConsoleUser, form: FormData) -> Response:
        pending = request.session.get(TOTP_PENDING)
        if not isinstance(pending, str):
            return _redirect("/desk/account")
        if not users.totp_matches(pending, _field(form, "code"), at=container.clock.now()):
            security.flash(
                request, "That code is not right; try the one your app shows now.", "error"
            )
            return _redirect("/desk/account")
        with container.db.write() as session:
            user = session.get(User, me.id)
            assert user is not None
            user.totp_secret = pending
        request.session.pop(TOTP_PENDING, None)
        security.flash(request, "Two-step sign-in is on: you will be asked for a code.")
        return _redirect("/desk/account")

    def totp_off(request: Request, me: ConsoleUser, form: FormData) -> Response:
        with container.db.write() as session:
            user = session.get(User, me.id)
            assert user is not None
            secret = user.totp_secret
            if secret is None:
                return _redirect("/desk/account")
            if not users.totp_matches(secret, _field(form, "code"), at=container.clock.now()):
                security.flash(
                    request, "Enter a current code to turn two-step sign-in off.", "error"
                )
                return _redirect("/desk/account")
            user.totp_secret = None
        security.flash(request, "Two-step sign-in is off.")
        return _redirect("/desk/account")

    router.add_api_route("/desk/account/totp", account_post(totp_start), methods=["POST"])
    router.add_api_route("/desk/account/totp/confirm", account_post(totp_confirm), methods=["POST"])
    router.add_api_route("/desk/account/totp/disable", account_post(totp_off), methods=["POST"])

    return router
