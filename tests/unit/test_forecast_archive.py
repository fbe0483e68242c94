"""A forecast's first window after a start: the stored minutes, and before the first
of them what the Archiver Appliance has; an archiver that fails is left alone for a
minute rather than costing every forecast check its timeout."""

from __future__ import annotations

from beamwatch.engine import past as past_
from beamwatch.sources import archiver


def test_archived_points_fill_the_window_before_the_first_stored_minute(monkeypatch):
    asked = []

    def points(config, check_id, start, end):
        asked.append((check_id, start, end))
        return [(start + 10, 80.0), (start + 70, 79.0)]

    monkeypatch.setattr(archiver, "archive_of", lambda config, check_id: object())
    monkeypatch.setattr(archiver, "points", points)
    stored = lambda check_id, since, until: [(until - 59, 60.0)]  # noqa: E731
    past = past_.with_archive(config=None, stored=stored)
    assert past("dewar", 1000.0, 2800.0) == [(1010.0, 80.0), (1070.0, 79.0), (2741.0, 60.0)]
    assert asked == [("dewar", 1000.0, 2681.0)]  # up to a minute before the stored one


def test_a_full_stored_window_or_no_archive_asks_no_archiver(monkeypatch):
    monkeypatch.setattr(archiver, "points", lambda *a: (_ for _ in ()).throw(AssertionError))
    full = lambda check_id, since, until: [(since + 30, 1.0), (until, 2.0)]  # noqa: E731
    monkeypatch.setattr(archiver, "archive_of", lambda config, check_id: object())
    assert past_.with_archive(None, full)("x", 0.0, 600.0) == [(30.0, 1.0), (600.0, 2.0)]
    monkeypatch.setattr(archiver, "archive_of", lambda config, check_id: None)
    empty = lambda check_id, since, until: []  # noqa: E731
    assert past_.with_archive(None, empty)("x", 0.0, 600.0) == []


def test_an_archiver_that_fails_is_asked_again_only_a_minute_later(monkeypatch):
    calls = []

    def points(config, check_id, start, end):
        calls.append(check_id)
        raise archiver.ArchiverError("archiver at http://arch:17665 did not answer")

    now = [0.0]
    monkeypatch.setattr(archiver, "archive_of", lambda config, check_id: object())
    monkeypatch.setattr(archiver, "points", points)
    past = past_.with_archive(None, lambda *a: [], monotonic=lambda: now[0])
    assert [past(c, 0.0, 1800.0) for c in ("a", "b", "c")] == [[], [], []]
    assert calls == ["a"]  # one timeout, not three
    now[0] = 61.0
    past("d", 0.0, 1800.0)
    assert calls == ["a", "d"]
