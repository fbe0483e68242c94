"""The Slack bot: ask the beamline, acknowledge and silence from the alert, manage
your own notifications and on-call from chat. A front end like the CLI: it goes
through the service layer (`api/`) for everything.

- `grammar.py`: what people type -> a Request (pure);
- `roles.py`: who may do what (viewer < operator < admin; self-service);
- `commands.py`: a Request from a Caller -> a Reply (Block Kit), via `api/`;
- `replies.py`, `plot.py`: Block Kit and PNG plots;
- `reading.py`: `get`, a caget from inside the running engine;
- `bot.py`: slack_bolt's AsyncApp, Socket Mode or HTTP mode, alert buttons.

`for_app` builds the bot of a running App, or None without `slack:`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..app import App
    from .bot import SlackBot


def for_app(application: App) -> SlackBot | None:
    if application.config.slack is None:
        return None
    from .bot import SlackBot
    from .reading import read_now

    return SlackBot(lambda: application.config, application.store,
                    lambda name: read_now(application, name), application.clock.now,
                    recent=application.engine.history.unstored,
                    resolver=lambda: application.decider.router.oncall,
                    live=application.engine.live_value)
