"""Opaque ids (ULID) and short customer-facing references."""

from __future__ import annotations

import os
import threading
import time

# Crockford base32 without I, L, O, U: easy to read aloud and to type from a letter.
_REFERENCE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
REFERENCE_LENGTH = 8


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Every 10-bit value as its two Crockford digits: a ULID's 130 bits are 13 lookups.
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)
_SHIFTS = tuple(range(120, -10, -10))


# Random bits from os.urandom, read 4 KB at a time per thread: os.urandom lets go of the GIL
# for its system call, and a worker thread making an id then queues behind every other
# thread to get it back. One call per 400 ids instead of one per id. A forked child starts
# with empty buffers, never its parent's.
_BUFFER_BYTES = 10 * 410
_local = threading.local()


def _forget_buffers() -> None:
    global _local
    _local = threading.local()


os.register_at_fork(after_in_child=_forget_buffers)


def _random80() -> int:
    local = _local
    buffer: bytes = getattr(local, "buffer", b"")
    pos: int = getattr(local, "pos", 0)
    if pos + 10 > len(buffer):
        buffer, pos = os.urandom(_BUFFER_BYTES), 0
        local.buffer = buffer
    local.pos = pos + 10
    return int.from_bytes(buffer[pos : pos + 10], "big")


def new_id() -> str:
    """A new time-ordered opaque id: a ULID (48-bit milliseconds, 80 random bits).

    Encoded here rather than with python-ulid's ULID(), which costs about 10 µs an id; the
    hot paths make several ids per refund.
    """
    value = (time.time_ns() // 1_000_000) << 80 | _random80()
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in _SHIFTS])


def new_reference(prefix: str = "RF") -> str:
    """A short random human reference such as ``RF-7K2M9QXA`` (40 bits of randomness)."""
    bits = _random80() >> 40  # 8 characters of 5 bits, from the same buffered random bits
    body = "".join([_REFERENCE_ALPHABET[(bits >> s) & 31] for s in _REFERENCE_SHIFTS])
    return f"{prefix}-{body}"


_REFERENCE_SHIFTS = tuple(range(5 * (REFERENCE_LENGTH - 1), -5, -5))


def normalize_reference(text: str) -> str:
    """Accept what a customer types (lower case, spaces, O for 0) and give the canonical form."""
    cleaned = text.strip().upper().replace(" ", "").replace("O", "0").replace("I", "1")
    cleaned = cleaned.replace("L", "1")
    if "-" not in cleaned and len(cleaned) > 2:
        cleaned = f"{cleaned[:2]}-{cleaned[2:]}"
    return cleaned
