"""Which runs are alive, and cleaning up after the ones that died.

A run writes `<warehouse>/_staging/_runs/<run_id>.json` when it starts and rewrites it every
`heartbeat_s` from a daemon thread (rewrites, not touches: object stores cannot change a modification
time, S3A's setTimes does nothing); it removes it when it ends. A run killed outright (SIGKILL, a lost
driver) leaves the file behind and stops touching it. The next run (or `voxlake maintain`) treats a file
untouched for `stale_after_s` as a dead run: it removes that run's staging folders and records the run in
ops.runs as `failed` with the message `interrupted`. Everything goes through Hadoop's FileSystem API, so
it works the same for a local and an object-store warehouse.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime

from jobs.ledger import RunRecord, write_run
from jobs.warehouse import Warehouse

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, warehouse: Warehouse, record: RunRecord, heartbeat_s: float = 30.0):
        self.warehouse, self.record, self.heartbeat_s = warehouse, record, heartbeat_s
        self.path = f"{warehouse.root}/_staging/_runs/{record.run_id}.json"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self):
        body = {"run_id": self.record.run_id, "job": self.record.job, "config_hash": self.record.config_hash,
                "started_at": self.record.started_at.isoformat(), "host": socket.gethostname(), "pid": os.getpid()}
        self._body = json.dumps(body)
        self.warehouse.write_text(self.path, self._body)
        self._thread = threading.Thread(target=self._beat, name="voxlake-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.warehouse.write_text(self.path, self._body)
            except Exception:  # a missed beat is not worth failing the run for
                log.debug("heartbeat failed", exc_info=True)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        self.warehouse.remove(self.path)


def reap_dead_runs(warehouse: Warehouse, stale_after_s: float) -> list[str]:
    """Remove the staging of runs whose heartbeat stopped, and record them as interrupted."""
    dead = []
    now_ms = time.time() * 1000
    for path, modified_ms in warehouse.list_files(f"{warehouse.root}/_staging/_runs"):
        if not path.endswith(".json") or now_ms - modified_ms < stale_after_s * 1000:
            continue
        try:
            info = json.loads(warehouse.read_text(path))
        except Exception:
            info = {"run_id": path.rsplit("/", 1)[1][: -len(".json")], "job": "unknown", "config_hash": ""}
        run_id = info["run_id"]
        for stage_dir, _ in warehouse.list_files(f"{warehouse.root}/_staging", dirs=True):
            for leftover, _ in warehouse.list_files(stage_dir, dirs=True):
                if leftover.rsplit("/", 1)[1].startswith(run_id):
                    warehouse.remove(leftover)
        last = datetime.fromtimestamp(modified_ms / 1000, tz=UTC)
        started = datetime.fromisoformat(info["started_at"]) if info.get("started_at") else None
        record = RunRecord(job=info.get("job", "unknown"), config_hash=info.get("config_hash", ""), run_id=run_id,
                           started_at=started or last, finished_at=last, status="failed",
                           message=f"interrupted: no heartbeat since {last.isoformat()} "
                                   f"(host {info.get('host')}, pid {info.get('pid')}); its staging was removed")
        write_run(warehouse, record)
        warehouse.remove(path)
        log.warning("run %s died (no heartbeat since %s): staging removed, recorded as interrupted", run_id, last)
        dead.append(run_id)
    return dead
