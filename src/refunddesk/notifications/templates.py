"""Message templates: shipped defaults per language, tenant overrides, sandboxed rendering.

Templates are Jinja2 in a SandboxedEnvironment, because tenants write their own. Dates and
money are formatted with Babel in the customer's locale; money takes its minor-unit
exponent from ISO 4217 (refunddesk.core.money), not from Babel's CLDR digits, so an amount
shows exactly the digits it is stored with.
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from jinja2 import Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup, escape

from refunddesk.core.money import currency_exponent

KINDS = (
    "received",
    "return_needed",
    "return_received",
    "approved",
    "rejected",
    "paid",
    "failed",
    "delayed",
)
SHIPPED_LOCALES = ("en", "de")
FALLBACK_LOCALE = "en"
BRAND_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")

_TEXT = SandboxedEnvironment(autoescape=False, keep_trailing_newline=False)
_HTML = SandboxedEnvironment(autoescape=True)

_LAYOUT = """<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ subject }}</title></head>
<body style="margin:0;padding:0;background:#f4f5f7;font-family:Arial,Helvetica,sans-serif;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0"><tr><td align="center">
<table role="presentation" width="600" cellpadding="0" cellspacing="0"
 style="max-width:600px;background:#ffffff;">
<tr><td style="background:{{ color }};color:#ffffff;padding:16px 24px;font-size:20px;">
<strong>{{ retailer }}</strong></td></tr>
<tr><td style="padding:24px;color:#1f2328;font-size:16px;line-height:1.5;">
{{ content }}
<p><a href="{{ track_url }}" style="color:{{ color }};font-weight:bold;">{{ track }}</a></p>
</td></tr>
<tr><td style="padding:16px 24px;color:#59636e;font-size:12px;">{{ footer }}</td></tr>
</table></td></tr></table></body></html>
"""


class TemplateProblem(ValueError):
    """A template that does not compile or render (a tenant's override, usually)."""


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str
    sms: str


@dataclass(frozen=True, slots=True)
class Override:
    """A tenant's wording for one kind in one locale: email (subject, text, html?) and SMS."""

    subject: str | None = None
    body: str | None = None
    html: str | None = None
    sms: str | None = None


@dataclass(frozen=True, slots=True)
class Branding:
    retailer: str
    brand_color: str = "#1f6feb"


@lru_cache(maxsize=8)
def shipped(locale: str) -> Mapping[str, Any]:
    """The default templates of one shipped locale."""
    text = resources.files("refunddesk.notifications").joinpath(f"defaults/{locale}.toml")
    return tomllib.loads(text.read_text(encoding="utf-8"))


def resolve_locale(wanted: str | None, default: str | None = None) -> str:
    """The shipped locale closest to wanted (de_AT -> de), else default's, else English."""
    for candidate in (wanted, default):
        if not candidate:
            continue
        try:
            parsed = Locale.parse(candidate.replace("-", "_"))
        except (ValueError, UnknownLocaleError):
            continue
        for name in (str(parsed), parsed.language):
            if name in SHIPPED_LOCALES:
                return name
    return FALLBACK_LOCALE


def format_money(minor: int, currency: str, locale: str) -> str:
    """Money in the locale's pattern with exactly the currency's ISO 4217 minor digits."""
    exponent = currency_exponent(currency)
    parsed = Locale.parse(locale)
    pattern = copy.copy(parsed.currency_formats["standard"])
    pattern.frac_prec = (exponent, exponent)
    amount = Decimal(minor).scaleb(-exponent)
    return str(pattern.apply(amount, parsed, currency=currency, currency_digits=False))


def format_day(day: date | None, locale: str) -> str:
    return "" if day is None else str(format_date(day, format="long", locale=locale))


@lru_cache(maxsize=1024)
def _compile(source: str, html: bool) -> Template:
    try:
        return (_HTML if html else _TEXT).from_string(source)
    except TemplateError as exc:
        raise TemplateProblem(f"template does not compile: {exc}") from exc


def _render(source: str, context: Mapping[str, Any], *, html: bool = False) -> str:
    try:
        return _compile(source, html).render(**context).strip()
    except TemplateError as exc:  # includes the sandbox's SecurityError
        raise TemplateProblem(f"template does not render: {exc}") from exc


def _paragraphs(text: str) -> Markup:
    parts = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    return Markup("\n").join(
        Markup('<p style="margin:0 0 16px 0;">{}</p>').format(
            Markup("<br>").join(escape(line) for line in p.splitlines())
        )
        for p in parts
    )


def render(
    kind: str,
    *,
    locale: str,
    context: Mapping[str, Any],
    branding: Branding,
    track_url: str,
    override: Override | None = None,
) -> Rendered:
    """One message of kind in locale: subject, plain text, HTML and SMS text."""
    defaults = shipped(locale)
    base = defaults["kinds"][kind]
    layout = defaults["layout"]
    over = override or Override()
    ctx = {**context, "retailer": branding.retailer, "track_url": track_url}
    subject = " ".join(_render(over.subject or base["subject"], ctx).split())
    body = _render(over.body or base["body"], ctx)
    footer = _render(layout["footer"], ctx)
    text = f"{body}\n\n{layout['track']}: {track_url}\n\n-- \n{footer}\n"
    content = _render(over.html, ctx, html=True) if over.html else _paragraphs(body)
    html = _render(
        _LAYOUT,
        {
            "lang": locale,
            "subject": subject,
            "color": branding.brand_color if BRAND_COLOR.match(branding.brand_color) else "#1f6feb",
            "retailer": branding.retailer,
            "content": Markup(content),  # noqa: S704 - escaped by _paragraphs or the HTML sandbox
            "track_url": track_url,
            "track": layout["track"],
            "footer": footer,
        },
        html=True,
    )
    sms = " ".join(_render(over.sms or base["sms"], ctx).split())
    return Rendered(subject=subject, text=text, html=html, sms=sms)


def words(locale: str, table: str, key: str) -> str:
    """A phrase from a shipped locale's table (methods, next_steps)."""
    entries: Mapping[str, str] = shipped(locale)[table]
    return entries.get(key) or entries.get("original", key)


def join_items(items: Sequence[tuple[str, int]]) -> str:
    return ", ".join(f"{quantity} x {sku}" for sku, quantity in items)
