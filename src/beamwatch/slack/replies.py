"""Block Kit replies, short and readable on a phone.

Slack's limits are kept here: a section's text is at most 3000 characters, a
message at most 50 blocks; longer lists are cut with "… and N more"."""

from __future__ import annotations

from dataclasses import dataclass, field

TEXT_MAX = 3000
EMOJI = {"OK": ":large_green_circle:", "MINOR": ":large_yellow_circle:",
         "MAJOR": ":red_circle:", "INVALID": ":large_purple_circle:"}


@dataclass
class Reply:
    """`public`: in the channel for everyone (changes people should see), else only for
    the asker (answers to questions). `png`: a plot to upload beside it."""

    text: str
    blocks: list[dict] = field(default_factory=list)
    public: bool = False
    png: bytes | None = None
    png_name: str = "plot.png"
    ok: bool = True

    def __post_init__(self) -> None:
        if not self.blocks:
            self.blocks = [section(self.text)]


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": cut(text, TEXT_MAX)}}


def context(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": cut(text, TEXT_MAX)}]}


def header(text: str) -> dict:
    return {"type": "header", "text": {"type": "plain_text", "text": cut(text, 150)}}


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def lines(items: list[str], limit: int = 25, more: str = "") -> str:
    shown = "\n".join(items[:limit])
    if len(items) > limit:
        shown += f"\n… and {len(items) - limit} more{(' ' + more) if more else ''}"
    return shown


def mrkdwn(text: object) -> str:
    """User or PV text shown safely: Slack's three control characters escaped."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def error(message: str, usage: str | None = None) -> Reply:
    text = f":warning: {message}"
    blocks = [section(text)]
    if usage:
        blocks.append(context(usage))
    return Reply(text, blocks, ok=False)
