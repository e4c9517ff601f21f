"""The sandbox's mail sink: sandbox stages point the app's SMTP_ADDRESS/SMTP_PORT at it, and
what it kept (a Maildir, as aiosmtpd's Mailbox handler writes it) is read back in order."""

from __future__ import annotations

import mailbox
import os
import time
from email.message import EmailMessage

from railsfab import appenv
from railsfab.inventory import load
from railsfab.sandbox.mail import messages
from tests.conftest import ROOT


def test_sandbox_stages_send_mail_to_the_sink_and_real_stages_do_not():
    inv = load(ROOT / "hosts.yaml")
    env = appenv.app_env(inv, {"SECRET_KEY_BASE": "k"})
    assert env["SMTP_ADDRESS"] == inv.stage.sandbox.gateway and env["SMTP_PORT"] == "2525"


def test_the_kept_mail_is_read_oldest_first(tmp_path):
    box = mailbox.Maildir(tmp_path / "mail")
    for i, subject in enumerate(("Welcome to Notes", "Reset your password")):
        m = EmailMessage()
        m["From"], m["To"], m["Subject"] = "notes@example.com", "ann@example.com", subject
        m.set_content(f"Hello Ann ({i})")
        key = box.add(mailbox.MaildirMessage(m))
        path = tmp_path / "mail" / "new" / key
        os.utime(path, (time.time() - 100 + i, time.time() - 100 + i))
    got = messages(tmp_path / "mail")
    assert [(m.subject, m.to, m.body.strip()) for m in got] == [
        ("Welcome to Notes", "ann@example.com", "Hello Ann (0)"),
        ("Reset your password", "ann@example.com", "Hello Ann (1)")]
    assert messages(tmp_path / "none") == []
