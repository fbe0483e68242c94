"""The firing alerts Prometheus Alertmanager sent (sources/alertmanager.py), kept so a
restart knows them: Alertmanager sends a firing alert again only every repeat_interval."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select

from . import tables as t
from .store import Store


class AlertStore:
    def __init__(self, store: Store):
        self.store = store

    def apply(self, firing: list[dict], gone: Iterable[str]) -> None:
        """One transaction: `firing` rows (fingerprint, labels, annotations, starts_at,
        received) put, the alerts of fingerprints `gone` (resolved, forgotten) removed."""
        gone = sorted(set(gone))
        with self.store.engine.begin() as conn:
            if gone:
                conn.execute(delete(t.alerts).where(t.alerts.c.fingerprint.in_(gone)))
            if firing:
                self.store._upsert(conn, t.alerts, firing, ["fingerprint"])

    def firing(self) -> list[dict]:
        with self.store.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(t.alerts)).mappings().all()]
