"""`POST /slack/events`: the Slack bot in HTTP mode — slash commands, events and
button presses. slack_bolt checks the request's signature and timestamp: a bad
or old one gets 401 and nothing is done (beamwatch.slack.bot)."""

from __future__ import annotations

from typing import Protocol

from fastapi import APIRouter, Request
from starlette.responses import Response


class Handler(Protocol):
    async def handle(self, req: Request) -> Response: ...


def router(handler: Handler) -> APIRouter:
    routes = APIRouter()

    @routes.post("/slack/events")
    async def slack_events(request: Request) -> Response:
        return await handler.handle(request)

    return routes
