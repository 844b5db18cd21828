"""E-mail over SMTP (smtplib in a worker thread).

Every mail gets a Message-ID derived from the sending step's idempotency key: the handlers
record it in `notifications` in the step's transaction and look it up before sending, and a
receiving system can discard a duplicate by it. (A mail is a side effect outside the database:
if the worker dies after the server accepted the mail and before the hand-off commits, the
retry sends it again under the same Message-ID.)

Outcomes: the server accepted the mail; `MailTemporaryFailure` (4xx answers, connection
errors, timeouts: retried by the step's policy); `MailRejected` (5xx answers: permanent).
"""

from __future__ import annotations

import asyncio
import re
import smtplib
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate

from pipelines.handlers.config import SmtpSettings

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class MailTemporaryFailure(Exception):
    """The mail was not sent; trying again later may succeed."""


class MailRejected(Exception):
    """The server refused the mail permanently (5xx)."""


def message_id(key: str, sender: str) -> str:
    """A Message-ID that is the same for every attempt of one step: `<key@sender-domain>`."""
    domain = sender.rpartition("@")[2] or "localhost"
    local = _UNSAFE.sub(".", key).strip(".") or "message"
    return f"<{local}@{_UNSAFE.sub('.', domain)}>"


def build(
    *,
    sender: str,
    recipients: Sequence[str],
    subject: str,
    body: str,
    msg_id: str,
    attachments: Sequence[tuple[str, str, str]] = (),
) -> EmailMessage:
    """A text mail; `attachments` are (filename, MIME type, text content)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = msg_id
    message.set_content(body)
    for filename, mime, content in attachments:
        maintype, _, subtype = mime.partition("/")
        message.add_attachment(
            content.encode("utf-8"), maintype=maintype, subtype=subtype, filename=filename
        )
    return message


def _classify(code: int, text: str) -> Exception:
    if 500 <= code < 600:
        return MailRejected(f"SMTP server refused the mail: {code} {text}")
    return MailTemporaryFailure(f"SMTP server deferred the mail: {code} {text}")


def _reply_text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def send(settings: SmtpSettings, message: EmailMessage) -> dict[str, str]:
    """Deliver `message` to the SMTP server (blocking); returns the recipients it refused
    while accepting others ({address: reply})."""
    try:
        with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout) as smtp:
            if settings.starttls:
                smtp.starttls()
            if settings.user:
                smtp.login(settings.user, settings.password or "")
            refused = smtp.send_message(message)
            return {
                address: f"{code} {_reply_text(text)}" for address, (code, text) in refused.items()
            }
    except smtplib.SMTPRecipientsRefused as exc:
        # Every recipient was refused: permanent if any refusal was permanent.
        codes = [code for code, _ in exc.recipients.values()]
        first = next(iter(exc.recipients.values()))
        raise _classify(max(codes), _reply_text(first[1])) from None
    except smtplib.SMTPResponseException as exc:
        raise _classify(exc.smtp_code, _reply_text(exc.smtp_error)) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise MailRejected(f"SMTP server does not support what is configured: {exc}") from None
    except (smtplib.SMTPException, OSError) as exc:
        where = f"{settings.host}:{settings.port}"
        raise MailTemporaryFailure(f"SMTP {where}: {type(exc).__name__}: {exc}") from None


async def send_async(settings: SmtpSettings, message: EmailMessage) -> dict[str, str]:
    """`send` in a worker thread."""
    return await asyncio.to_thread(send, settings, message)
