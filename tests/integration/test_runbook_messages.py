"""A check's description and runbook reach people: the webhook body and the email that
real local peers receive, for a count-in-window alarm driven through the whole App."""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from support.timeline import Timeline

RUNBOOK = ("Guidance: Check the LN2 flow on the DCM cryocooler\n"
           "Display: Optics > DCM (BL04I-OP-DCM-01.bob)")

CONFIG = """
beamline: I04
storage: {url: "sqlite:///{db}"}
channels:
  hook: {kind: webhook, webhook_url: "{hook}hook"}
  mail: {kind: email, smtp_host: 127.0.0.1, smtp_port: SMTP_PORT, sender: bw@i04.example.org,
         to: [ops@example.org]}
routes:
  - to: [channel:hook, channel:mail]
checks:
  - id: dcm-temp
    pv: BL04I-MO-DCM-01:TEMP1
    above: {major: 140}
    for: 30s
    count: {times: 3, within: 60s}
    description: Second crystal of the DCM
    runbook: |
      Guidance: Check the LN2 flow on the DCM cryocooler
      Display: Optics > DCM (BL04I-OP-DCM-01.bob)
"""


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.messages.append(email.message_from_bytes(envelope.original_content,
                                                      policy=email.policy.default))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with socket.socket() as s:  # aiosmtpd cannot report a port it picked itself
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def test_three_short_spikes_in_a_minute_page_once_with_the_runbook(
        tmp_path, httpserver, smtp):
    inbox, port = smtp
    tl = Timeline(tmp_path, CONFIG.replace("SMTP_PORT", str(port)), httpserver)
    async with tl:
        for start in (0, 10, 20):  # 2 s spikes: each far shorter than for: 30s
            await tl.run_until(start)
            tl.set("BL04I-MO-DCM-01:TEMP1", 150.0)
            await tl.run_until(start + 2)
            tl.set("BL04I-MO-DCM-01:TEMP1", 100.0)
        await tl.run_until(40)
        [page] = tl.messages()
        assert page.body["kind"] == "alarm" and 20 <= page.t <= 21  # at the 3rd spike
        assert page.body["runbook"] == RUNBOOK + "\n"
        assert page.body["description"] == "Second crystal of the DCM"
        assert "Check the LN2 flow on the DCM cryocooler" in page.body["text"]
        [mail] = inbox.messages
        text = mail.get_body(("plain",)).get_content()
        html = mail.get_body(("html",)).get_content()
        assert "About:     Second crystal of the DCM" in text
        assert "What to do:\nGuidance: Check the LN2 flow" in text.replace("\r\n", "\n")
        assert "Display: Optics &gt; DCM (BL04I-OP-DCM-01.bob)" in html
