"""`refunddesk webhooks ...`: a tenant's webhook endpoints from the command line."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from refunddesk.core.errors import DomainError

app = typer.Typer(help="Retailers' webhook endpoints.", no_args_is_help=True)
console = Console()
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
TenantOpt = Annotated[str, typer.Option(help="Tenant id.")]


def _container() -> Any:
    from refunddesk.cli import _container as make

    return make()


def _fail(exc: DomainError, as_json: bool) -> None:
    from refunddesk.cli import _fail as fail

    fail(exc, as_json)


@app.command("list")
def list_endpoints(tenant: TenantOpt, as_json: JsonOpt = False) -> None:
    """The tenant's endpoints, their filters and whether they are enabled."""
    from refunddesk.webhooks_out import service

    container = _container()
    with container.db.read() as session:
        items = [service.to_public(e) for e in service.list_endpoints(session, tenant_id=tenant)]
    if as_json:
        typer.echo(json.dumps([i.model_dump(mode="json") for i in items]))
        return
    if not items:
        console.print("No webhook endpoints.")
        return
    table = Table("id", "url", "events", "enabled", "secret")
    for i in items:
        state = "yes" if i.enabled else f"no: {i.disabled_reason or ''}"
        table.add_row(i.id, i.url, ", ".join(i.event_types) or "*", state, i.secret_hint)
    console.print(table)


@app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="http(s) URL that receives the events.")],
    tenant: TenantOpt,
    events: Annotated[
        str | None, typer.Option(help="Comma-separated event types or patterns (payout.*).")
    ] = None,
    description: Annotated[str | None, typer.Option(help="A note for people.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add an endpoint; prints its signing secret, which is shown only this once."""
    from refunddesk.webhooks_out import service

    container = _container()
    types = [e.strip() for e in (events or "").split(",") if e.strip()]
    try:
        with container.db.write() as session:
            endpoint = service.create_endpoint(
                session,
                clock=container.clock,
                tenant_id=tenant,
                url=url,
                description=description,
                event_types=types,
                allow_private=container.settings.webhook_allow_private_urls,
            )
            created = service.with_secret(endpoint)
    except DomainError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        typer.echo(json.dumps(created.model_dump(mode="json")))
        return
    console.print(f"Endpoint {created.id} added for {created.url}.")
    console.print(f"Signing secret (shown once, keep it safe): {created.secret}")


@app.command("test")
def send_test(
    endpoint_id: Annotated[str, typer.Argument(help="The endpoint's id.")],
    tenant: TenantOpt,
    as_json: JsonOpt = False,
) -> None:
    """Queue a webhook.test event to the endpoint; the worker sends it."""
    from refunddesk.webhooks_out import service

    container = _container()
    try:
        with container.db.write() as session:
            delivery = service.send_test(
                session,
                clock=container.clock,
                tenant_id=tenant,
                endpoint_id=endpoint_id,
                max_attempts=container.settings.job_max_attempts,
            )
            data = {"delivery_id": delivery.id, "webhook_id": delivery.event_id}
    except DomainError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        typer.echo(json.dumps(data))
    else:
        console.print(f"Test event {data['webhook_id']} queued (delivery {data['delivery_id']}).")
