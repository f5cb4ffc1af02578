"""The ports: what the send job needs from an email or SMS provider."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class SendFailed(Exception):
    """A provider did not take a message; permanent: trying again cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class Sent:
    provider_id: str | None = None


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    message_id: str  # ours; becomes the Message-ID header, so receivers can drop a resend
    to: str
    subject: str
    text: str
    html: str
    sender_name: str
    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class OutgoingSms:
    message_id: str
    to: str  # E.164
    body: str


class EmailSender(Protocol):
    def send(self, emails: Sequence[OutgoingEmail]) -> list[Sent | SendFailed]:
        """Send a batch (one connection); an outcome per email, in order."""
        ...


class SmsSender(Protocol):
    def send(self, sms: OutgoingSms) -> Sent:
        """Send one SMS; raise SendFailed."""
        ...
