"""The run ledger: one `ops.runs` row per job run, appended when the run ends (succeeded or not)."""
from __future__ import annotations

import functools
import logging
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from schemas.tables import RUNS

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The package version, plus the git commit when the code runs from a checkout (ops.runs, exports).

    Asked once per process (it runs `git`): a command asks for it in several places."""
    import subprocess
    from importlib.metadata import version
    from pathlib import Path

    try:
        base = version("voxlake")
    except Exception:
        base = "unknown"
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{base}+{sha}" if sha else base


def new_run_id(job: str) -> str:
    return f"{job}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@dataclass
class RunRecord:
    job: str
    config_hash: str
    run_id: str = ""
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    status: str = "running"
    rows_in: int = 0
    rows_out: int = 0
    rows_quarantined: int = 0
    audio_seconds: float = 0.0
    stage_seconds: dict = field(default_factory=dict)
    validation_success: bool | None = None
    delta_versions: dict = field(default_factory=dict)
    errors_by_code: dict = field(default_factory=dict)
    message: str | None = None

    def __post_init__(self):
        self.run_id = self.run_id or new_run_id(self.job)

    @contextmanager
    def stage(self, name: str):
        """Time a stage; the wall seconds land in `stage_seconds[name]`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds[name] = round(self.stage_seconds.get(name, 0.0) + time.perf_counter() - start, 3)

    def as_row(self) -> dict:
        return {
            "run_id": self.run_id,
            "job": self.job,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "status": self.status,
            "rows_in": int(self.rows_in),
            "rows_out": int(self.rows_out),
            "rows_quarantined": int(self.rows_quarantined),
            "audio_seconds": float(self.audio_seconds or 0.0),
            "stage_seconds": {k: float(v) for k, v in self.stage_seconds.items()},
            "validation_success": self.validation_success,
            "delta_versions": {k: int(v) for k, v in self.delta_versions.items() if v is not None},
            "errors_by_code": {k: int(v) for k, v in self.errors_by_code.items()},
            "config_hash": self.config_hash,
            "code_version": code_version(),
            "message": self.message,
        }


def write_run(warehouse, record: RunRecord) -> None:
    """Append the run's row to ops.runs. The ledger is append-only: one new version per run."""
    record.finished_at = record.finished_at or datetime.now(UTC)
    with warehouse.committing("ledger"):
        _one_row(warehouse.spark, record.as_row()).write.format("delta").mode("append").save(warehouse.path(RUNS))
    log.info("run %s recorded in %s (%s)", record.run_id, RUNS.qualified, record.status)


def _one_row(spark, row: dict):
    """The ledger row as a DataFrame of literals.

    `createDataFrame([row])` ships the row through a Python worker: in a command that ran no other
    Python task (a no-op rerun), the append then waits for a worker to start. Literals stay in the JVM.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import MapType

    columns = []
    for column_type in RUNS.schema.fields:
        value = row[column_type.name]
        if isinstance(column_type.dataType, MapType):
            column = F.create_map(*[F.lit(x) for item in (value or {}).items() for x in item])
        else:
            column = F.lit(value)
        columns.append(column.cast(column_type.dataType).alias(column_type.name))
    return spark.range(0, 1, 1, numPartitions=1).select(*columns)  # one task writes it (no empty second task)
