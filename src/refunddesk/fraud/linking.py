"""Identity linking: normalise emails and addresses, hash identity signals, store them per order.

Each order leaves a few rows in fraud_identity_keys (one per signal it carries). Orders of
different customers that share a key are linked; a refund's cluster is then found with two
indexed lookups (its order's keys, the customers holding them), never a scan.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from refunddesk.db.base import table_of
from refunddesk.fraud.orm import IdentityKey


class LinkKind(StrEnum):
    """The signals that link customers, with how a reason names them."""

    EMAIL = "email"  # the same mailbox once dots and plus-tags are removed
    ACCOUNT = "account"  # the retailer's customer id
    ADDRESS = "address"  # a shipping or billing address, canonicalised
    DEVICE = "device"
    PAYMENT = "payment"  # the payment fingerprint (hashed card or account)

    @property
    def phrase(self) -> str:
        return _PHRASES[self]


_PHRASES = {
    LinkKind.EMAIL: "sharing this email address pattern",
    LinkKind.ACCOUNT: "sharing this customer account",
    LinkKind.ADDRESS: "sharing this address",
    LinkKind.DEVICE: "sharing this device",
    LinkKind.PAYMENT: "sharing this payment card or account",
}

# Providers that deliver mail for a.b.c@ to abc@; the domain itself is canonicalised too.
_DOMAIN_ALIASES = {"googlemail.com": "gmail.com"}


def normalise_email(email: str) -> str:
    """The mailbox an address delivers to: lower case, no plus-tag, no dots in the local part.

    Dots are dropped for every domain: for linking, j.o.h.n@x and john@x are one pattern even
    where the provider would deliver them apart.
    """
    local, _, domain = email.strip().lower().rpartition("@")
    if not local:
        return email.strip().lower()
    local = local.split("+", 1)[0].replace(".", "")
    domain = _DOMAIN_ALIASES.get(domain, domain)
    return f"{local}@{domain}"


# Street words and unit markers written many ways, reduced to one spelling each.
_WORDS = {
    "street": "st",
    "str": "st",
    "strasse": "st",
    "straße": "st",
    "avenue": "ave",
    "av": "ave",
    "road": "rd",
    "drive": "dr",
    "lane": "ln",
    "boulevard": "blvd",
    "place": "pl",
    "court": "ct",
    "square": "sq",
    "terrace": "ter",
    "highway": "hwy",
    "north": "n",
    "south": "s",
    "east": "e",
    "west": "w",
    "apartment": "unit",
    "apt": "unit",
    "flat": "unit",
    "suite": "unit",
    "ste": "unit",
    "no": "",
    "number": "",
}
_NON_WORD = re.compile(r"[^0-9a-z]+")


def _words(text: str) -> list[str]:
    # Accents off (Straße -> strasse, Müller -> muller), punctuation to spaces.
    text = text.replace("ß", "ss").replace("#", " unit ")
    folded = unicodedata.normalize("NFKD", text.lower())
    ascii_only = "".join(c for c in folded if not unicodedata.combining(c))
    out: list[str] = []
    for word in _NON_WORD.split(ascii_only):
        mapped = _WORDS.get(word, word)
        if mapped:
            out.append(mapped)
    # "unit 4" and "4" after the street are the same flat; keep the number, drop the word.
    return [w for w in out if w != "unit"]


def canonical_address(address: Mapping[str, Any] | None) -> str | None:
    """One spelling for one place: country, postal code, street and unit, case and punctuation
    folded, common abbreviations unified. None when there is no street line."""
    if not address:
        return None
    line1 = str(address.get("line1") or "")
    line2 = str(address.get("line2") or "")
    street = _words(f"{line1} {line2}")
    if not street:
        return None
    country = str(address.get("country") or "").strip().upper()
    postal = re.sub(r"\s+", "", str(address.get("postal_code") or "")).upper()
    city = "" if postal else " ".join(_words(str(address.get("city") or "")))
    return "|".join((country, postal or city, " ".join(street)))


def key_hash(kind: LinkKind, value: str) -> str:
    """The stored form of an identity value: hashed, so the table holds no personal data."""
    return hashlib.blake2b(f"{kind}:{value}".encode(), digest_size=16).hexdigest()


@lru_cache(maxsize=65_536)  # batches hash the same customers' emails again and again
def customer_key(email: str) -> str:
    """Who placed an order, as linking counts customers: the lower-cased email, hashed."""
    return hashlib.blake2b(f"customer:{email.strip().lower()}".encode(), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class OrderIdentity:
    """An order's identity signals as fraud reads them (any may be missing)."""

    email: str
    customer_ref: str | None = None
    shipping_address: Mapping[str, Any] | None = None
    billing_address: Mapping[str, Any] | None = None
    device_id: str | None = None
    payment_fingerprint: str | None = None


def identity_keys(identity: OrderIdentity) -> dict[str, LinkKind]:
    """key_hash -> kind for every signal the order carries (two addresses may share a key)."""
    keys: dict[str, LinkKind] = {}

    def add(kind: LinkKind, value: str | None) -> None:
        if value is not None and value.strip():
            keys.setdefault(key_hash(kind, value.strip()), kind)

    add(LinkKind.EMAIL, normalise_email(identity.email))
    add(LinkKind.ACCOUNT, identity.customer_ref)
    add(LinkKind.ADDRESS, canonical_address(identity.shipping_address))
    add(LinkKind.ADDRESS, canonical_address(identity.billing_address))
    add(LinkKind.DEVICE, identity.device_id)
    add(LinkKind.PAYMENT, identity.payment_fingerprint)
    return keys


def identity_of(order: Any) -> OrderIdentity:
    """The identity signals of an order row or ORM object."""
    return OrderIdentity(
        email=order.customer_email,
        customer_ref=order.customer_ref,
        shipping_address=order.shipping_address,
        billing_address=order.billing_address,
        device_id=order.device_id,
        payment_fingerprint=order.payment_fingerprint,
    )


def key_rows(order: Any, *, now: datetime) -> list[dict[str, Any]]:
    """The fraud_identity_keys rows for one order (ORM object or row)."""
    owner = customer_key(order.customer_email)
    return [
        {
            "tenant_id": order.tenant_id,
            "key_hash": digest,
            "order_id": order.id,
            "kind": str(kind),
            "customer_key": owner,
            "created_at": now,
        }
        for digest, kind in identity_keys(identity_of(order)).items()
    ]


def record_orders(session: Session, orders: Iterable[Any], *, now: datetime) -> None:
    """Write the identity keys of newly stored orders (same transaction as the orders)."""
    rows = [row for order in orders for row in key_rows(order, now=now)]
    if rows:
        session.execute(insert(table_of(IdentityKey)), rows)
