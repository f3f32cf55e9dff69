"""Which runs are alive, one writer per warehouse at a time, and cleaning up after the runs that died.

A run writes `<warehouse>/_staging/_runs/<run_id>.json` when it starts and rewrites it every
`heartbeat_s` from a daemon thread (rewrites, not touches: object stores cannot change a modification
time, S3A's setTimes does nothing); it removes it when it ends. A run killed outright (SIGKILL, a lost
driver) leaves the file behind and stops touching it. The next run (or `voxlake maintain`) treats a file
untouched for `stale_after_s` as a dead run: it removes that run's staging folders and records the run in
ops.runs as `failed` with the message `interrupted`. Everything goes through Hadoop's FileSystem API, so
it works the same for a local and an object-store warehouse.

The same files are the warehouse's lease. A command that writes (ingest, annotate, publish, run,
maintain) writes its file, waits a moment (`SETTLE_LOCAL_S` on a local filesystem, `SETTLE_S`
elsewhere, so that a run starting at the same instant has written its own), and lists the live files:
it goes ahead only when no other live run holds the lease or claimed it earlier (by claim time, then
run id); otherwise it waits up to `run.lease_wait_s` and then stops with WarehouseBusy, having done
nothing. A claim made on this host by a process that is gone is dead at once (a rerun right after a
crash goes ahead); other hosts' claims are dead after `dead_after_s` without a heartbeat.

The lease is fenced: every commit first asks the run's `check` (Warehouse.committing). A run whose claim
was removed by a reaper, or that could not write a heartbeat for `dead_after_s`, raises LeaseLost there
and commits nothing more (heartbeat failures are logged as warnings). This is a lease between well-behaved voxlake runs,
not a lock service: on hosts whose clocks disagree, two runs starting within the same second could both
go ahead, and Delta's optimistic concurrency is then what keeps each table consistent.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime

from jobs.warehouse.ledger import RunRecord, write_run
from jobs.warehouse.store import Warehouse

log = logging.getLogger(__name__)

# Between writing a claim and reading the others: longer than it takes a run that claimed at the same
# instant to make its claim visible. A local file is listed as soon as it is created (milliseconds); an
# object store's PUT can take a good part of a second.
SETTLE_S = 1.0
SETTLE_LOCAL_S = 0.2
READ_ATTEMPTS = 5  # reads of a claim caught mid-rewrite before it counts as held


class WarehouseBusy(RuntimeError):
    """Another live run holds the warehouse; this one did nothing."""


class LeaseLost(RuntimeError):
    """This run no longer holds the warehouse (another run reaped it, or its heartbeat could not be
    written for `dead_after_s`): it stops before its next commit."""


def pid_gone(info: dict) -> bool:
    """True when the claim was made on this host by a process that no longer exists: a run killed here
    (SIGKILL, a crash) need not be waited for. Claims from other hosts cannot be checked this way."""
    pid = info.get("pid")
    if info.get("host") != socket.gethostname() or not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class Heartbeat:
    """A run's heartbeat file and, with it, the warehouse lease (see the module docstring)."""

    def __init__(self, warehouse: Warehouse, record: RunRecord, heartbeat_s: float, dead_after_s: float,
                 lease_wait_s: float):
        self.warehouse, self.record, self.heartbeat_s = warehouse, record, heartbeat_s
        self.dead_after_s, self.lease_wait_s = dead_after_s, lease_wait_s
        self.folder = f"{warehouse.root}/_staging/_runs"
        self.path = f"{self.folder}/{record.run_id}.json"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_beat = time.monotonic()  # the last heartbeat written
        self._lost: str | None = None  # why this run no longer holds the lease
        self._info = {"run_id": record.run_id, "job": record.job, "config_hash": record.config_hash,
                      "started_at": record.started_at.isoformat(), "host": socket.gethostname(),
                      "pid": os.getpid(), "claimed_at": None, "holding": False}

    @property
    def _body(self) -> str:
        return json.dumps(self._info)

    def __enter__(self):
        self._info["claimed_at"] = datetime.now(UTC).isoformat()
        self.warehouse.write_text(self.path, self._body)
        self._thread = threading.Thread(target=self._beat, name="voxlake-heartbeat", daemon=True)
        self._thread.start()
        try:
            self._wait_for_turn()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self._info["holding"] = True
        self.warehouse.write_text(self.path, self._body)
        self._last_beat = time.monotonic()
        self.warehouse.guard = self.check
        return self

    def check(self) -> None:
        """Raise LeaseLost when this run no longer holds the warehouse (called before every commit)."""
        silent = time.monotonic() - self._last_beat
        if self._lost is None and silent >= self.dead_after_s:
            self._lost = (f"no heartbeat could be written for {silent:.0f} s (run.dead_after_s "
                          f"{self.dead_after_s:g}): another run may have taken the warehouse over")
        if self._lost is not None:
            raise LeaseLost(f"lost the warehouse lease: {self._lost}; stopped before committing")

    def _wait_for_turn(self) -> None:
        from udfs.files import local_path

        deadline = time.time() + max(0.0, self.lease_wait_s)
        time.sleep(SETTLE_LOCAL_S if local_path(self.warehouse.root) is not None else SETTLE_S)
        while True:
            ahead = self._runs_ahead()
            if not ahead:
                return
            first = ahead[0]
            what = (f"run {first.get('run_id')} ({first.get('job')}, host {first.get('host')}, pid "
                    f"{first.get('pid')}, since {first.get('started_at')})")
            if time.time() >= deadline:
                raise WarehouseBusy(
                    f"warehouse busy: {what} is writing to {self.warehouse.root}; this {self.record.job} did "
                    f"nothing (set run.lease_wait_s to wait for it instead)")
            log.info("waiting for %s to finish (lease_wait_s %.0f)", what, self.lease_wait_s)
            time.sleep(min(5.0, max(0.5, deadline - time.time())))

    def _runs_ahead(self) -> list[dict]:
        """Live runs that hold the lease or claimed it before this one."""
        mine = (self._info["claimed_at"], self.record.run_id)
        now_ms = time.time() * 1000
        ahead = []
        for path, modified_ms in self.warehouse.list_files(self.folder):
            name = path.rsplit("/", 1)[-1]
            if not name.endswith(".json") or name == f"{self.record.run_id}.json":
                continue
            if now_ms - modified_ms >= self.dead_after_s * 1000:
                continue  # a dead run: the reaper records it, it holds nothing
            other = self._read_claim(path)
            if other is None:
                continue  # gone: that run ended
            if pid_gone(other):
                continue  # killed on this host: the reaper records it now
            claim = (other.get("claimed_at") or other.get("started_at") or "", other.get("run_id", ""))
            if other.get("holding") or claim < mine:
                ahead.append(other)
        return sorted(ahead, key=lambda o: (not o.get("holding"), o.get("claimed_at") or ""))

    def _read_claim(self, path: str) -> dict | None:
        """Another run's claim, or None when its file is gone.

        A claim is rewritten in place (create with overwrite truncates, then writes), so a read can land
        between the two and see an empty or half-written file. Such a file is read again; if it stays
        unreadable it still counts as a live claim ahead of this one: skipping it would let two runs go
        ahead together (seen as both creating a new warehouse's tables at once).
        """
        name = path.rsplit("/", 1)[-1]
        for attempt in range(READ_ATTEMPTS):
            try:
                return json.loads(self.warehouse.read_text(path))
            except Exception:
                if not self.warehouse.exists(path):
                    return None
                time.sleep(0.1 * (attempt + 1))
        log.debug("claim %s unreadable; counted as ahead", path)
        return {"run_id": name[: -len(".json")], "job": "unknown", "holding": True}

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                if self._info["holding"] and not self.warehouse.exists(self.path):
                    # another run found this one silent for dead_after_s and reaped it: writing the
                    # claim again would hide that; the run stops before its next commit instead
                    self._lost = "another run reaped this one (its claim was removed)"
                    log.warning("%s; stopping before the next commit", self._lost)
                    return
                self.warehouse.write_text(self.path, self._body)
                self._last_beat = time.monotonic()
            except Exception as exc:  # one missed beat is survivable; dead_after_s of them are not
                log.warning("heartbeat not written (%s: %s); the run stops before its next commit if none "
                            "is written for run.dead_after_s", type(exc).__name__, str(exc).splitlines()[0][:200])

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if self.warehouse.guard == self.check:
            self.warehouse.guard = None
        if self._lost is None:  # a reaped run's claim is gone already (and must not be removed twice)
            self.warehouse.remove(self.path)


