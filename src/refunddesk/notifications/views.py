"""HTTP routes for customers' notification preferences: /v1/customers/{email}/...

Reading needs READ. Setting needs CREATE_REFUNDS: held by the retailer's integration (its
shop or portal, where a customer changes their settings) and by agents and supervisors,
who take "stop texting me" on the phone; finance and client viewers only look.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from refunddesk.api.deps import ContainerDep, PrincipalDep, ReadSession
from refunddesk.auth.domain import Permission
from refunddesk.bootstrap import Container
from refunddesk.notifications import preferences as service

router = APIRouter(prefix="/v1/customers", tags=["notifications"])
Email = Annotated[str, Path(min_length=3, max_length=320, description="the customer's email")]
ChannelName = Literal["email", "sms"]


class NotificationPreferencesPublic(BaseModel):
    email: str
    channels: list[ChannelName] = Field(description="channels the customer hears on")
    opted_out: bool = Field(description="true: no messages at all, on any channel")
    locale: str | None = Field(description="the customer's language, if they chose one")
    effective_locale: str = Field(description="the language messages are written in")


class NotificationPreferencesUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channels: list[ChannelName] = Field(max_length=2)
    opted_out: bool = False
    locale: str | None = Field(
        default=None, max_length=35, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$"
    )


def _public(p: service.Preferences) -> NotificationPreferencesPublic:
    return NotificationPreferencesPublic(
        email=p.email,
        channels=[c for c in ("email", "sms") if c in p.channels],
        opted_out=p.opted_out,
        locale=p.locale,
        effective_locale=p.effective_locale,
    )


@router.get("/{email}/notification-preferences", operation_id="get_notification_preferences")
def get_notification_preferences(
    email: Email, principal: PrincipalDep, session: ReadSession
) -> NotificationPreferencesPublic:
    """Which channels a customer hears on, whether they opted out, and their language."""
    principal.require(Permission.READ)
    tenant_id = principal.require_tenant()
    return _public(service.get_preferences(session, tenant_id=tenant_id, email=email))


@router.put("/{email}/notification-preferences", operation_id="set_notification_preferences")
async def set_notification_preferences(
    email: Email,
    body: NotificationPreferencesUpdate,
    principal: PrincipalDep,
    container: ContainerDep,
) -> NotificationPreferencesPublic:
    """Replace a customer's preferences; transactional messages respect them."""
    principal.require(Permission.CREATE_REFUNDS)
    tenant_id = principal.require_tenant()
    return await run_in_threadpool(_set, container, tenant_id, email, body)


def _set(
    container: Container, tenant_id: str, email: str, body: NotificationPreferencesUpdate
) -> NotificationPreferencesPublic:
    with container.db.write() as session:
        prefs = service.set_preferences(
            session,
            tenant_id=tenant_id,
            email=email,
            channels=set(body.channels),
            opted_out=body.opted_out,
            locale=body.locale,
            now=container.clock.now(),
        )
    return _public(prefs)
