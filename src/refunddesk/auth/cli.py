"""`refunddesk users ...`: desk accounts, their roles per tenant, passwords, second factors."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from refunddesk.auth import users
from refunddesk.auth.domain import Role
from refunddesk.core.errors import DomainError

app = typer.Typer(help="Desk users: agents, supervisors, finance, viewers.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
UserArg = Annotated[str, typer.Argument(help="The user's email address (or id).")]
PASSWORD_ENV = "REFUNDDESK_USER_PASSWORD"  # noqa: S105  (the variable's name, not a password)


def _emit(as_json: bool, data: Any, human: str) -> None:
    if as_json:
        typer.echo(json.dumps(data, default=str))
    else:
        console.print(human, soft_wrap=True)


@contextmanager
def _write(as_json: bool) -> Iterator[tuple[Session, Any]]:
    """A write session on the configured database (migrated first), errors as exit 2."""
    from refunddesk.bootstrap import bootstrap
    from refunddesk.db.migrate import upgrade
    from refunddesk.settings import get_settings

    settings = get_settings()
    upgrade(settings.database_url)
    container = bootstrap(settings)
    try:
        with container.db.write() as session:
            yield session, container
    except DomainError as exc:
        if as_json:
            typer.echo(json.dumps({"error": exc.code, "detail": exc.detail, "field": exc.field}))
        else:
            err.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from None
    finally:
        container.close()


def _password(given: str | None, *, confirm: bool) -> str:
    """The password from --password, $REFUNDDESK_USER_PASSWORD, or a hidden prompt."""
    if given:
        return given
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    return value


@app.command("add")
def add(
    email: Annotated[str, typer.Argument(help="Email address: the sign-in name.")],
    name: Annotated[str, typer.Option(help="Full name shown in the console.")] = "",
    password: Annotated[
        str | None,
        typer.Option(help=f"Password (else ${PASSWORD_ENV}, else asked for)."),
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Desk-wide admin.")] = False,
    tenant: Annotated[str | None, typer.Option(help="Tenant id to grant a role in.")] = None,
    role: Annotated[Role | None, typer.Option(help="The role in --tenant.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a user (optionally an admin, optionally with a role in one tenant)."""
    if (tenant is None) != (role is None):
        err.print("[red]error:[/red] give --tenant and --role together")
        raise typer.Exit(2)
    secret = _password(password, confirm=True)
    with _write(as_json) as (session, container):
        user = users.create_user(
            session, clock=container.clock, email=email, name=name, password=secret, is_admin=admin
        )
        if tenant is not None and role is not None:
            users.grant(session, clock=container.clock, user=user, tenant_id=tenant, role=role)
        shown = users.view(session, user)
    _emit(
        as_json,
        shown.as_dict(),
        f"user {shown.email} created (id {shown.id}){' as desk admin' if admin else ''}",
    )


@app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option(help="Only members of this tenant.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every user, with their roles per tenant."""
    with _write(as_json) as (session, _):
        rows = users.list_users(session, tenant_id=tenant)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in rows]))
        return
    table = Table("email", "name", "admin", "totp", "disabled", "roles")
    for r in rows:
        roles = ", ".join(f"{t}:{role}" for t, role in r.roles.items())
        table.add_row(
            r.email,
            r.name,
            "yes" if r.is_admin else "",
            "on" if r.totp else "",
            "yes" if r.disabled else "",
            roles,
        )
    console.print(table)


@app.command("grant")
def grant(
    user: UserArg,
    tenant: Annotated[str, typer.Option(help="Tenant id.")],
    role: Annotated[Role, typer.Option(help="agent, supervisor, finance or client_viewer.")],
    as_json: JsonOpt = False,
) -> None:
    """Give a user a role in a tenant (replacing the role held there)."""
    with _write(as_json) as (session, container):
        found = users.get_user(session, user)
        users.grant(session, clock=container.clock, user=found, tenant_id=tenant, role=role)
        shown = users.view(session, found)
    _emit(as_json, shown.as_dict(), f"{shown.email} is {role} in {tenant}")


@app.command("revoke")
def revoke(
    user: UserArg,
    tenant: Annotated[str, typer.Option(help="Tenant id.")],
    as_json: JsonOpt = False,
) -> None:
    """Take away a user's role in a tenant."""
    with _write(as_json) as (session, _):
        found = users.get_user(session, user)
        users.revoke(session, user=found, tenant_id=tenant)
        shown = users.view(session, found)
    _emit(as_json, shown.as_dict(), f"{shown.email} no longer serves {tenant}")


@app.command("disable")
def disable(user: UserArg, as_json: JsonOpt = False) -> None:
    """Stop a user signing in (their open sessions end at the next request)."""
    with _write(as_json) as (session, container):
        found = users.get_user(session, user)
        users.disable(session, clock=container.clock, user=found)
        shown = users.view(session, found)
    _emit(as_json, shown.as_dict(), f"{shown.email} is disabled")


@app.command("password")
def password(
    user: UserArg,
    password: Annotated[
        str | None, typer.Option(help=f"New password (else ${PASSWORD_ENV}, else asked for).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Set a user's password."""
    secret = _password(password, confirm=True)
    with _write(as_json) as (session, _):
        found = users.get_user(session, user)
        users.set_password(session, user=found, password=secret)
        shown = users.view(session, found)
    _emit(as_json, shown.as_dict(), f"password of {shown.email} changed")


@app.command("totp")
def totp(
    user: UserArg,
    disable: Annotated[bool, typer.Option("--disable", help="Turn the second factor off.")] = False,
    qr: Annotated[Path | None, typer.Option(help="Write the enrolment QR code here (SVG).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Turn a user's TOTP second factor on (a new secret, printed once) or off."""
    with _write(as_json) as (session, _):
        found = users.get_user(session, user)
        if disable:
            users.disable_totp(session, user=found)
            data: dict[str, Any] = {"email": found.email, "totp": False}
            human = f"two-step sign-in is off for {found.email}"
        else:
            secret = users.enable_totp(session, user=found)
            uri = users.provisioning_uri_for(found.email, secret)
            if qr is not None:
                qr.write_text(users.qr_svg(uri), encoding="utf-8")
            data = {"email": found.email, "totp": True, "secret": secret, "uri": uri}
            human = f"two-step sign-in is on for {found.email}\nsecret: {secret}\nuri: {uri}" + (
                f"\nQR code written to {qr}" if qr is not None else ""
            )
    _emit(as_json, data, human)
