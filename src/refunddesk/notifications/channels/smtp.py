"""Email over SMTP (stdlib smtplib): HTML + plain text, STARTTLS and AUTH from settings.

smtplib rather than aiosmtplib: the worker runs handlers in threads, and a batch is spread
over a few sessions on threads of the sender's own, which overlap their waits as well.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from email.charset import BASE64, QP, Charset
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.policy import Compat32
from email.utils import formataddr, formatdate
from typing import Any

from refunddesk.core.ids import new_id
from refunddesk.notifications.channels.base import OutgoingEmail, SendFailed, Sent

# A batch opens another session per this many messages, up to the sender's connections.
_PER_SESSION = 10
# UTF-8 bodies and headers as quoted-printable: readable where mostly ASCII, as mail is.
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP
_UTF8_QP.header_encoding = QP


class _Policy(Compat32):
    """compat32, with two shortcuts for the headers we write (one line each, from our code).

    compat32 folds every header through email.header.Header, the largest part of sending an
    email: a short ASCII header comes out of it unchanged, so it is written as it is; a
    non-ASCII one is encoded as base64 words, which Header splits in a quarter of the time
    it takes for quoted-printable ones (which it also tries, to pick the shorter).
    """

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        if isinstance(value, str) and "\n" not in value and "\r" not in value:
            if value.isascii():
                if len(name) + len(value) + 2 <= (self.max_line_length or 78):
                    return f"{name}: {value}{self.linesep}"
            elif _encodable(value):
                value = Header(value, _UTF8_B64, header_name=name)
        folded: str = super()._fold(name, value, sanitize)  # type: ignore[misc]
        return folded


def _encodable(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:  # lone surrogates: compat32 knows what to do with them
        return False
    return True


_UTF8_B64 = Charset("utf-8")
_UTF8_B64.header_encoding = BASE64
_POLICY = _Policy()


class SmtpSender:
    """Sends each batch through one SMTP session."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        starttls: bool = True,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        connections: int = 1,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.starttls, self.username, self.password = starttls, username, password
        self.timeout = timeout
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.connections = connections
        self._pool = ThreadPoolExecutor(max_workers=connections, thread_name_prefix="smtp")

    def build(self, email: OutgoingEmail) -> MIMEMultipart:
        """The MIME message: multipart/alternative, plain text first, then HTML.

        Built with the email package's compat32 classes: EmailMessage under the default
        policy costs about 2.5 ms a message to build and flatten, these under 1 ms, and
        the sending worker does little else per email.
        """
        # A boundary of our own: the generator would otherwise compile a regular expression
        # per message to check its random one. "=_" never occurs in quoted-printable text.
        msg = MIMEMultipart("alternative", boundary=f"=_{new_id()}", policy=_POLICY)
        msg["From"] = formataddr((_one_line(email.sender_name), self.sender))
        msg["To"] = _one_line(email.to)
        msg["Subject"] = _one_line(email.subject)
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        domain = self.sender.rpartition("@")[2] or "refunddesk.invalid"
        msg["Message-ID"] = f"<{email.message_id}@{domain}>"
        if email.reply_to:
            msg["Reply-To"] = _one_line(email.reply_to)
        msg.attach(_text_part(email.text, "plain"))
        msg.attach(_text_part(email.html, "html"))
        return msg

    def _connect(self) -> smtplib.SMTP:
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            smtp.ehlo()
            if self.starttls:
                smtp.starttls(context=self.ssl_context)
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, emails: Sequence[OutgoingEmail]) -> list[Sent | SendFailed]:
        """Send a batch, spread over up to `connections` SMTP sessions side by side.

        Each message waits for four replies (MAIL, RCPT, DATA, the data's end); one session
        would leave both this process and the server idle between them.
        """
        sessions = min(self.connections, -(-len(emails) // _PER_SESSION))
        if sessions <= 1:
            return self._session(emails)
        chunks = [emails[i::sessions] for i in range(sessions)]
        outcomes: list[Sent | SendFailed | None] = [None] * len(emails)
        for i, sent in enumerate(self._pool.map(self._session, chunks)):
            outcomes[i::sessions] = sent
        return [o for o in outcomes if o is not None]

    def _session(self, emails: Sequence[OutgoingEmail]) -> list[Sent | SendFailed]:
        if not emails:
            return []
        try:
            smtp = self._connect()
        except (OSError, smtplib.SMTPException) as exc:
            failed = SendFailed(f"SMTP {self.host}:{self.port}: {_describe(exc)}")
            return [failed for _ in emails]
        outcomes: list[Sent | SendFailed] = []
        try:
            for email in emails:
                outcomes.append(self._send_one(smtp, email))
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
        return outcomes

    def _send_one(self, smtp: smtplib.SMTP, email: OutgoingEmail) -> Sent | SendFailed:
        msg = self.build(email)
        try:
            refused = smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            return SendFailed(_describe(exc), permanent=all(c >= 500 for c in codes))
        except smtplib.SMTPResponseException as exc:
            # 5xx on the data: the server will never take this message; 4xx: try later.
            permanent = exc.smtp_code >= 500 and not isinstance(
                exc, smtplib.SMTPSenderRefused | smtplib.SMTPAuthenticationError
            )
            return SendFailed(_describe(exc), permanent=permanent)
        except (OSError, smtplib.SMTPException) as exc:
            return SendFailed(_describe(exc))
        if refused:
            return SendFailed(f"refused: {refused}", permanent=True)
        return Sent(provider_id=str(msg["Message-ID"]))


def _text_part(body: str, subtype: str) -> MIMENonMultipart:
    """A text/<subtype> part in UTF-8, quoted-printable (what MIMEText does, typed)."""
    part = MIMENonMultipart("text", subtype, policy=_POLICY)
    part.set_payload(body, _UTF8_QP)
    return part


def _one_line(value: str) -> str:
    """A header value on one line: a line break in a subject or name starts no new header."""
    return " ".join(value.split()) if "\n" in value or "\r" in value else value


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        error = exc.smtp_error
        text = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
        return f"{exc.smtp_code} {text}"
    return f"{type(exc).__name__}: {exc}"
