"""Customer preferences: which channels a customer hears on, whether at all, in which language."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from babel import Locale, UnknownLocaleError
from sqlalchemy.orm import Session

from refunddesk.core.errors import Invalid
from refunddesk.notifications.orm import CustomerPreference, NotificationSettings
from refunddesk.notifications.templates import resolve_locale
from refunddesk.payouts.store_credit import normalize_email

CHANNELS = ("email", "sms")


@dataclass(frozen=True, slots=True)
class Preferences:
    email: str
    channels: list[str]
    opted_out: bool
    locale: str | None  # the customer's own choice
    effective_locale: str  # what messages are written in: theirs, else the retailer's default


def customer_key(email: str) -> str:
    """The email preferences are stored under; never raises (a bad address keys as typed)."""
    try:
        return normalize_email(email)
    except Invalid:
        return email.strip().lower()


def check_locale(locale: str) -> str:
    """A BCP 47 / CLDR locale Babel knows (de, de-AT, pt_BR), in CLDR form."""
    try:
        return str(Locale.parse(locale.replace("-", "_")))
    except (ValueError, UnknownLocaleError) as exc:
        raise Invalid(f"{locale!r} is not a known locale", field="locale") from exc


def _public(
    email: str, pref: CustomerPreference | None, tenant: NotificationSettings | None
) -> Preferences:
    default = tenant.default_locale if tenant else None
    if pref is None:
        return Preferences(email, list(CHANNELS), False, None, resolve_locale(None, default))
    channels = [c for c, on in (("email", pref.email_enabled), ("sms", pref.sms_enabled)) if on]
    return Preferences(
        email, channels, pref.opted_out, pref.locale, resolve_locale(pref.locale, default)
    )


def get_preferences(session: Session, *, tenant_id: str, email: str) -> Preferences:
    """A customer's preferences; the defaults (every channel, tenant language) if none set."""
    key = normalize_email(email)
    return _public(
        key,
        session.get(CustomerPreference, (tenant_id, key)),
        session.get(NotificationSettings, tenant_id),
    )


def set_preferences(
    session: Session,
    *,
    tenant_id: str,
    email: str,
    channels: Collection[str],
    opted_out: bool,
    locale: str | None,
    now: datetime,
) -> Preferences:
    """Replace a customer's preferences."""
    key = normalize_email(email)
    unknown = set(channels) - set(CHANNELS)
    if unknown:
        raise Invalid(f"unknown channels: {', '.join(sorted(unknown))}", field="channels")
    checked = check_locale(locale) if locale else None
    pref = session.get(CustomerPreference, (tenant_id, key), with_for_update=True)
    if pref is None:
        pref = CustomerPreference(tenant_id=tenant_id, email=key)
        session.add(pref)
    pref.email_enabled = "email" in channels
    pref.sms_enabled = "sms" in channels
    pref.opted_out = opted_out
    pref.locale = checked
    pref.updated_at = now
    session.flush()
    return _public(key, pref, session.get(NotificationSettings, tenant_id))
