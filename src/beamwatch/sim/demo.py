"""`beamwatch demo`: the simulated beamline, and beamwatch watching it, in one command.

The sim starts on the ports that the config's `ca` source lists, so the demo
config and the sim agree by construction (a config pointing elsewhere is an
error, said plainly). The sim's CA environment goes into os.environ before
beamwatch's first CA call: libca reads it only once per process.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from ..config import Config, load_config
from . import ca
from .beamline import SimBeamline
from .errors import PortInUse, SimError
from .files import DEFAULT_DATA_DIR
from .layout import HOST, SimLayout


def demo_base_port(config: Config) -> int:
    """The sim's base port, read from `sources.ca.addr_list` (default: the sim's)."""
    source = config.sources.get("ca")
    if source is None or not source.addr_list:
        return SimLayout().base_port
    addresses = sorted(source.addr_list)
    try:
        ports = [int(a.rsplit(":", 1)[1]) for a in addresses if a.startswith(f"{HOST}:")]
    except (IndexError, ValueError):
        ports = []
    if ports:
        expected = SimLayout("", min(ports)).addresses
        if addresses == sorted(expected):
            return min(ports)
    raise SimError(
        f"sources.ca.addr_list is {' '.join(addresses)}, which is not a simulated "
        f"beamline: list {HOST}:BASE up to {HOST}:BASE+4, e.g. "
        f"{' '.join(SimLayout().addresses)}"
    )


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


DEMO_ISPYB = "beamwatch-demo-ispyb.db"  # the demo config's ispyb source reads this file
CONSOLE_PORT = 8765  # the demo config's webhooks point here


class Console:
    """The demo's stand-in for phones and Slack: every webhook the demo config sends
    to 127.0.0.1:8765 is printed as one line in the terminal running the demo."""

    def __init__(self, port: int = CONSOLE_PORT):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                who = self.path.strip("/").replace("/", ":")
                _say(f"  >> {who:<14} {body.get('kind', '?'):<10} "
                     f"[{body.get('severity', '?')}] {body.get('title', '')}"
                     + (f" — {len(body['consequences'])} consequences"
                        if body.get("consequences") else "")
                     + (f" (by {body['actor']})" if body.get("actor") else ""))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        try:
            self.server: ThreadingHTTPServer | None = ThreadingHTTPServer(
                ("127.0.0.1", port), Handler)
        except OSError as e:
            _say(f"beamwatch demo: notifications will not be shown: port {port}: {e.strerror}")
            self.server = None
            return
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()


def run_demo(config_path: str | os.PathLike[str]) -> None:
    """Start the sim, run beamwatch on it until Ctrl-C or SIGTERM, stop both."""
    from ..app import App

    path = Path(config_path)
    config = load_config(path)
    try:
        base_port = demo_base_port(config)
        sim = SimBeamline(base_port=base_port, ispyb=DEMO_ISPYB,
                          data_dir=DEFAULT_DATA_DIR).start()
    except PortInUse as e:
        _say(f"beamwatch demo: {e}. The demo's ports are the {path} sources.ca.addr_list.")
        raise SystemExit(2) from None
    except SimError as e:
        _say(f"beamwatch demo: {e}")
        raise SystemExit(2) from None
    try:
        os.environ.update(sim.env)
        port_option = "" if base_port == SimLayout().base_port else f" --base-port {base_port}"
        _say(f"beamwatch demo: simulated {config.beamline} beamline up: "
             f"{sim.startup.get('pvs')} PVs, EPICS_CA_ADDR_LIST=\"{sim.addr_list}\"; "
             f"PVAccess on {sim.layout.pva_address}, GDA's status on "
             f"{sim.layout.status_url}/api/status, ISPyB-like queue in {DEMO_ISPYB}, "
             f"images and the detector log in {DEFAULT_DATA_DIR}")
        _say(f"beamwatch demo: watching {len(config.checks)} checks from {path}. "
             "Try, in another shell:")
        for command, why in (
            ("beamwatch sim faults", "what can go wrong"),
            (f"beamwatch sim fault vacuum-loss{port_option}",
             "one root cause, dozens of consequences"),
            (f"beamwatch status -c {path}", "what beamwatch makes of it"),
            (f"beamwatch sim fault collection-stalled{port_option}",
             "no new image for a while (a file: check)"),
            (f"beamwatch sim fault gda-down{port_option}", "GDA says FAULT (an HTTP check)"),
            (f"beamwatch sim fault dewar-draining --rate 6{port_option}",
             "a slow fault: paged as a forecast first"),
            (f"beamwatch sim clear{port_option}", "back to normal"),
        ):
            _say(f"  {command:<50} {why}")
        _say("Notifications the demo config sends (on-call person, ops channel) appear "
             "below as '>> …' lines.")
        _say("Ctrl-C stops the monitor and the simulated beamline.")
        console = Console()
        application = App(path)
        try:
            asyncio.run(application.run())
        except KeyboardInterrupt:
            pass
        finally:
            console.close()
        # channels left open would call back into the closed loop as the IOCs go
        ca.close()
    finally:
        sim.stop()
