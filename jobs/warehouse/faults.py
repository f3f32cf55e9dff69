"""A testing aid: stop a run right after a named commit, as a crash would.

Each `Warehouse` carries a `FaultPlan` (`Warehouse.committing` calls it after every commit). The plan a
command gets comes from the environment, and is empty unless it sets `VOXLAKE_CRASH_AFTER=<point>` or
`<point>#<n>` (the n-th time the point is passed; 1 when left out): the process then kills itself
(SIGKILL) right after that commit. `VOXLAKE_COMMIT_LOG=<file>` appends each point passed to that file,
so a test can list the commits a run makes. A test that runs voxlake in its own process can give the
warehouse a plan with an `on_commit` hook instead: called right after each commit, before the run writes
its next table, it can copy the warehouse as a crash at that point would leave it (the run's staging
and lease claim aside, which the heartbeat may be writing and the next run reaps after a kill; the
crash-point test repairs each such copy, one uninterrupted run giving all of them). The points are `POINTS`; the
crash-point test walks all of them (docs/long-runs.md). Nothing else reads these variables: never set
them in production.
"""
from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

CRASH_ENV = "VOXLAKE_CRASH_AFTER"
LOG_ENV = "VOXLAKE_COMMIT_LOG"

# every commit a run makes, by the name its `Warehouse.committing` call gives it
POINTS = (
    "ingest.bronze",          # probe results merged (or appended) into bronze.audio_files
    "annotate.silver",        # one chunk of annotations merged into silver.annotations
    "link.links",             # silver.links brought in line
    "publish.blocked",        # a blocked batch's files marked pending with the reason
    "publish.gold",           # one chunk's MERGE into gold.utterances
    "publish.segments",       # the same chunk's MERGE into gold.segments
    "publish.clips",          # the same chunk's MERGE into gold.clips
    "publish.clip_state",     # the same chunk's clip decisions into ops.clip_state
    "publish.file_state",     # the same chunk's decisions into ops.file_state (last: the chunk is done)
    "reconcile.gold",         # gold rows of audio that is gone, undecodable or moved: deleted
    "reconcile.segments",     # ... and their segments
    "reconcile.clips",        # ... and their clips (and those of files no longer in gold)
    "reconcile.clip_state",   # clip decisions of audio no live file holds, or removed from gold: deleted
    "reconcile.file_state",   # every URI's outcome brought in line with the tables
    "ledger",                 # the run's row in ops.runs
)


@dataclass
class FaultPlan:
    crash_after: str | None = None  # "<point>" or "<point>#<n>"
    log_to: str | None = None  # a file each point passed is appended to
    on_commit: Callable[[str], None] | None = None  # a test's hook, given "<point>#<n>" after each commit
    passed: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_environment(cls) -> FaultPlan:
        return cls(crash_after=os.environ.get(CRASH_ENV) or None, log_to=os.environ.get(LOG_ENV) or None)

    def after_commit(self, point: str) -> None:
        """Called right after the commit named `point` (see the module docstring)."""
        if point not in POINTS:
            raise ValueError(f"unknown commit point {point!r}; add it to jobs.warehouse.faults.POINTS")
        self.passed[point] = self.passed.get(point, 0) + 1
        if self.log_to:
            with open(self.log_to, "a", encoding="utf-8") as f:
                f.write(f"{point}#{self.passed[point]}\n")
        if self.on_commit is not None:
            self.on_commit(f"{point}#{self.passed[point]}")
        if not self.crash_after:
            return
        name, _, nth = self.crash_after.partition("#")
        if name != point or self.passed[point] != int(nth or 1):
            return
        print(f"voxlake: {CRASH_ENV}={self.crash_after}: stopping the process after this commit (testing aid)",
              file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
