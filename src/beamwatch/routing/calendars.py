"""Reading the teams' iCalendar feeds (`teams.X.ical`): the only I/O in routing.

A file path is read relative to the config file's folder; an http(s) URL is
fetched with `fetch` (by default httpx, 10 s). Errors are collected per team,
never raised, so one broken feed does not stop routing: `OnCallResolver` falls
back to the team's rota and says why.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..config.schema import Config

if TYPE_CHECKING:  # pragma: no cover
    import icalendar

Fetch = Callable[[str], bytes]


def parse_calendar(data: bytes | str) -> icalendar.Calendar:
    """Parse iCalendar text; X-WR-TIMEZONE calendars (Google) are made standard."""
    import icalendar

    cal = icalendar.Calendar.from_ical(data)
    try:
        import x_wr_timezone
    except ImportError:  # pragma: no cover - a dependency of recurring-ical-events
        return cal
    return x_wr_timezone.to_standard(cal)


def http_fetch(url: str, timeout: float = 10.0) -> bytes:
    import httpx

    response = httpx.get(url, timeout=timeout, follow_redirects=True)
    response.raise_for_status()
    return response.content


def read_source(source: str, base: Path | None = None, fetch: Fetch | None = None) -> bytes:
    if source.startswith(("http://", "https://", "webcal://")):
        url = "https://" + source[len("webcal://"):] if source.startswith("webcal://") else source
        return (fetch or http_fetch)(url)
    path = Path(source).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return path.read_bytes()


def load_calendars(config: Config, base: Path | None = None, fetch: Fetch | None = None,
                   ) -> tuple[dict[str, icalendar.Calendar], dict[str, str]]:
    """The parsed feed of every team with `ical:`, and the error of each that failed."""
    calendars: dict[str, icalendar.Calendar] = {}
    errors: dict[str, str] = {}
    for name, team in config.teams.items():
        if not team.ical:
            continue
        try:
            calendars[name] = parse_calendar(read_source(team.ical, base, fetch))
        except OSError as e:
            errors[name] = f"cannot read {team.ical}: {e.strerror or e}"
        except ValueError as e:  # icalendar's parse errors are ValueErrors
            errors[name] = f"{team.ical} is not valid iCalendar: {e}"
        except Exception as e:  # noqa: BLE001 - httpx errors, anything a feed can throw
            errors[name] = f"cannot fetch {team.ical}: {type(e).__name__}: {e}"
    return calendars, errors
