"""What the apps of a sandbox stage sent: the mail sink's Maildir (services.SmtpSink), for
`fab sandbox.mail` and the tests."""

from __future__ import annotations

import mailbox
from dataclasses import dataclass
from email.message import Message
from pathlib import Path


@dataclass(frozen=True)
class Mail:
    key: str
    date: str
    sender: str
    to: str
    subject: str
    body: str


def _body(msg: Message) -> str:
    part = next((p for p in msg.walk() if p.get_content_type() == "text/plain"), None) or \
        next((p for p in msg.walk() if not p.is_multipart()), msg)
    data = part.get_payload(decode=True) or b""
    return data.decode(part.get_content_charset() or "utf-8", errors="replace")


def messages(maildir: Path) -> list[Mail]:
    """Every message kept, oldest first."""
    if not maildir.is_dir():
        return []
    box = mailbox.Maildir(maildir, create=False)
    kept = sorted(box.items(), key=lambda item: item[1].get_date())  # delivered, oldest first
    return [Mail(key, msg.get("Date", ""), msg.get("From") or msg.get("X-MailFrom", ""),
                 msg.get("To") or msg.get("X-RcptTo", ""),
                 msg.get("Subject", ""), _body(msg)) for key, msg in kept]
