"""The simulated beamline's HTTP status service, GDA's `GET /api/status` in small:

    {"state": "RUNNING", "message": "GDA server up"}

The `gda-down` fault (a CA put to $(P)BL04I-SIM:FAULT:GDA, monitored by the
supervisor) turns it into {"state": "FAULT", ...}; `clear` turns it back.

A plain asyncio HTTP/1.1 server with keep-alive, so clients reuse their
connections as they would with the real thing. `python -m
beamwatch.sim.status_http --port N` runs it alone (the polled-source bench).
"""

from __future__ import annotations

import argparse
import asyncio
import json

from .layout import HOST


class StatusService:
    def __init__(self, port: int, host: str = HOST):
        self.host = host
        self.port = port
        self.fault = False
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  backlog=1024)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def answer(self, method: str, path: str) -> tuple[int, dict]:
        if path.split("?", 1)[0] != "/api/status":
            return 404, {"error": f"no such resource {path}"}
        if self.fault:
            return 200, {"state": "FAULT", "message": "GDA server lost its connection to the "
                                                      "detector"}
        return 200, {"state": "RUNNING", "message": "GDA server up"}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, UnicodeDecodeError):
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection is over."""
        line = await reader.readline()
        if not line:
            return False
        method, path, _version = line.decode("latin-1").split()
        headers = {}
        while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if int(headers.get("content-length") or 0):
            await reader.readexactly(int(headers["content-length"]))
        status, document = self.answer(method, path)
        body = json.dumps(document).encode()
        reason = {200: "OK", 404: "Not Found"}.get(status, "")
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        return headers.get("connection", "").lower() != "close"


async def _serve_forever(port: int) -> None:
    service = StatusService(port)
    await service.start()
    print(f"serving {service.url}/api/status", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m beamwatch.sim.status_http")
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(_serve_forever(parser.parse_args(argv).port))


if __name__ == "__main__":
    main()
