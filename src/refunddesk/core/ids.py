"""Opaque ids (ULID) and short customer-facing references."""

from __future__ import annotations

import secrets

from ulid import ULID

# Crockford base32 without I, L, O, U: easy to read aloud and to type from a letter.
_REFERENCE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
REFERENCE_LENGTH = 8


def new_id() -> str:
    """A new time-ordered opaque id (26-character ULID)."""
    return str(ULID())


def new_reference(prefix: str = "RF") -> str:
    """A short random human reference such as ``RF-7K2M9QXA`` (40 bits of randomness)."""
    body = "".join(secrets.choice(_REFERENCE_ALPHABET) for _ in range(REFERENCE_LENGTH))
    return f"{prefix}-{body}"


def normalize_reference(text: str) -> str:
    """Accept what a customer types (lower case, spaces, O for 0) and give the canonical form."""
    cleaned = text.strip().upper().replace(" ", "").replace("O", "0").replace("I", "1")
    cleaned = cleaned.replace("L", "1")
    if "-" not in cleaned and len(cleaned) > 2:
        cleaned = f"{cleaned[:2]}-{cleaned[2:]}"
    return cleaned
