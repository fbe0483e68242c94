"""`beamwatch facility serve`: the facility view as a page and as JSON.

`GET /` one table, a row per beamline, rendered on the server and refreshed by the
browser every REFRESH seconds (no script: it works on any screen in a control
room); `GET /api/facility` the same as `beamwatch facility --json`. Read only: no
tokens, nothing to change. Each request reads the database in a worker thread.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response

from .. import timefmt
from ..facility.view import BeamlineStatus
from .pages import static_files

REFRESH = 10  # seconds between the page's reloads

STYLE = """
table.facility { border-collapse: collapse; width: 100%; background: #fff; }
.facility th, .facility td { text-align: left; vertical-align: top; padding: .4em .6em;
                             border-bottom: 1px solid #e2e5ea; }
.facility .sev { font-weight: 700; } .sev.OK { color: var(--ok); }
.sev.MINOR { color: #9a7400; } .sev.MAJOR { color: var(--major); }
.sev.INVALID { color: var(--invalid); } .down { color: var(--major); font-weight: 700; }
.facility ul { margin: 0; padding-left: 1em; }
"""


def create_facility_app(name: str, read: Callable[[], list[BeamlineStatus]]) -> FastAPI:
    """`read()`: every beamline's status, from the database (blocking: run in a thread)."""
    app = FastAPI(title=f"{name} — beamwatch facility", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.mount("/static", static_files(), name="static")

    @app.get("/api/facility")
    def api() -> JSONResponse:
        now = time.time()
        rows = read()
        return JSONResponse({"facility": name, "now": now,
                             "beamlines": [r.to_json() for r in rows]},
                            headers={"Cache-Control": "no-store"})

    @app.get("/")
    def page() -> HTMLResponse:
        now = time.time()
        return HTMLResponse(render(name, read(), now), headers={"Cache-Control": "no-store"})

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    return app


def render(name: str, rows: list[BeamlineStatus], now: float) -> str:
    e = html.escape
    body = "".join(_row(r, now) for r in rows) or (
        '<tr><td colspan="6" class="muted">no beamwatch store in this database</td></tr>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH}">
<title>{e(name)} — beamwatch facility</title>
<link rel="stylesheet" href="/static/style.css"><style>{STYLE}</style></head>
<body><header><strong>{e(name)}</strong><span class="muted">{len(rows)} beamlines,
read {e(timefmt.show(now, "UTC"))} UTC</span></header>
<main><table class="facility"><thead><tr><th>beamline</th><th>worst</th><th>alarms</th>
<th>open incidents</th><th>on call</th><th>monitor</th></tr></thead>
<tbody>{body}</tbody></table></main></body></html>"""


def _row(r: BeamlineStatus, now: float) -> str:
    e = html.escape
    name = e(r.beamline or r.schema)
    if r.problem:
        return f'<tr><td>{name}</td><td colspan="5" class="muted">{e(r.problem)}</td></tr>'
    incidents = "".join(
        f"<li>{e(i['root'])} ({e(i['severity'])}, {i['checks']} checks, "
        f"{e(timefmt.ago(i['opened'], now))})</li>" for i in r.incidents)
    oncall = "".join(
        f"<li>{e(o['team'])}: {e(o['name'] or 'nobody')}"
        f"{' <span class=muted>(stale)</span>' if o['stale'] else ''}</li>" for o in r.oncall)
    monitor = "".join(
        f"<li>{e(i.host or i.name)}{' ' + e(i.role) if i.role else ''}: "
        + ("alive" if i.alive else f"<span class=down>down</span> "
           f"({e(timefmt.ago(i.beat, now))})") + "</li>" for i in r.instances)
    if not r.monitor_alive:
        monitor = "<span class=down>MONITOR DOWN</span>" + monitor
    alarms = f"{r.alarms}" + (f" ({r.unacked} unacked)" if r.unacked else "")
    return (f"<tr><td>{name}</td><td class='sev {e(r.worst or '')}'>{e(r.worst or '—')}</td>"
            f"<td>{alarms}</td><td><ul>{incidents}</ul></td><td><ul>{oncall}</ul></td>"
            f"<td><ul>{monitor}</ul></td></tr>")
