"""A Channel Access beacon repeater for one simulated beamline, on loopback.

Why the sim needs one: when an IOC comes back (after `ioc-down` and `clear`,
or a crash), CA clients find its channels again at their next search, and
libca spaces the searches for a lost channel further and further apart
(doubling, up to minutes). Real hosts run caRepeater: the restarted IOC's
beacons reach each client through it, the client sees the anomaly and moves
its lost channels back to a ~5 s search period. pip's epicscorelibs ships no
caRepeater executable, so without this a demo IOC that was down for ten
minutes could stay "disconnected" for minutes after `clear`. (libca registers
with the repeater some 10 s after a client starts; earlier restarts still wait
for the back-off.)

This is the caRepeater protocol (EPICS base, modules/ca/src/client/repeater.cpp)
in a few lines: a client registers with a REPEATER_REGISTER message and gets a
REPEATER_CONFIRM; every other datagram (the servers' beacons) is copied to
every registered client but its sender. It listens on 127.0.0.1 only, on the
sim's own repeater port (EPICS_CA_REPEATER_PORT in the sim's environments), so
parallel sims do not share beacons, and it lives and dies with the supervisor.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

log = logging.getLogger("beamwatch.sim")

_HEADER = struct.Struct("!HHHHII")  # command, payload size, type, count, cid, available
CA_PROTO_RSRV_IS_UP = 13  # a server's beacon
REPEATER_CONFIRM = 17
REPEATER_REGISTER = 24


def _client_gone(addr: tuple[str, int]) -> bool:
    """A client's UDP port that we can bind is a port nobody listens on any more."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(addr)
        except OSError:
            return False
    return True


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.clients: set[tuple[str, int]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) == 0:
            self._register(addr)
            return
        if len(data) < _HEADER.size:
            return
        command, size, dtype, count, cid, available = _HEADER.unpack_from(data)
        if command == REPEATER_REGISTER:
            self._register(addr)
            data = data[_HEADER.size:]
            if not data:
                return
        elif command == CA_PROTO_RSRV_IS_UP and available == 0:
            ip = struct.unpack("!I", socket.inet_aton(addr[0]))[0]
            data = _HEADER.pack(command, size, dtype, count, cid, ip) + data[_HEADER.size:]
        self._fan_out(data, addr)

    def _register(self, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.clients = {c for c in self.clients if c == addr or not _client_gone(c)}
        self.clients.add(addr)
        ip = struct.unpack("!I", socket.inet_aton(addr[0]))[0]
        self.transport.sendto(_HEADER.pack(REPEATER_CONFIRM, 0, 0, 0, 0, ip), addr)

    def _fan_out(self, data: bytes, sender: tuple[str, int]) -> None:
        assert self.transport is not None
        for client in list(self.clients):
            if client != sender:
                try:
                    self.transport.sendto(data, client)
                except OSError:
                    self.clients.discard(client)

    def error_received(self, exc: Exception) -> None:  # ICMP errors: a client went away
        log.debug("beacon repeater: %s", exc)


class BeaconRepeater:
    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.host, self.port = host, port
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            _Protocol, local_addr=(self.host, self.port))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
