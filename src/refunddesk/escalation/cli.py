"""`refunddesk escalations ...` and `refunddesk sla ...`: the scan, listings, clock backfill."""

from __future__ import annotations

import json
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from refunddesk.core.errors import DomainError

app = typer.Typer(help="Escalations of refunds (SLA breaches, rules).", no_args_is_help=True)
sla_app = typer.Typer(help="SLA and legal clocks of refunds.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _container() -> Any:
    from refunddesk.cli import _container as make

    return make()


def _fail(exc: DomainError, as_json: bool) -> NoReturn:
    if as_json:
        typer.echo(json.dumps({"error": exc.code, "detail": exc.detail, "field": exc.field}))
    else:
        err.print(f"[red]error:[/red] {exc.detail}")
    raise typer.Exit(2)


@app.command("scan")
def scan_cmd(
    tenant: Annotated[
        list[str] | None, typer.Option("--tenant", help="Only these tenants (repeatable).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run one escalation pass now (the worker runs it every minute)."""
    from refunddesk.escalation.scan import scan

    container = _container()
    try:
        report = scan(
            db=container.db,
            clock=container.clock,
            tenant_ids=tenant or None,
            public_url=container.settings.public_url,
        )
    finally:
        container.close()
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
        return
    console.print(
        f"{report.tenants} tenant(s), {report.checked} refund(s) checked: "
        f"{report.opened} opened, {report.raised} raised, {report.noted} noted, "
        f"{report.errors} error(s) in {report.seconds:.2f}s"
    )
    for failure in report.failures:
        err.print(f"[red]{failure}[/red]")


@app.command("list")
def list_cmd(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant id.")],
    status: Annotated[str | None, typer.Option(help="open or resolved")] = None,
    tier: Annotated[str | None, typer.Option(help="l1, l2 or finance")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Escalations of a tenant, newest first."""
    from refunddesk.escalation import service
    from refunddesk.escalation.schemas import EscalationPublic

    container = _container()
    try:
        with container.db.read() as session:
            rows, _ = service.list_escalations(
                session, tenant_id=tenant, status=status, tier=tier, limit=limit
            )
            items = [EscalationPublic.of(e) for e in rows]
    finally:
        container.close()
    if as_json:
        typer.echo(json.dumps([i.model_dump(mode="json") for i in items]))
        return
    table = Table("id", "refund", "tier", "reason", "status", "owner", "created", "climbs at")
    for i in items:
        table.add_row(
            i.id,
            i.refund_id,
            str(i.tier),
            i.reason,
            i.status,
            i.owner_id or "",
            f"{i.created_at:%Y-%m-%d %H:%M}",
            f"{i.escalate_at:%Y-%m-%d %H:%M}" if i.escalate_at else "",
        )
    console.print(table)


@app.command("show")
def show_cmd(
    escalation_id: str,
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant id.")],
    as_json: JsonOpt = False,
) -> None:
    """One escalation with its notes."""
    from refunddesk.escalation import service
    from refunddesk.escalation.schemas import (
        EscalationDetail,
        EscalationNotePublic,
        EscalationPublic,
    )

    container = _container()
    try:
        with container.db.read() as session:
            try:
                esc = service.get(session, tenant_id=tenant, escalation_id=escalation_id)
            except DomainError as exc:
                _fail(exc, as_json)
            notes = service.notes_of(session, tenant_id=tenant, escalation_id=escalation_id)
            detail = EscalationDetail(
                **EscalationPublic.of(esc).model_dump(),
                notes=[EscalationNotePublic.of(n) for n in notes],
            )
    finally:
        container.close()
    if as_json:
        typer.echo(detail.model_dump_json())
        return
    console.print(
        f"[bold]{detail.id}[/bold] refund {detail.refund_id}: {detail.tier} {detail.status} "
        f"({detail.reason})\n{detail.detail}"
    )
    if detail.resolution:
        console.print(f"resolved by {detail.resolved_by}: {detail.resolution}")
    for n in detail.notes:
        console.print(f"  {n.at:%Y-%m-%d %H:%M} {n.actor} [{n.kind}] {n.body}")


@sla_app.command("backfill")
def backfill_cmd(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Give refunds stored before the clocks existed (or demo data) their clocks."""
    from refunddesk.sla.service import backfill

    container = _container()
    try:
        done = backfill(container.db, tenant_id=tenant)
    finally:
        container.close()
    if as_json:
        typer.echo(json.dumps({"backfilled": done}))
    else:
        console.print(f"{done} refund(s) got their clocks")


@sla_app.command("clocks")
def clocks_cmd(
    refund_id: str,
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant id.")],
    as_json: JsonOpt = False,
) -> None:
    """A refund's clocks now."""
    from refunddesk.escalation.schemas import ClockPublic
    from refunddesk.sla.service import clocks_of

    container = _container()
    try:
        with container.db.read() as session:
            try:
                jurisdiction, contacts, views = clocks_of(
                    session, tenant_id=tenant, refund_id=refund_id, now=container.clock.now()
                )
            except DomainError as exc:
                _fail(exc, as_json)
    finally:
        container.close()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "refund_id": refund_id,
                    "jurisdiction": jurisdiction,
                    "contacts": contacts,
                    "clocks": [ClockPublic.of(v).model_dump(mode="json") for v in views],
                }
            )
        )
        return
    table = Table("clock", "state", "due", "remaining (h)", "breached", "at risk")
    for v in views:
        table.add_row(
            v.label,
            v.state,
            f"{v.due_at:%Y-%m-%d %H:%M} UTC" if v.due_at else "",
            "" if v.remaining_seconds is None else f"{v.remaining_seconds / 3600:.1f}",
            "yes" if v.breached else "",
            "yes" if v.predicted_breach else "",
        )
    console.print(f"jurisdiction {jurisdiction}, {contacts} customer contact(s)")
    console.print(table)
