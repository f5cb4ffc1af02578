"""Failed sign-ins are limited per account and per client IP (moving windows, `limits`)."""

from __future__ import annotations

import hashlib
import logging
import math
import time

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

log = logging.getLogger(__name__)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:32]


class LoginThrottle:
    """Counts failures only: a right password after a few typos still signs in."""

    def __init__(self, storage_uri: str, per_account: str, per_ip: str) -> None:
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))
        self._limits: dict[str, list[RateLimitItem]] = {
            "account": parse_many(per_account),
            "ip": parse_many(per_ip),
        }

    def _keys(self, account: str, ip: str) -> list[tuple[str, str]]:
        return [("account", _digest(account.strip().lower())), ("ip", _digest(ip))]

    def wait_seconds(self, *, account: str, ip: str) -> int | None:
        """None when another attempt is allowed, else seconds until one is."""
        try:
            for kind, key in self._keys(account, ip):
                for item in self._limits[kind]:
                    if not self._limiter.test(item, "login", kind, key):
                        stats = self._limiter.get_window_stats(item, "login", kind, key)
                        return max(1, math.ceil(stats.reset_time - time.time()))
        except Exception:  # the shared store is down: let people work rather than lock all out
            log.exception("login throttle store unavailable; attempt allowed")
        return None

    def failed(self, *, account: str, ip: str) -> None:
        try:
            for kind, key in self._keys(account, ip):
                for item in self._limits[kind]:
                    self._limiter.hit(item, "login", kind, key)
        except Exception:
            log.exception("login throttle store unavailable; failure not counted")
