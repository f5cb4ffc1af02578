"""`refunddesk notifications ...`: preview a customer message as a tenant's customers see it."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console

from refunddesk.core.errors import DomainError

app = typer.Typer(help="Customer notifications.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _container() -> Any:
    from refunddesk.cli import _container as make

    return make()


@app.command("preview")
def preview(
    tenant: Annotated[str, typer.Option(help="Tenant id whose branding and wording to use.")],
    event: Annotated[
        str, typer.Option(help="Message kind: received, approved, paid, delayed, ...")
    ],
    locale: Annotated[str, typer.Option(help="The customer's language (en, de, de-AT).")] = "en",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Render a sample message (subject, text, HTML, SMS); sends and stores nothing."""
    from refunddesk.notifications.channels.sms import fit
    from refunddesk.notifications.dispatch import preview as render_preview

    container = _container()
    try:
        with container.db.read() as session:
            resolved, rendered = render_preview(
                session,
                tenant_id=tenant,
                kind=event,
                locale=locale,
                now=container.clock.now(),
                public_url=container.settings.public_url,
            )
    except DomainError as exc:
        if as_json:
            typer.echo(json.dumps({"error": exc.code, "detail": exc.detail, "field": exc.field}))
        else:
            err.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from exc
    sms, counted = fit(rendered.sms)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "locale": resolved,
                    "subject": rendered.subject,
                    "text": rendered.text,
                    "html": rendered.html,
                    "sms": sms,
                    "sms_segments": counted.count,
                    "sms_encoding": counted.encoding,
                },
                ensure_ascii=False,
            )
        )
        return
    console.print(f"[bold]Subject ({resolved}):[/bold] {rendered.subject}\n")
    console.print(rendered.text, markup=False, highlight=False)
    console.print(f"[bold]SMS[/bold] ({counted.count} segment(s), {counted.encoding}): ", end="")
    console.print(sms, markup=False, highlight=False)
