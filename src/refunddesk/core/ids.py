"""Opaque ids (ULID) and short customer-facing references."""

from __future__ import annotations

import os
import secrets
import time

# Crockford base32 without I, L, O, U: easy to read aloud and to type from a letter.
_REFERENCE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
REFERENCE_LENGTH = 8


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Every 10-bit value as its two Crockford digits: a ULID's 130 bits are 13 lookups.
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)
_SHIFTS = tuple(range(120, -10, -10))


def new_id() -> str:
    """A new time-ordered opaque id: a ULID (48-bit milliseconds, 80 random bits).

    Encoded here rather than with python-ulid's ULID(), which costs about 10 µs an id; the
    hot paths make several ids per refund.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in _SHIFTS])


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