def reap_dead_runs(warehouse: Warehouse, stale_after_s: float, own_run_id: str | None = None) -> list[str]:
    """Remove the staging of runs whose heartbeat stopped (or, on this host, whose process is gone), and
    record them as interrupted."""
    dead = []
    now_ms = time.time() * 1000
    for path, modified_ms in warehouse.list_files(f"{warehouse.root}/_staging/_runs"):
        if not path.endswith(".json"):
            continue
        if own_run_id and path.rsplit("/", 1)[-1] == f"{own_run_id}.json":
            continue
        try:
            info = json.loads(warehouse.read_text(path))
        except Exception:
            info = {"run_id": path.rsplit("/", 1)[1][: -len(".json")], "job": "unknown", "config_hash": ""}
        if now_ms - modified_ms < stale_after_s * 1000 and not pid_gone(info):
            continue
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
        if not _in_ledger(warehouse, run_id):  # killed after its own ledger row: it finished, as recorded
            write_run(warehouse, record)
        warehouse.remove(path)
        log.warning("run %s died (no heartbeat since %s): staging removed, recorded as interrupted", run_id, last)
        dead.append(run_id)
    return dead


def _in_ledger(warehouse: Warehouse, run_id: str) -> bool:
    from pyspark.sql import functions as F

    from schemas.tables import RUNS

    runs = warehouse.spark.read.format("delta").load(warehouse.path(RUNS))
    return not runs.where(F.col("run_id") == run_id).isEmpty()
