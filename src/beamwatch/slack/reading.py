"""`get`: a check or a PV read now, from inside the running `beamwatch run`.

A check on Channel Access, or a PV name: a fresh caget (value, units, the
record's severity, the IOC's timestamp), through the process's own libca
context, so it sees the IOCs the engine sees. Any other check: the value the
engine received last, with its age — reading an HTTP service or a database
again on demand is the source's poll, not a chat command's."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..model import value_text
from .commands import Reading

if TYPE_CHECKING:
    from ..app import App

PV_NAME = re.compile(r"^[A-Za-z0-9_:.\-\[\]<>{}$]{1,200}$")  # what EPICS record names use
CAGET_TIMEOUT = 2.0
# libca keeps a channel for every name it was asked for, searching for ever for a name
# nobody serves: PVs outside the config are read up to this many names per process
OTHER_PVS_MAX = 50
_other_pvs: set[str] = set()


async def read_now(application: App, name: str) -> Reading:
    from ..app import source_kind

    cfg = application.config
    if name in cfg.check_ids:
        check = cfg.check(name)
        if check.pv and source_kind(cfg, check.input_source) == "ca":
            reading = await _caget(check.pv)
            return Reading(f"{name} ({check.pv})", reading.value, reading.units,
                           reading.severity, reading.time, "read now (Channel Access)")
        return _latest(application, name, source_kind(cfg, check.input_source))
    if not PV_NAME.match(name):
        raise LookupError(f"'{name[:60]}' is neither a check nor a PV name")
    if name not in _other_pvs and not _configured(cfg, name):
        if len(_other_pvs) >= OTHER_PVS_MAX:
            raise LookupError(f"{OTHER_PVS_MAX} PVs outside the config were read already; "
                              "use caget, or a check id")
        _other_pvs.add(name)
    return await _caget(name)


def _configured(cfg, pv: str) -> bool:
    return any(c.pv == pv for c in cfg.checks)


async def _caget(pv: str) -> Reading:
    from ..sources.ca import get_once  # libca only when asked

    sample, units = await get_once(pv, CAGET_TIMEOUT)
    return Reading(pv, value_text(sample.value), units, sample.severity.name,
                   sample.timestamp or None, "read now (Channel Access)")


def _latest(application: App, check_id: str, kind: str) -> Reading:
    sample = application.engine.sample_of(check_id)
    state = application.engine.state_of(check_id)
    if sample is None:
        raise LookupError(f"{check_id} has had no value yet from its {kind} source")
    value = value_text(sample.value) if sample.connected else "—"
    note = sample.error or ("" if sample.connected else "not connected")
    return Reading(check_id, value, "", state.severity.name if state else None,
                   sample.received, f"last value from its {kind} source", note)
