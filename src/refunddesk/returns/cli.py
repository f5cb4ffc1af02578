"""`refunddesk returns ...`: the warehouse scan feed and return expiry from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from refunddesk.core.errors import DomainError, NotFound

app = typer.Typer(help="Returns of goods (RMA).", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
ACTOR = "cli:scan-feed"


def _container() -> Any:
    from refunddesk.cli import _container as make

    return make()


def _fail(exc: DomainError, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"error": exc.code, "detail": exc.detail, "field": exc.field}))
    else:
        err.print(f"[red]error:[/red] {exc.detail}")
    raise typer.Exit(2)


@app.command("receive")
def receive(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="Scan feed CSV.")
    ],
    tenant: Annotated[str, typer.Option(help="Tenant id whose returns the feed is for.")],
    as_json: JsonOpt = False,
) -> None:
    """Receive the parcels of a warehouse scan feed (tracking_number, sku, quantity, condition).

    Unknown tracking numbers, unreadable rows and refused parcels are reported and stored
    in return_scan_exceptions. Exit code 0 when every row was applied, 1 otherwise.
    """
    from refunddesk.returns.flows import receive_scan_feed
    from refunddesk.returns.scanfeed import parse_scan_feed
    from refunddesk.tenants.orm import Tenant

    container = _container()
    try:
        with container.db.read() as session:
            if session.get(Tenant, tenant) is None:
                raise NotFound(f"no tenant {tenant}", field="tenant")
        with file.open(newline="", encoding="utf-8-sig") as handle:
            feed = parse_scan_feed(handle)
        parcels = len({r.tracking_number for r in feed.rows})
        with Progress(
            TextColumn("receiving parcels"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            disable=as_json,
            transient=True,
        ) as progress:
            task = progress.add_task("parcels", total=parcels)
            report = receive_scan_feed(
                db=container.db,
                clock=container.clock,
                tenant_id=tenant,
                feed=feed,
                source=str(file),
                actor=ACTOR,
                on_parcel=lambda _: progress.advance(task),
            )
    except DomainError as exc:
        container.close()
        _fail(exc, as_json)
    except UnicodeDecodeError as exc:
        container.close()
        _fail(DomainError(f"{file} is not UTF-8 text: {exc}"), as_json)
    container.close()

    if as_json:
        typer.echo(json.dumps(report.as_data(), default=str))
    else:
        console.print(
            f"received {len(report.received)} parcels; unmatched {len(report.unmatched)} rows; "
            f"bad {len(report.bad_rows)} rows; refused {len(report.errors)} parcels"
        )
        if report.unmatched:
            table = Table("line", "tracking number", "sku", "qty", title="Unknown tracking numbers")
            for u in report.unmatched:
                table.add_row(str(u["line"]), u["tracking_number"], u["sku"], str(u["quantity"]))
            console.print(table)
        if report.bad_rows:
            table = Table("line", "why", title="Rows that could not be read")
            for b in report.bad_rows:
                table.add_row(str(b["line"]), b["reason"])
            console.print(table)
        if report.errors:
            table = Table("tracking number", "refund", "why", title="Parcels refused")
            for e in report.errors:
                table.add_row(e["tracking_number"], e["refund_id"], e["reason"])
            console.print(table)
        if not report.all_handled:
            console.print("these are stored in return_scan_exceptions for follow-up")
    raise typer.Exit(0 if report.all_handled else 1)


@app.command("expire")
def expire(as_json: JsonOpt = False) -> None:
    """Expire returns past their deadline now and cancel their refunds (as the worker does)."""
    from refunddesk.returns.jobs import expire_overdue

    container = _container()
    report = expire_overdue(db=container.db, clock=container.clock)
    container.close()
    if as_json:
        typer.echo(json.dumps({"expired": report.expired, "errors": report.errors}))
    else:
        console.print(f"expired {len(report.expired)} returns; errors {len(report.errors)}")
        for refund_id, why in report.errors.items():
            err.print(f"[red]{refund_id}[/red]: {why}")
    raise typer.Exit(1 if report.errors else 0)
