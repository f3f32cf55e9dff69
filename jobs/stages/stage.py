"""The contract every pipeline stage follows, and the loop that runs it.

A stage selects its work, processes it on the executors and commits it: its tables first, then every
file's outcome through the one outcome writer (jobs.warehouse.outcomes). Three things are the same for
every stage and live here, once:

- **Nothing changed, nothing to do.** A stage names what its work depends on (`Inputs`: the tables it
  reads, at their current versions, and the settings and facts it uses). When a run ends with nothing
  left to do for those inputs, the loop records them (jobs.warehouse.state); a later run whose inputs
  are the same skips the stage before it queries anything.
- **Commit as you go.** Work is cut into chunks, hash buckets of the audio id of about
  `commit_every_s` audio seconds each (`chunk_count`), and each chunk is processed and committed on its
  own, under a progress line: a killed run loses at most the chunk in flight, and the next run selects
  only what is left.
- **One shape.** `run_stage` calls, in order: `inputs`, `select`, `chunks`, `commit_chunk` for each
  chunk until one says stop, and `finish`; `unchanged` answers instead when the inputs are the same;
  `close` runs last, however the stage ended.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from jobs.config import Config
from jobs.spark.progress import StageProgress
from jobs.warehouse.ledger import RunRecord
from jobs.warehouse.state import StageState
from jobs.warehouse.store import Warehouse
from schemas.tables import TableSpec

CHUNK_COLUMN = "_chunk"


@dataclass(frozen=True)
class StageContext:
    """What every stage runs with."""

    spark: Any
    config: Config
    warehouse: Warehouse
    record: RunRecord


@dataclass(frozen=True)
class Inputs:
    """What a stage's work depends on: tables (read at their current versions) and anything else
    (settings, a listing's digest, annotator versions). `scope` separates records of one stage that
    cover different inputs (ingest: one per source set)."""

    tables: tuple[TableSpec, ...]
    facts: dict = field(default_factory=dict)
    scope: str = "all"


@dataclass(frozen=True)
class Work:
    """Selected work: a DataFrame (staged: it reads one fixed snapshot), its files and audio seconds."""

    df: Any
    files: int
    seconds: float = 0.0


class Stage(ABC):
    """select work → process it on the executors → commit (tables, then file outcomes)."""

    name: ClassVar[str]

    def __init__(self, ctx: StageContext):
        self.ctx = ctx
        self.spark, self.config, self.warehouse, self.record = ctx.spark, ctx.config, ctx.warehouse, ctx.record
        # set by the stage when it ends with nothing left to do for its inputs: the loop records them
        self.settled = False

    def inputs(self) -> Inputs | None:
        """What the work depends on; None: the stage always selects (no record is kept)."""
        return None

    def unchanged(self, recorded: dict):
        """The result when the inputs are those recorded (`recorded`: the table versions then)."""
        raise NotImplementedError

    @abstractmethod
    def select(self) -> Work | None:
        """The work, or None when there is nothing to do (the stage sets `settled` then)."""

    def chunks(self, work: Work) -> int:
        """How many commits the work takes."""
        return 1

    @abstractmethod
    def commit_chunk(self, part, index: int, count: int, work: Work) -> bool:
        """Process one chunk on the executors and commit it; False stops the loop (a cap, a block)."""

    @abstractmethod
    def finish(self, work: Work | None):
        """Clean up and return the stage's result (also after nothing was selected)."""

    def close(self) -> None:  # noqa: B027 (a hook: most stages hold something to release, not all)
        """Release what the stage holds (cached listings, staging folders), whether it succeeded or not."""

    def progress_label(self, index: int, count: int, work: Work) -> str:
        return f"{self.name} chunk {index + 1}/{count}" if count > 1 else f"{self.name}: {work.files} files"


def chunk_count(files: int, seconds: float, every_s: float, max_files: int | None = None,
                max_hours: float | None = None) -> int:
    """Commits for `files` files of `seconds` audio: one per `every_s` seconds, and enough that a cap
    (max files, max hours) stops a run close to it. Chunks are hash buckets of equal expected size."""
    chunks = math.ceil(seconds / max(float(every_s), 1.0)) if seconds else 1
    if max_files:
        chunks = max(chunks, math.ceil(files / max_files))
    if max_hours:
        chunks = max(chunks, math.ceil(seconds / (max_hours * 3600)))
    return max(1, min(chunks, files))


def run_stage(stage: Stage):
    """Run `stage` under the contract above; returns its result."""
    try:
        inputs = stage.inputs()
        state = StageState(stage.warehouse, stage.name, inputs.scope) if inputs else None
        if state is not None:
            recorded = state.unchanged(inputs.tables, inputs.facts)
            if recorded is not None:
                return stage.unchanged(recorded)
        work = stage.select()
        if work is not None:
            count = stage.chunks(work)
            parts = _chunked(work.df, count)
            for index in range(count):
                with StageProgress(stage.spark, stage.progress_label(index, count, work),
                                   stage.config.run.progress_log_s):
                    go_on = stage.commit_chunk(parts(index), index, count, work)
                if not go_on:
                    break
        result = stage.finish(work)
        if state is not None and stage.settled:
            state.remember(inputs.tables, inputs.facts)  # the tables at their versions now, after the commits
        return result
    finally:
        stage.close()


def _chunked(df, count: int):
    """part(i): the rows of chunk i (a hash bucket of the audio id), or all of them for one chunk."""
    if count == 1:
        return lambda index: df
    from pyspark.sql import functions as F

    keyed = df.withColumn(CHUNK_COLUMN, F.pmod(F.xxhash64("audio_id"), F.lit(count)))
    return lambda index: keyed.where(F.col(CHUNK_COLUMN) == index).drop(CHUNK_COLUMN)
