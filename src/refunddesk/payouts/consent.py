"""Signed links that let a customer choose how a failed refund is paid instead.

An agent (or, later, a notification) sends the customer a link; the link names one refund
of one tenant, is signed with the desk's secret key, and expires. Whoever holds it may pick
store credit or a bank transfer for that refund while it is failed, and nothing else.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from refunddesk.core.errors import NotFound

SALT = "refunddesk.payout-choice"
LINK_DAYS = 14


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=SALT)


def make_token(secret_key: str, *, tenant_id: str, refund_id: str) -> str:
    return _serializer(secret_key).dumps({"t": tenant_id, "r": refund_id})


def expires_at(now: datetime) -> datetime:
    return now + timedelta(days=LINK_DAYS)


def read_token(secret_key: str, token: str) -> tuple[str, str]:
    """(tenant id, refund id) of a valid, unexpired link; NotFound for any other token."""
    try:
        data = _serializer(secret_key).loads(token, max_age=LINK_DAYS * 86400)
    except SignatureExpired as exc:
        raise NotFound("this link has expired; ask the retailer for a new one") from exc
    except BadSignature as exc:
        raise NotFound("this link is not valid") from exc
    if not (
        isinstance(data, dict) and isinstance(data.get("t"), str) and isinstance(data.get("r"), str)
    ):
        raise NotFound("this link is not valid")
    return data["t"], data["r"]
