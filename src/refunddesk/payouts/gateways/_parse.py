"""Reading what gateways send: lenient about shape, never raising on a stray value."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx


def text(value: object) -> str | None:
    """A non-empty string, or None."""
    return value if isinstance(value, str) and value else None


def timestamp(value: object) -> datetime | None:
    """An ISO 8601 time with its offset (a trailing Z too), or None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or {} for anything else."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
