"""`refunddesk payouts bank ...`: SEPA transfer files and the bank's status reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table

from refunddesk.core.errors import NotFound
from refunddesk.payouts.gateways.base import GatewayNotification

app = typer.Typer(
    help="SEPA credit transfer files (pain.001) and bank status.", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _container() -> Any:
    from refunddesk.cli import _container as make

    return make()


def _outbox(container: Any) -> Path:
    return Path(getattr(container.settings, "bank_outbox_dir", "./outbox/bank"))


@app.command("files")
def files(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's files.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List the pain.001 files made, newest first."""
    from refunddesk.core.money import Money
    from refunddesk.payouts.bank import list_files

    container = _container()
    with container.db.read() as session:
        rows = list_files(session, tenant_id=tenant, limit=limit)
        data: list[dict[str, Any]] = [
            {
                "tenant_id": f.tenant_id,
                "account": f.account,
                "message_id": f.message_id,
                "path": f.path,
                "count": f.count,
                "control_sum_minor": f.control_sum_minor,
                "currency": f.currency,
                "created_at": f.created_at.isoformat(),
                "written_at": f.written_at.isoformat() if f.written_at else None,
            }
            for f in rows
        ]
    container.close()
    if as_json:
        typer.echo(json.dumps(data))
        return
    table = Table("created", "tenant", "account", "message id", "transfers", "total", "path")
    for row in data:
        total = Money(row["control_sum_minor"], row["currency"])
        written = "" if row["written_at"] else " [red](not written yet)[/red]"
        table.add_row(
            row["created_at"][:19],
            row["tenant_id"],
            row["account"],
            row["message_id"],
            str(row["count"]),
            str(total),
            row["path"] + written,
        )
    console.print(table if data else "no bank files yet")


@app.command("write")
def write(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's accounts.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a pain.001 file now for every account with queued transfers.

    Exit code 0 when every account's file was written, 1 if one failed (it is retried on
    the next run; nothing is lost or sent twice).
    """
    from refunddesk.core.money import Money
    from refunddesk.payouts.bank import WrittenFile, write_files
    from refunddesk.payouts.settle import bank_file_sent

    container = _container()
    outbox = _outbox(container)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        console=err,
        disable=as_json,
        transient=True,
    ) as progress:
        task = progress.add_task(f"writing bank files to {outbox}", total=None)

        def written(file: WrittenFile) -> None:
            bank_file_sent(
                container.db,
                tenant_id=file.tenant_id,
                idempotency_keys=file.idempotency_keys,
                sent_at=file.sent_at,
            )
            progress.update(task, description=f"wrote {file.path.name} ({file.count} transfers)")

        report = write_files(
            db=container.db,
            clock=container.clock,
            outbox_dir=outbox,
            tenant_id=tenant,
            on_file=written,
        )
    container.close()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "files": [
                        {
                            "tenant_id": f.tenant_id,
                            "account": f.account,
                            "message_id": f.message_id,
                            "path": str(f.path),
                            "count": f.count,
                            "control_sum_minor": f.control_sum_minor,
                            "currency": f.currency,
                            "recovered": f.recovered,
                        }
                        for f in report.files
                    ],
                    "errors": [
                        {"tenant_id": t, "account": a, "error": e} for t, a, e in report.errors
                    ],
                }
            )
        )
    else:
        if report.files:
            table = Table("tenant", "account", "message id", "transfers", "total", "path")
            for f in report.files:
                note = " (recovered)" if f.recovered else ""
                table.add_row(
                    f.tenant_id,
                    f.account,
                    f.message_id + note,
                    str(f.count),
                    str(Money(f.control_sum_minor, f.currency)),
                    str(f.path),
                )
            console.print(table)
        transfers = sum(f.count for f in report.files)
        console.print(f"wrote {len(report.files)} files with {transfers} transfers")
        for tenant_id, account, error in report.errors:
            err.print(f"[red]{tenant_id}/{account}[/red]: {error}")
    raise typer.Exit(1 if report.errors else 0)


def _applier(container: Any) -> Any:
    """Apply the bank's answers to the payouts and refunds they settle."""
    from refunddesk.payouts.settle import apply_notifications

    def run(tenant_id: str, notifications: list[GatewayNotification]) -> object:
        return apply_notifications(container.db, container.clock, tenant_id, notifications)

    return run


@app.command("import")
def import_(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="pain.002 XML or CSV (e2e id,status,reason).",
        ),
    ],
    tenant: Annotated[str, typer.Option(help="Tenant id whose transfers the report is about.")],
    as_json: JsonOpt = False,
) -> None:
    """Import a bank status report: confirm or reject the transfers it names.

    Exit code 0 when every line was applied, 1 when some were unknown or unreadable.
    """
    from refunddesk.payouts.bank import import_status
    from refunddesk.tenants.orm import Tenant

    container = _container()
    try:
        with container.db.read() as session:
            if session.get(Tenant, tenant) is None:
                raise NotFound(f"no tenant {tenant}", field="tenant")
        apply = _applier(container)
        report = import_status(
            db=container.db,
            clock=container.clock,
            tenant_id=tenant,
            data=file.read_bytes(),
            apply=apply,
        )
    except NotFound as exc:
        container.close()
        _fail(exc.detail, as_json)
        return
    except (ValueError, UnicodeDecodeError) as exc:
        container.close()
        _fail(f"{file} is not a pain.002 report or a status CSV: {exc}", as_json)
        return
    container.close()
    data = report.as_data()
    data["applied"] = apply is not None
    if as_json:
        typer.echo(json.dumps(data, default=str))
    else:
        console.print(
            f"confirmed {len(report.confirmed)}; rejected {len(report.rejected)}; "
            f"already so {len(report.unchanged)}; pending {len(report.pending)}; "
            f"unknown {len(report.unknown)}; errors {len(report.errors)}"
        )
        if report.rejected:
            table = Table("end-to-end id", "why", title="Rejected")
            for e2e, message in report.rejected:
                table.add_row(e2e, message)
            console.print(table)
        if report.unknown:
            console.print("unknown end-to-end ids: " + ", ".join(report.unknown))
        for error in report.errors:
            err.print(f"[yellow]{error}[/yellow]")
        if apply is None and report.notifications:
            table = Table("event", "kind", "idempotency key", "reason", title="Notifications")
            for n in report.notifications:
                table.add_row(
                    n.event_id, str(n.kind), n.idempotency_key or "", n.failure_reason or ""
                )
            console.print(table)
    raise typer.Exit(1 if report.unknown or report.errors else 0)


def _fail(message: str, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"error": "invalid", "detail": message}))
    else:
        err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)
