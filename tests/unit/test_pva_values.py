"""What the PVA source makes of p4p structures (real p4p Values, no server), and
its settings: the address list given to p4p, a missing p4p."""

from __future__ import annotations

import asyncio

import pytest

p4p_nt = pytest.importorskip("p4p.nt")

from beamwatch.config.schema import SourceConfig  # noqa: E402
from beamwatch.sources import pva  # noqa: E402
from beamwatch.sources.base import SourceUnavailable  # noqa: E402

NTScalar, NTEnum, NTTable = p4p_nt.NTScalar, p4p_nt.NTEnum, p4p_nt.NTTable


@pytest.mark.parametrize(("value", "expected"), [
    (NTScalar("d").wrap(3.5), 3.5),
    (NTScalar("i").wrap(7), 7),
    (NTScalar("s").wrap("idle"), "idle"),
    (NTScalar("?").wrap(True), True),
    (NTScalar("ad").wrap([1.0, 2.0]), (1.0, 2.0)),
    (NTScalar("as").wrap(["a", "b"]), ("a", "b")),
    (NTEnum().wrap({"index": 1, "choices": ["Closed", "Open"]}), "Open"),
])
def test_plain_values(value, expected) -> None:
    got = pva.plain_value(value)
    assert got == expected and type(got) is type(expected)


def test_enum_index_without_a_label_is_an_error() -> None:
    with pytest.raises(ValueError, match="enum index 5 has no label"):
        pva.plain_value(NTEnum().wrap({"index": 5, "choices": ["Closed", "Open"]}))


def test_a_table_is_not_a_check_value() -> None:
    table = NTTable([("a", "d")]).wrap([{"a": 1.0}])
    with pytest.raises(ValueError, match="not a scalar, an enum or an array"):
        pva.plain_value(table)


def test_alarm_and_timestamp() -> None:
    v = NTScalar("d").wrap(1.0, timestamp=1_700_000_000.25)
    v["alarm.severity"] = 2
    assert pva._severity(v) == (pva.Severity.MAJOR, 0)
    assert pva._timestamp(v, 0.0) == pytest.approx(1_700_000_000.25)
    v["alarm.severity"] = 9
    assert pva._severity(v)[0] is pva.Severity.INVALID


def test_addr_list_replaces_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("EPICS_PVA_ADDR_LIST", "10.9.9.9")
    src = pva.PvaSource("beam", SourceConfig(kind="pva", addr_list=["127.0.0.1:5999"]))
    ctx = pva.Context("pva", conf=src.conf, useenv=src.useenv)
    try:
        assert ctx.conf()["EPICS_PVA_ADDR_LIST"] == "127.0.0.1:5999"
        assert ctx.conf()["EPICS_PVA_AUTO_ADDR_LIST"] == "NO"
    finally:
        ctx.close()
    assert pva.PvaSource("pva").conf is None  # no addr_list: the environment's


def test_missing_p4p_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setattr(pva, "_IMPORT_ERROR", ImportError("No module named 'p4p'"))
    with pytest.raises(SourceUnavailable, match=r"pip install 'p4p>=4.1,<5'"):
        pva.PvaSource("pva")


async def test_a_value_it_cannot_use_is_a_sample_with_the_reason() -> None:
    got: list = []
    src = pva.PvaSource("pva", SourceConfig(kind="pva", addr_list=["127.0.0.1:9"]))
    await src.start(got.extend)
    try:
        pv = pva._Pv("BL:TABLE")
        pv.subscription = object()  # as if monitored
        await src._callback(pv)(NTTable([("a", "d")]).wrap([{"a": 1.0}]))
        await asyncio.sleep(0)  # the batch goes to the sink on the loop's next turn
        [sample] = got
        assert not sample.connected and sample.value is None
        assert sample.error.startswith("bad value: value is a structure (epics:nt/NTTable")
    finally:
        await src.stop()
