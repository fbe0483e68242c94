"""systemd's service notification protocol (sd_notify), in a few lines over the socket.

With `Type=notify` systemd waits for READY=1 before it counts the service as
started, and with `WatchdogSec=` it restarts a service that stops sending
WATCHDOG=1. beamwatch sends READY=1 once the engine has started and WATCHDOG=1
from the engine's tick, only when that tick came on time: a stuck event loop or
a tick that keeps failing stops the pings and systemd restarts the process.
Outside systemd (no NOTIFY_SOCKET) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None = None):
        address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        if address and address.startswith("@"):  # an abstract socket: leading NUL
            address = "\0" + address[1:]
        self.address = address or None
        self._sock: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, message: str) -> None:
        if self.address is None:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode(), self.address)
            self._failed = False
        except OSError as e:  # systemd gone or the socket full: say it once, go on
            if not self._failed:
                log.warning("cannot notify systemd at %s: %s", self.address, e)
            self._failed = True

    def ready(self) -> None:
        self.send("READY=1")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
