"""Table upkeep: compaction, deletion vectors on silver, and VACUUM.

    voxlake maintain --warehouse DIR [--config FILE]      (also after `voxlake run` with maintain.after_run)

- Compaction: OPTIMIZE every table, so the small files that each nightly MERGE and commit-as-you-go
  chunk add are rewritten into few large ones.
- silver.annotations gets deletion vectors: a MERGE that updates a few rows then marks them deleted in
  place and writes the new versions to new files, instead of rewriting every file that holds one of
  them. BENCHMARKS.md has the before/after figures. (Clustering by `audio_id` was not tried: audio ids
  are content hashes, so a run's updates are not grouped by them.)
- VACUUM removes files no version within `maintain.vacuum_retention_hours` (default 168, Delta's own
  default of 7 days) still needs: time travel and readers of older versions keep working that long.
gold keeps its plain table protocol (no deletion vectors, no clustering) so that other Delta readers
(e.g. the `deltalake` Python package) read it as they do today.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from jobs.config import Config
from jobs.spark import internals
from jobs.warehouse.catalog import SILVER, TABLES
from jobs.warehouse.ledger import RunRecord
from jobs.warehouse.store import Warehouse

log = logging.getLogger(__name__)


@dataclass
class MaintainResult:
    compacted: dict = field(default_factory=dict)  # table -> (files removed, files added)
    vacuumed: dict = field(default_factory=dict)  # table -> files deleted
    deletion_vectors_enabled: bool = False


def run_maintain(spark, config: Config, warehouse: Warehouse, record: RunRecord) -> MaintainResult:
    from delta.tables import DeltaTable

    cfg = config.maintain
    retention_h = float(cfg.vacuum_retention_hours)
    result = MaintainResult()
    result.deletion_vectors_enabled = enable_deletion_vectors(spark, warehouse)
    for spec in TABLES:
        table = DeltaTable.forPath(spark, warehouse.path(spec))
        metrics = table.optimize().executeCompaction().first()["metrics"]
        removed, added = int(metrics["numFilesRemoved"]), int(metrics["numFilesAdded"])
        if removed:
            result.compacted[spec.qualified] = (removed, added)
        if cfg.vacuum:
            before = _data_files(spark, warehouse.path(spec))
            table.vacuum(retention_h)
            result.vacuumed[spec.qualified] = max(0, before - _data_files(spark, warehouse.path(spec)))
    log.info("maintain: compacted %s; vacuumed %s (retention %g h)", result.compacted or "nothing",
             {k: v for k, v in result.vacuumed.items() if v} or "nothing", retention_h)
    return result


def enable_deletion_vectors(spark, warehouse: Warehouse) -> bool:
    """Turn on deletion vectors for silver (once); True when this call turned them on."""
    props = spark.sql(f"SHOW TBLPROPERTIES delta.`{warehouse.path(SILVER)}`").collect()
    if any(r["key"] == "delta.enableDeletionVectors" and r["value"] == "true" for r in props):
        return False
    spark.sql(f"ALTER TABLE delta.`{warehouse.path(SILVER)}` SET TBLPROPERTIES ('delta.enableDeletionVectors' = true)")
    log.info("maintain: deletion vectors enabled on %s", SILVER.qualified)
    return True


def _data_files(spark, path: str) -> int:
    """Parquet files under a table folder (all versions), via Hadoop's filesystem."""
    fs, hpath = internals.hadoop_fs(spark, path)
    files = fs.listFiles(hpath, True)
    n = 0
    while files.hasNext():
        if files.next().getPath().getName().endswith(".parquet"):
            n += 1
    return n
