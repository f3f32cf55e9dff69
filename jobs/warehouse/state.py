"""What a stage last found nothing to do for: lets a rerun over unchanged inputs skip the stage.

A stage's work is a function of the tables it reads and the settings it runs with (jobs.stages.stage
`Inputs`). When a run leaves nothing to do for some inputs, it records them here: the versions of
those tables, the stage's facts (settings, a listing's digest, annotator versions) and voxlake's
version. A later run whose inputs fingerprint the same has nothing to do either, and stops before it
queries anything: reading a table's version is one listing of its `_delta_log`, while the first query
of a command pays for the JVM's warm-up and Delta's snapshots.

Anything that could change the answer changes the fingerprint: a commit to any of the tables (the
stage's own, another source's ingest, `voxlake maintain`), other settings, another voxlake version.
The record is a small JSON file, `<warehouse>/_state/<stage>/<scope>.json`, written through Hadoop's
FileSystem like the run claims; losing it (or a record in an older format) costs one full selection,
never a wrong answer.
"""
from __future__ import annotations

import hashlib
import json
import logging

from jobs.warehouse.ledger import code_version
from jobs.warehouse.store import Warehouse
from schemas.tables import TableSpec

log = logging.getLogger(__name__)


class StageState:
    def __init__(self, warehouse: Warehouse, stage: str, scope: str = "all"):
        self.warehouse = warehouse
        self.path = f"{warehouse.root}/_state/{stage}/{scope}.json"

    def _versions(self, tables: tuple[TableSpec, ...]) -> dict[str, int | None]:
        return {spec.qualified: self.warehouse.table_version(spec) for spec in tables}

    @staticmethod
    def _fingerprint(versions: dict, facts: dict) -> str:
        blob = json.dumps({"tables": versions, "facts": facts, "code": code_version()}, sort_keys=True,
                          default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def unchanged(self, tables: tuple[TableSpec, ...], facts: dict) -> dict | None:
        """The recorded table versions when these inputs are the ones recorded; None otherwise."""
        recorded = self._recorded(tables, facts)
        return recorded["versions"] if recorded is not None else None

    def recall(self, tables: tuple[TableSpec, ...], facts: dict) -> dict | None:
        """What was remembered with these inputs (`remember`'s payload) when they are the ones recorded."""
        recorded = self._recorded(tables, facts)
        return recorded.get("payload") if recorded is not None else None

    def _recorded(self, tables: tuple[TableSpec, ...], facts: dict) -> dict | None:
        versions = self._versions(tables)
        if any(v is None for v in versions.values()) or not self.warehouse.exists(self.path):
            return None
        try:
            recorded = json.loads(self.warehouse.read_text(self.path))
        except Exception:  # unreadable (cut short, foreign): select as usual, the next record replaces it
            log.debug("stage record %s unreadable", self.path, exc_info=True)
            return None
        if recorded.get("fingerprint") != self._fingerprint(versions, facts):
            return None
        return {**recorded, "versions": versions}

    def remember(self, tables: tuple[TableSpec, ...], facts: dict, payload: dict | None = None) -> None:
        """Record these inputs, with the tables at their versions now, and `payload` (best effort)."""
        versions = self._versions(tables)
        if any(v is None for v in versions.values()):
            return
        try:
            self.warehouse.write_text(self.path, json.dumps(
                {"fingerprint": self._fingerprint(versions, facts), "versions": versions, "payload": payload}))
        except Exception:  # the next run selects in full; nothing is wrong
            log.warning("could not record the inputs of %s", self.path, exc_info=True)
