"""Pure rules of retailer webhooks: secrets, event filters and which URLs may be called."""

from __future__ import annotations

import base64
import ipaddress
import re
import secrets
import socket
from collections.abc import Sequence
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from refunddesk.core.errors import Invalid

# The Standard Webhooks secret format: whsec_ + base64 of the key (a prefix, not a secret).
SECRET_PREFIX = "whsec_"  # noqa: S105
SECRET_BYTES = 32
TEST_EVENT = "webhook.test"
ENDPOINT_DISABLED_EVENT = "webhook.endpoint_disabled"
# The families of events an endpoint may subscribe to; refund events plus our own notices.
EVENT_FAMILIES = ("refund", "payout", "return", "webhook", "escalation")
_PATTERN = re.compile(r"^(\*|[a-z][a-z_]*(\.([a-z][a-z_]*|\*))+|[a-z][a-z_]*\.\*)$")
MAX_FILTERS = 50
MAX_URL_LENGTH = 2000
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa")


def new_secret() -> str:
    """A new signing secret in the Standard Webhooks format."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_hint(secret: str) -> str:
    """What lists show of a secret: enough to tell two apart, never enough to sign."""
    return secret[: len(SECRET_PREFIX) + 4] + "..."


def check_event_types(patterns: Sequence[str]) -> list[str]:
    """Validate an endpoint's filter (types, or patterns with *); return it deduplicated."""
    if len(patterns) > MAX_FILTERS:
        raise Invalid(f"at most {MAX_FILTERS} event types", field="event_types")
    seen: list[str] = []
    for index, pattern in enumerate(patterns):
        if not _PATTERN.match(pattern) or (
            pattern != "*" and pattern.split(".", 1)[0] not in EVENT_FAMILIES
        ):
            raise Invalid(
                f"{pattern!r} is not an event type: use e.g. refund.status_changed, payout.* "
                f"or *; families: {', '.join(EVENT_FAMILIES)}",
                field=f"event_types[{index}]",
            )
        if pattern not in seen:
            seen.append(pattern)
    return seen


def matches(patterns: Sequence[str], event_type: str) -> bool:
    """Whether an endpoint with these filters hears of event_type (no filters: every event)."""
    # Patterns were validated to hold only letters, dots, underscores and *.
    return not patterns or any(fnmatchcase(event_type, p) for p in patterns)


def _refused_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def check_url(url: str, *, allow_private: bool) -> str:
    """An http(s) URL that does not point inside our network (unless allowed); else Invalid.

    Names are checked without DNS here; the sender resolves them and checks every address
    again before each call, which is where a name that points inside is caught.
    """
    if len(url) > MAX_URL_LENGTH:
        raise Invalid(f"a URL of at most {MAX_URL_LENGTH} characters", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Invalid(f"not a URL: {exc}", field="url") from exc
    if parts.scheme not in ("http", "https"):
        raise Invalid("the URL must start with http:// or https://", field="url")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host or any(c.isspace() for c in url):
        raise Invalid("the URL needs a host name and no spaces", field="url")
    if port == 0:
        raise Invalid("port 0 cannot be called", field="url")
    if allow_private:
        return url
    if host in _LOCAL_NAMES or host.endswith(_LOCAL_SUFFIXES):
        raise Invalid(f"{host} is a local name; webhooks go to public addresses", field="url")
    try:
        refused = _refused_address(host)
    except ValueError:  # a name, not an address
        return url
    if refused:
        raise Invalid(
            f"{host} is a private, loopback or reserved address; webhooks go to public ones",
            field="url",
        )
    return url


def refused_destination(url: str) -> str | None:
    """Resolve the URL's host; the reason to refuse the call if any address is not public."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"cannot resolve {host}: {exc}"
    for info in infos:
        address = str(info[4][0])
        if _refused_address(address):
            return f"{host} resolves to {address}, a private, loopback or reserved address"
    return None
