"""SMS through a Twilio-compatible HTTP API; numbers in E.164, segments counted GSM-7/UCS-2."""

from __future__ import annotations

import math
from dataclasses import dataclass

import gsm0338  # type: ignore[import-untyped]  # noqa: F401  (registers the "gsm03.38" codec)
import httpx
import phonenumbers

from refunddesk.notifications.channels.base import OutgoingSms, SendFailed, Sent

MAX_SEGMENTS = 3  # longer texts are cut: an SMS points to the email, it does not replace it
_ELLIPSIS = "..."


class InvalidNumber(ValueError):
    """Not a phone number that can receive an SMS."""


def to_e164(raw: str, region: str | None = None) -> str:
    """The number in E.164 (+4915112345678); raise InvalidNumber with the reason."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidNumber(f"not a phone number: {exc}") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidNumber("not a valid phone number")
    kind = phonenumbers.number_type(number)
    if kind in (phonenumbers.PhoneNumberType.FIXED_LINE,):
        raise InvalidNumber("a landline cannot receive SMS")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True, slots=True)
class Segments:
    encoding: str  # "GSM-7" | "UCS-2"
    units: int  # septets (GSM-7, escapes count twice) or UTF-16 code units (UCS-2)
    count: int


def segments(text: str) -> Segments:
    """How many SMS parts text takes: 160/153 septets in GSM-7, 70/67 units in UCS-2."""
    try:
        units = len(text.encode("gsm03.38"))
        single, multi, encoding = 160, 153, "GSM-7"
    except UnicodeEncodeError:
        units = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    count = 1 if units <= single else math.ceil(units / multi)
    return Segments(encoding, units, max(count, 1))


def fit(text: str, max_segments: int = MAX_SEGMENTS) -> tuple[str, Segments]:
    """Text cut (with an ellipsis) to at most max_segments parts, and its segment count."""
    measured = segments(text)
    if measured.count <= max_segments:
        return text, measured
    words = text.split(" ")
    while len(words) > 1:
        words.pop()
        candidate = " ".join(words).rstrip(",;:") + _ELLIPSIS
        measured = segments(candidate)
        if measured.count <= max_segments:
            return candidate, measured
    cut = text
    while segments(cut + _ELLIPSIS).count > max_segments:
        cut = cut[:-1]
    return cut + _ELLIPSIS, segments(cut + _ELLIPSIS)


class TwilioSender:
    """POST {base}/2010-04-01/Accounts/{sid}/Messages.json with basic auth."""

    def __init__(
        self, *, base_url: str, account_sid: str, auth_token: str, sender: str, timeout: float
    ) -> None:
        self.sender = sender
        self.path = f"/2010-04-01/Accounts/{account_sid}/Messages.json"
        self.client = httpx.Client(
            base_url=base_url.rstrip("/"), auth=(account_sid, auth_token), timeout=timeout
        )

    def send(self, sms: OutgoingSms) -> Sent:
        try:
            response = self.client.post(
                self.path, data={"To": sms.to, "From": self.sender, "Body": sms.body}
            )
        except httpx.HTTPError as exc:
            raise SendFailed(f"SMS API unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code in (200, 201):
            try:
                sid = response.json().get("sid")
            except ValueError:
                sid = None
            return Sent(provider_id=str(sid) if sid else None)
        detail = response.text[:300]
        try:
            body = response.json()
            detail = f"{body.get('code')}: {body.get('message')}"
        except ValueError:
            pass
        retryable = response.status_code == 429 or response.status_code >= 500
        raise SendFailed(f"SMS API {response.status_code} {detail}", permanent=not retryable)

    def close(self) -> None:
        self.client.close()
