"""The refunddesk command line."""

from __future__ import annotations

import json
import os
import signal
import threading
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from refunddesk.auth import cli as users_cli
from refunddesk.auth.domain import Role
from refunddesk.core.errors import DomainError
from refunddesk.escalation import cli as escalation_cli
from refunddesk.fraud import cli as fraud_cli
from refunddesk.notifications.cli import app as notifications_app
from refunddesk.payouts import cli as payouts_cli
from refunddesk.payouts import store_credit_cli
from refunddesk.policy import cli as policy_cli
from refunddesk.returns.cli import app as returns_app
from refunddesk.settings import get_settings
from refunddesk.webhooks_out.cli import app as webhooks_app

app = typer.Typer(
    help="refunddesk: refund processing and refund status tracking.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
tenants_app = typer.Typer(help="Retailers served by this desk.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
jobs_app = typer.Typer(help="The background job queue.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")
app.add_typer(jobs_app, name="jobs")
app.add_typer(policy_cli.app, name="policy")
app.add_typer(returns_app, name="returns")
app.add_typer(payouts_cli.app, name="payouts")
app.add_typer(payouts_cli.gateways_app, name="gateways")
app.add_typer(store_credit_cli.app, name="store-credit")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(notifications_app, name="notifications")
app.add_typer(fraud_cli.app, name="fraud")
app.add_typer(users_cli.app, name="users")
app.add_typer(escalation_cli.app, name="escalations")
app.add_typer(escalation_cli.sla_app, name="sla")

console = Console()
err = Console(stderr=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _emit(as_json: bool, data: Any, human: str) -> None:
    if as_json:
        typer.echo(json.dumps(data, default=str))
    else:
        console.print(human)


def _fail(exc: DomainError, as_json: bool = False) -> None:
    if as_json:
        typer.echo(json.dumps({"error": exc.code, "detail": exc.detail, "field": exc.field}))
    else:
        err.print(f"[red]error:[/red] {exc.detail}")
    raise typer.Exit(2)


def _container() -> Any:
    from refunddesk.bootstrap import bootstrap
    from refunddesk.logs import configure

    settings = get_settings()
    configure(settings.log_level, settings.log_format)
    return bootstrap(settings)


def _migrate(quiet: bool = True) -> None:
    from refunddesk.db.migrate import upgrade

    upgrade(get_settings().database_url)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations to REFUNDDESK_DATABASE_URL."""
    _migrate()
    console.print("[green]database is up to date[/green]")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers_inline: Annotated[
        bool,
        typer.Option(
            "--workers-inline/--no-workers-inline",
            help="Run a background worker inside the server process.",
        ),
    ] = True,
    processes: Annotated[int, typer.Option(min=1, help="Server processes (uvicorn workers).")] = 1,
) -> None:
    """Serve the API and web pages (migrates the database first)."""
    import uvicorn

    _migrate()
    os.environ["REFUNDDESK_INLINE_WORKER"] = "1" if workers_inline else "0"
    console.print(
        f"refunddesk on [bold]http://{host}:{port}[/bold]  "
        f"(API docs at /docs; worker {'inline' if workers_inline else 'off'})"
    )
    uvicorn.run(
        "refunddesk.api.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=processes if processes > 1 else None,
        log_config=None,
        access_log=False,
    )


@app.command()
def worker(
    once: Annotated[bool, typer.Option(help="Run until the queue is empty, then exit.")] = False,
) -> None:
    """Run a standalone background worker; run as many as you like against PostgreSQL."""
    container = _container()
    w = container.worker()
    if once:
        count = w.drain()
        console.print(f"ran {count} jobs")
        container.close()
        return
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    console.print(f"worker {w.name} running; Ctrl-C to stop")
    w.run(stop)
    container.close()


@app.command()
def demo(
    orders: Annotated[int, typer.Option(min=10, help="Orders per retailer.")] = 300,
    if_empty: Annotated[bool, typer.Option(help="Do nothing if tenants exist already.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed, for a repeatable data set.")] = 7,
    as_json: JsonOpt = False,
) -> None:
    """Load demo retailers, orders and refunds in every state; print API keys to try."""
    from refunddesk.demo import load_demo
    from refunddesk.tenants.service import list_tenants

    _migrate()
    container = _container()
    with container.db.read() as session:
        if if_empty and list_tenants(session):
            _emit(as_json, {"skipped": True}, "demo data already loaded; skipping")
            return
    result = load_demo(container, orders_per_tenant=orders, seed=seed, progress=not as_json)
    container.close()
    if as_json:
        typer.echo(json.dumps(result))
        return
    console.print(
        f"[bold]Demo loaded:[/bold] {result['refunds']} refunds across "
        f"{len(result['tenants'])} retailers.\n"
    )
    console.print("[bold]Sign in at http://127.0.0.1:8000/desk[/bold] as:")
    for user in result.get("users", []):
        console.print(f"  {user['role']:<14} {user['email']}  password {user['password']}")
    console.print(f"\ndesk admin API key: {result['admin_key']}", soft_wrap=True)
    for tenant in result["tenants"]:
        console.print(f"\n[bold]{tenant['name']}[/bold]  tenant id {tenant['tenant_id']}")
        for role, key in tenant["keys"].items():
            console.print(f"  {role:<14} {key}", soft_wrap=True)
    console.print()
    console.print(
        "Try: curl -H 'Authorization: Bearer "
        f"{result['tenants'][0]['keys']['integration']}' "
        "'http://127.0.0.1:8000/v1/refunds?limit=3'",
        soft_wrap=True,
    )
    if result["sample"]:
        console.print(
            f"Track a refund at http://127.0.0.1:8000/track with reference "
            f"{result['sample']['reference']} and email {result['sample']['email']}",
            soft_wrap=True,
        )
    if result.get("fraud_ring"):
        console.print(
            f"Held for fraud review (a linked-account ring, in {result['tenants'][0]['name']}): "
            f"{', '.join(result['fraud_ring'])}",
            soft_wrap=True,
        )


@tenants_app.command("create")
def tenants_create(
    name: Annotated[str, typer.Argument(help="The retailer's name.")],
    currency: Annotated[str, typer.Option(help="Default currency (ISO 4217).")] = "EUR",
    timezone: Annotated[str, typer.Option(help="IANA time zone.")] = "UTC",
    as_json: JsonOpt = False,
) -> None:
    """Create a retailer and print its id and an API key with the integration role."""
    from refunddesk.tenants.service import create_tenant

    container = _container()
    try:
        with container.db.write() as session:
            tenant, key = create_tenant(
                session, clock=container.clock, name=name, currency=currency, timezone=timezone
            )
            tenant_id = tenant.id
    except DomainError as exc:
        _fail(exc, as_json)
    _emit(
        as_json,
        {"tenant_id": tenant_id, "api_key": key},
        f"tenant [bold]{name}[/bold] {tenant_id}\nintegration API key: {key}",
    )


@tenants_app.command("list")
def tenants_list(as_json: JsonOpt = False) -> None:
    """List retailers."""
    from refunddesk.tenants.service import list_tenants

    container = _container()
    with container.db.read() as session:
        rows = [
            {"tenant_id": t.id, "name": t.name, "currency": t.currency, "timezone": t.timezone}
            for t in list_tenants(session)
        ]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table("tenant id", "name", "currency", "time zone")
    for row in rows:
        table.add_row(row["tenant_id"], row["name"], row["currency"], row["timezone"])
    console.print(table)


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str | None, typer.Option(help="Tenant id the key acts for.")] = None,
    role: Annotated[Role | None, typer.Option(help="Role within the tenant.")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="A desk-wide admin key.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key: --tenant ID --role ROLE, or --admin."""
    from refunddesk.auth.service import create_key
    from refunddesk.core.errors import Invalid

    if admin == (tenant is not None or role is not None):
        _fail(Invalid("give either --admin, or --tenant and --role"), as_json)
    if not admin and (tenant is None or role is None):
        _fail(Invalid("a tenant key needs both --tenant and --role"), as_json)
    if role is Role.ADMIN:
        _fail(Invalid("use --admin for an admin key", field="role"), as_json)
    container = _container()
    try:
        with container.db.write() as session:
            key = create_key(
                session,
                clock=container.clock,
                role=Role.ADMIN if admin else role,  # type: ignore[arg-type]
                tenant_id=None if admin else tenant,
            )
    except DomainError as exc:
        _fail(exc, as_json)
    _emit(as_json, {"api_key": key}, f"API key: {key}")


@jobs_app.command("list")
def jobs_list(
    status: Annotated[str | None, typer.Option(help="queued, running or dead")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Show jobs; dead ones with their last error."""
    from refunddesk.jobs.queue import list_jobs, stats

    container = _container()
    with container.db.read() as session:
        s = stats(session)
        rows: list[dict[str, Any]] = [
            {
                "id": j.id,
                "kind": j.kind,
                "status": j.status,
                "attempts": j.attempts,
                "run_at": j.run_at.isoformat(),
                "last_error": j.last_error,
                "payload": j.payload,
            }
            for j in list_jobs(session, status=status, limit=limit)
        ]
    if as_json:
        typer.echo(
            json.dumps({"queued": s.queued, "running": s.running, "dead": s.dead, "jobs": rows})
        )
        return
    console.print(f"queued {s.queued}  running {s.running}  dead {s.dead}")
    table = Table("id", "kind", "status", "attempts", "run at", "last error")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["kind"],
            r["status"],
            str(r["attempts"]),
            r["run_at"],
            (r["last_error"] or "")[:80],
        )
    console.print(table)


@jobs_app.command("rerun")
def jobs_rerun(job_id: Annotated[int, typer.Argument()], as_json: JsonOpt = False) -> None:
    """Put a dead job back in the queue."""
    from refunddesk.jobs.queue import rerun

    container = _container()
    try:
        with container.db.write() as session:
            rerun(session, job_id, now=container.clock.now())
    except DomainError as exc:
        _fail(exc, as_json)
    _emit(as_json, {"job_id": job_id, "status": "queued"}, f"job {job_id} queued again")


def main() -> None:
    app()
