"""The dashboard's pages: one HTML shell per page, filled in by `static/app.js`
from the JSON API and kept live by its server-sent events. No CDN and no build
step: the JavaScript is written for browsers as they are, and uPlot is vendored
(static/vendor/uplot, MIT).

Pages: `/` the board, `/incidents`, `/log` (the beamline log as a timeline),
`/noise` (silences, the mode, on-call). Usable on a phone: one column there.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from ..config.schema import Config

STATIC = Path(__file__).parent / "static"
PAGES = {"/": ("board", "Board"), "/incidents": ("incidents", "Incidents"),
         "/log": ("log", "Beamline log"), "/noise": ("noise", "Silences, mode, on-call")}


def shell(config: Config, page: str, title: str) -> str:
    nav = "".join(f'<a href="{path}"{" class=here" if name == page else ""}>{text}</a>'
                  for path, (name, text) in PAGES.items())
    beamline = html.escape(config.beamline)
    extra = ('<link rel="stylesheet" href="/static/vendor/uplot/uPlot.min.css">'
             '<script src="/static/vendor/uplot/uPlot.iife.min.js" defer></script>'
             if page == "log" else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{beamline} — {html.escape(title)} — beamwatch</title>
<link rel="stylesheet" href="/static/style.css">{extra}
<script src="/static/app.js" defer></script></head>
<body data-page="{page}" data-tz="{html.escape(config.timezone)}">
<header><strong>{beamline}</strong><nav>{nav}</nav>
<span id="who"></span><span id="live" title="live updates">●</span></header>
<div id="mode-banner"></div>
<main id="main"><p class="muted">loading…</p></main>
<div id="error" role="alert"></div>
</body></html>"""


def router(config: Callable[[], Config]) -> APIRouter:
    routes = APIRouter(include_in_schema=False)
    for path, (page, title) in PAGES.items():
        routes.add_api_route(path, _page(config, page, title), methods=["GET"])

    @routes.get("/favicon.ico")
    def favicon() -> Response:  # browsers ask; a 404 would be a console error on every page
        return Response(status_code=204)

    return routes


def _page(config: Callable[[], Config], page: str, title: str) -> Callable[[], HTMLResponse]:
    def serve() -> HTMLResponse:  # no parameters: FastAPI would read them from the query
        return HTMLResponse(shell(config(), page, title), headers={"Cache-Control": "no-store"})
    return serve


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC)
