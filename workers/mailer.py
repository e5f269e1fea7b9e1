"""Plain-text e-mail through the SMTP server named by `CVCO_SMTP_URL` (smtp:// or smtps://user:pass@host:port)."""

from __future__ import annotations

from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib

from schemas.settings import Settings

SMTP_TIMEOUT_S = 5.0

MAIL_ERRORS: tuple[type[BaseException], ...] = (aiosmtplib.SMTPException, OSError, TimeoutError)
"""What a failed delivery raises; the caller keeps the mail and tries again later."""


def mail_enabled(settings: Settings) -> bool:
    """Mails go out only with both a server and recipients; otherwise alerts are logged only."""
    return settings.smtp_url is not None and bool(settings.alert_to)


async def send_mail(settings: Settings, subject: str, body: str) -> None:
    """Send one plain-text mail to `settings.alert_to`; raises one of `MAIL_ERRORS` on failure."""
    if settings.smtp_url is None:
        raise ValueError("send_mail needs CVCO_SMTP_URL")
    url = urlsplit(settings.smtp_url.get_secret_value())
    implicit_tls = url.scheme == "smtps"
    message = EmailMessage()
    message["From"] = settings.alert_from
    message["To"] = ", ".join(settings.alert_to)
    message["Subject"] = subject
    message.set_content(body)
    await aiosmtplib.send(
        message,
        hostname=url.hostname or "localhost",
        port=url.port or (465 if implicit_tls else 25),
        username=unquote(url.username) if url.username else None,
        password=unquote(url.password) if url.password else None,
        use_tls=implicit_tls,
        timeout=SMTP_TIMEOUT_S,
    )
