"""The channel adapters on their own: STARTTLS + AUTH against aiosmtpd, SMS numbers and segments."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from refunddesk.notifications.channels.base import OutgoingEmail, OutgoingSms, SendFailed, Sent
from refunddesk.notifications.channels.sms import (
    InvalidNumber,
    TwilioSender,
    fit,
    segments,
    to_e164,
)
from refunddesk.notifications.channels.smtp import SmtpSender
from refunddesk.notifications.queries import mask
from refunddesk.notifications.templates import format_money
from refunddesk.payouts.fakes._server import serve_in_thread
from tests.fake_twilio import SID, TOKEN, FakeTwilio
from tests.integration.test_notifications import Inbox, ReservedPort


def _auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"desk", b"s3cret")
    return AuthResult(success=ok)


@pytest.fixture
def tls_inbox() -> Iterator[tuple[Inbox, int, ssl.SSLContext]]:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    handler, reserved = Inbox(), ReservedPort()
    port = reserved.port
    reserved.sock.close()  # released just before the server binds it
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_context,
        require_starttls=True,
        authenticator=_auth,
        auth_require_tls=True,
    )
    controller.start()
    yield handler, port, client_context
    controller.stop()


def _email(to: str = "ada@example.com") -> OutgoingEmail:
    return OutgoingEmail(
        message_id="01JABCDEF",
        to=to,
        subject="Grüße: Ihre Erstattung",
        text="Hallo Ada,\n\nIhre Erstattung über 12,50 € ist unterwegs.",
        html="<p>Hallo Ada</p>",
        sender_name="Kaufhaus Süd",
        reply_to="help@kaufhaus.example",
    )


def test_email_goes_out_over_starttls_with_auth(
    tls_inbox: tuple[Inbox, int, ssl.SSLContext],
) -> None:
    inbox, port, context = tls_inbox
    sender = SmtpSender(
        host="127.0.0.1",
        port=port,
        sender="refunds@desk.example",
        username="desk",
        password="s3cret",
        ssl_context=context,
    )
    [outcome] = sender.send([_email()])
    assert isinstance(outcome, Sent)
    [mail] = inbox.messages
    assert mail["Subject"] == "Grüße: Ihre Erstattung"
    assert mail["Message-ID"] == "<01JABCDEF@desk.example>"
    assert mail["Reply-To"] == "help@kaufhaus.example"
    assert mail.get_content_type() == "multipart/alternative"
    plain = mail.get_body(("plain",))
    assert plain is not None
    assert "12,50 €" in plain.get_content()


def test_a_wrong_password_is_a_failure_to_retry_not_a_crash(
    tls_inbox: tuple[Inbox, int, ssl.SSLContext],
) -> None:
    _, port, context = tls_inbox
    sender = SmtpSender(
        host="127.0.0.1",
        port=port,
        sender="refunds@desk.example",
        username="desk",
        password="wrong",
        ssl_context=context,
    )
    [outcome] = sender.send([_email()])
    assert isinstance(outcome, SendFailed)
    assert not outcome.permanent


def test_phone_numbers_are_normalised_to_e164_or_refused() -> None:
    assert to_e164("+49 151 12345678") == "+4915112345678"
    assert to_e164("0151 12345678", "DE") == "+4915112345678"
    with pytest.raises(InvalidNumber):
        to_e164("0151 12345678")  # national, and no country to read it in
    with pytest.raises(InvalidNumber):
        to_e164("12345", "DE")


def test_sms_segments_count_gsm7_and_ucs2() -> None:
    assert segments("a" * 160).count == 1
    assert segments("a" * 161).count == 2  # 153 septets per part once split
    assert segments("{" * 80).units == 160  # extension characters take two septets
    assert segments("{" * 81).count == 2
    assert segments("ü" * 160).encoding == "GSM-7"  # ü is in the GSM alphabet
    assert segments("ł" * 70).encoding == "UCS-2"
    assert segments("ł" * 70).count == 1
    assert segments("ł" * 71).count == 2  # 67 units per part
    assert segments("😀" * 35).units == 70  # surrogate pairs count twice


def test_a_long_sms_is_cut_to_three_segments() -> None:
    text, counted = fit("word " * 200)
    assert counted.count == 3
    assert text.endswith("...")
    assert segments(text).count == 3


def test_the_fake_twilio_takes_a_message_and_a_500_is_retried() -> None:
    fake = FakeTwilio()
    with serve_in_thread(fake.app()) as url:
        sender = TwilioSender(
            base_url=url, account_sid=SID, auth_token=TOKEN, sender="+15005550006", timeout=5
        )
        sent = sender.send(OutgoingSms("m1", "+4915112345678", "Hallo"))
        assert sent.provider_id is not None
        assert sent.provider_id.startswith("SM")
        assert fake.sent == [{"To": "+4915112345678", "From": "+15005550006", "Body": "Hallo"}]
        fake.fail_with = 503
        with pytest.raises(SendFailed) as failed:
            sender.send(OutgoingSms("m2", "+4915112345678", "Hallo"))
        assert not failed.value.permanent
        fake.fail_with = None
        with pytest.raises(SendFailed) as refused:
            sender.send(OutgoingSms("m3", "0151", "Hallo"))
        assert refused.value.permanent
        sender.close()


def test_money_takes_its_digits_from_iso4217() -> None:
    assert format_money(1250, "EUR", "de") == "12,50\xa0€"
    assert format_money(1250, "JPY", "en") == "¥1,250"
    assert format_money(1250, "BHD", "en") == "BHD1.250"  # three digits, as ISO 4217 says


def test_agents_see_recipients_masked() -> None:
    assert mask("ada@example.com") == "a***@example.com"
    assert mask("+4915112345678") == "+49*******5678"
    assert mask(None) == "—"


def test_a_line_break_in_a_subject_or_name_never_starts_a_new_header() -> None:
    sender = SmtpSender(host="127.0.0.1", port=1, sender="refunds@example.com", starttls=False)
    email = OutgoingEmail(
        message_id="01M813W5BEVDZCARAWRNQT8R6M",
        to="customer@example.com",
        subject="Your refund\r\nBcc: someone@example.com",
        text="Grüße",
        html="<p>Grüße</p>",
        sender_name="Northwind\nX-Injected: 1",
    )
    raw = sender.build(email).as_bytes()
    headers = raw.split(b"\n\n", 1)[0].decode()
    assert "\nBcc:" not in headers
    assert "\nX-Injected:" not in headers
    assert "Subject: Your refund Bcc: someone@example.com" in headers


@pytest.mark.parametrize(
    ("subject", "name"),
    [
        ("Your refund of 17.40 EUR is approved", "Northwind"),
        ("Ihre Erstattung über 17,40 € ist genehmigt — " + "sehr lang " * 12, "Northwind Träders"),
        ("Your refund " * 12, "Plain"),  # ASCII but too long for one line: folded
    ],
    ids=["ascii", "non-ascii-long", "long-ascii"],
)
def test_headers_read_back_as_written_whatever_their_characters(subject: str, name: str) -> None:
    sender = SmtpSender(host="127.0.0.1", port=1, sender="refunds@example.com", starttls=False)
    email = OutgoingEmail(
        message_id="01M813W5BEVDZCARAWRNQT8R6M",
        to="customer@example.com",
        subject=subject,
        text="Grüße\n.\nEnde",
        html="<p>Grüße</p>",
        sender_name=name,
    )
    raw = sender.build(email).as_bytes()
    assert all(len(line) <= 78 for line in raw.split(b"\n\n", 1)[0].split(b"\n"))
    parsed = message_from_bytes(raw, policy=default)
    assert parsed["Subject"].strip() == subject.strip()
    assert parsed["From"].addresses[0].display_name == name
    body = parsed.get_body(("plain",))
    assert body is not None
    assert body.get_content().rstrip("\n") == "Grüße\n.\nEnde"


class _Sessions(Inbox):
    """Counts SMTP sessions, and refuses recipients at refused.example."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: set[object] = set()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        with self.lock:
            self.peers.add(session.peer)
        if address.endswith("@refused.example"):
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_a_batch_is_spread_over_sessions_and_each_outcome_stays_with_its_email() -> None:
    handler, reserved = _Sessions(), ReservedPort()
    controller = reserved.serve(handler)
    try:
        sender = SmtpSender(
            host="127.0.0.1", port=reserved.port, sender="desk@example.com", starttls=False,
            connections=3,
        )  # fmt: skip
        refused = {4, 17, 29}
        emails = [
            _email(f"c{i}@refused.example" if i in refused else f"c{i}@example.com")
            for i in range(35)
        ]
        outcomes = sender.send(emails)
    finally:
        controller.stop()
    assert len(handler.peers) == 3
    assert [i for i, o in enumerate(outcomes) if isinstance(o, SendFailed)] == sorted(refused)
    assert all(o.permanent for o in outcomes if isinstance(o, SendFailed))
    received = sorted(str(m["To"]) for m in handler.messages)
    assert received == sorted(f"c{i}@example.com" for i in range(35) if i not in refused)
