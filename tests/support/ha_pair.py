"""Two `beamwatch run` processes on one PostgreSQL store: an HA pair, as a user runs
it (one config file; on one test host the members differ only in `web.listen`, and
BEAMWATCH_HOST makes them two hosts, so a killed leader is noticed by its lease
running out, not by its pid). Shared by tests/integration/test_ha_pair.py and
bench/ha_failover.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from beamwatch.config import load_config
from beamwatch.store import Store
from beamwatch.store.lease import LeaseStore
from tests.support.pgcluster import free_port
from tests.support.waiting import wait_for

BIN = Path(sys.executable).parent / "beamwatch"
TOKEN = "ha-test-token"

DB = "".join(f'record(ai, "$(P)T{i}") {{ field(VAL, "1") }}\n' for i in range(1, 7))
CHECKS = [f"temp-{i}" for i in range(1, 7)]


def write_config(path: Path, ioc, hook_url: str, store_url: str, route_extra: str = "",
                 extra_checks: str = "", ca_extra: str = "") -> Path:
    """Six temperatures on one softIoc, paged to one webhook, at once (no `for:`)."""
    checks = "".join(f"""
  - id: temp-{i}
    pv: {ioc.pv(f"T{i}")}
    above: {{major: 10}}
""" for i in range(1, 7))
    path.write_text(f"""
beamline: HA
storage: {{url: "{store_url}"}}
web: {{listen: "${{BW_LISTEN}}", tokens: {{ops: "{TOKEN}"}}}}
sources: {{ca: {{kind: ca, addr_list: ["{ioc.addr}"]{ca_extra}}}}}
noise: {{recovery_grace: 2s}}
checks:{checks}{extra_checks}
  - id: udc-queue
    heartbeat: 10m
channels:
  hook: {{kind: webhook, webhook_url: "{hook_url}"}}
routes:
  - to: [channel:hook]
    group_wait: 0s
{route_extra}""")
    return path


class Member:
    """One `beamwatch run` of the pair, on its own "host" and port."""

    def __init__(self, name: str, cfg: Path, ioc, log_dir: Path):
        self.name, self.cfg, self.ioc = name, cfg, ioc
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Member:
        env = {**os.environ, **self.ioc.client_env, "BEAMWATCH_HOST": self.name,
               "BW_LISTEN": f"127.0.0.1:{self.port}"}
        log = open(self.log_path, "a")  # noqa: SIM115 - the process writes it
        self.proc = subprocess.Popen([str(BIN), "run", "-c", str(self.cfg)], env=env,
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> int | None:
        if not self.running:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGCONT)
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "BW_LISTEN": f"127.0.0.1:{self.port}"}
        return subprocess.run([str(BIN), *args, "-c", str(self.cfg)], capture_output=True,
                              text=True, timeout=60, env=env)


class Pair:
    """Members a and b (start order decides the first leader) on one store."""

    def __init__(self, cfg: Path, ioc, store_url: str, log_dir: Path):
        self.cfg, self.ioc = cfg, ioc
        os.environ.setdefault("BW_LISTEN", "off")  # the config reads it; off for ours
        self.store = Store.for_config(load_config(cfg))  # the beamline's schema
        self.a = Member("ws-a", cfg, ioc, log_dir)
        self.b = Member("ws-b", cfg, ioc, log_dir)

    def start(self, timeout: float = 60) -> Pair:
        self.a.start()
        wait_for(lambda: self.holder() == "ws-a" and set(CHECKS) <= set(self.store.latest()),
                 timeout, "ws-a leading with every PV connected")
        self.b.start()
        wait_for(lambda: self.roles_in_store().get("ws-b") == "standby", timeout,
                 "ws-b standing by")
        return self

    def holder(self) -> str | None:
        lease = LeaseStore(self.store).read()
        return lease.host if lease.holder is not None and not lease.expired else None

    def roles(self) -> dict[str, str]:
        """host -> role, from `beamwatch status --json` (as a user asks)."""
        out = self.a.cli("status", "--json")
        if out.returncode != 0:
            return {}
        return {i["host"]: i["role"] for i in json.loads(out.stdout)["instances"]
                if i["role"] != "gone"}

    def roles_in_store(self) -> dict[str, str]:
        """host -> role, as `status` computes it but without loading the config (a bench
        of 100k checks: `beamwatch status` takes tens of seconds on a loaded box)."""
        from beamwatch.api.service import instances

        return {i["host"]: i["role"] for i in instances(self.store) if i["role"] != "gone"}

    def member(self, host: str) -> Member:
        return self.a if host == "ws-a" else self.b

    def set(self, check: int, value: float) -> None:
        self.ioc.command(f"dbpf {self.ioc.pv(f'T{check}')} {value}")

    def close(self) -> str:
        logs = ""
        for m in (self.a, self.b):
            m.stop()
            logs += f"--- {m.name}\n{m.log()[-4000:]}\n"
        self.store.close()
        return logs


def wait_quiet(seconds: float) -> None:
    """Long enough for anything sent twice to arrive."""
    time.sleep(seconds)
