"""Wire notifications into the container: the send handler, the dispatcher, delay alerts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from refunddesk.jobs.worker import Periodic
from refunddesk.notifications import delays, dispatch
from refunddesk.notifications.channels.base import EmailSender, SmsSender
from refunddesk.notifications.channels.sms import TwilioSender
from refunddesk.notifications.channels.smtp import SmtpSender
from refunddesk.notifications.send import MessageHandler
from refunddesk.settings import Settings

if TYPE_CHECKING:
    from refunddesk.bootstrap import Container


def email_sender(s: Settings) -> EmailSender | None:
    """SMTP from settings; None (email off) without a host."""
    if not s.smtp_host:
        return None
    return SmtpSender(
        host=s.smtp_host,
        port=s.smtp_port,
        sender=s.smtp_from,
        starttls=s.smtp_starttls,
        username=s.smtp_username,
        password=s.smtp_password,
        timeout=s.smtp_timeout_seconds,
        connections=s.smtp_connections,
    )


def sms_sender(s: Settings) -> SmsSender | None:
    """The Twilio-compatible API from settings; None (SMS off) unless all of it is set."""
    if not (s.sms_base_url and s.sms_account_sid and s.sms_auth_token and s.sms_from):
        return None
    return TwilioSender(
        base_url=s.sms_base_url,
        account_sid=s.sms_account_sid,
        auth_token=s.sms_auth_token,
        sender=s.sms_from,
        timeout=s.sms_timeout_seconds,
    )


def dispatch_config(s: Settings, *, email_on: bool, sms_on: bool) -> dispatch.DispatchConfig:
    return dispatch.DispatchConfig(
        email_on=email_on,
        sms_on=sms_on,
        public_url=s.public_url,
        max_attempts=s.job_max_attempts,
        batch_size=s.dispatch_batch_size,
    )


def install(
    container: Container,
    *,
    email: EmailSender | None = None,
    sms: SmsSender | None = None,
) -> None:
    """Add the send_message handler and the two periodic tasks (senders: from settings)."""
    s = container.settings
    email = email or email_sender(s)
    sms = sms or sms_sender(s)
    db, clock = container.db, container.clock
    container.handlers.append(MessageHandler(db=db, clock=clock, email=email, sms=sms))
    config = dispatch_config(s, email_on=email is not None, sms_on=sms is not None)
    container.periodic.append(
        Periodic(
            s.dispatch_interval_seconds,
            lambda: dispatch.run(db=db, clock=clock, config=config),
            "dispatch refund events to customers and retailer webhooks",
        )
    )
    container.periodic.append(
        Periodic(
            s.delay_alert_interval_seconds,
            lambda: delays.alert_delayed(db=db, clock=clock),
            "alert customers of refunds past their expected date",
        )
    )
