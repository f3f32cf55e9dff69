"""Files a nightly MERGE rewrites: update 1 % of a 100,000-row silver table, before and after `voxlake
maintain` (compaction + deletion vectors on silver).

The table is built as commit-as-you-go leaves it: 20 appends (chunks) of 5,000 rows. Each MERGE updates
the `levels` struct of 1,000 random audio ids, as a re-annotation does. Figures come from Delta's own
operation metrics of each MERGE.
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.report import write_section

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from jobs.commands.maintain import run_maintain
    from jobs.config import load_config
    from jobs.spark.session import build_session
    from jobs.warehouse.catalog import SILVER
    from jobs.warehouse.ledger import RunRecord
    from jobs.warehouse.store import Warehouse

    work = Path(tempfile.mkdtemp(prefix="voxlake-bench-merge-"))
    try:
        config = load_config(overrides={"warehouse": str(work / "wh"), "maintain": {"vacuum": False}})
        spark = build_session(config, app_name="voxlake-bench-merge")
        wh = Warehouse(spark, config.warehouse)
        wh.attach()
        ids = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(args.rows)]
        chunk = args.rows // 20
        levels = "named_struct('status', 'ok', 'error_code', CAST(NULL AS STRING), 'error_message', " \
                 "CAST(NULL AS STRING), 'version', '1.1.0', 'params_hash', 'x', 'peak_dbfs', rand() * -10, " \
                 "'rms_dbfs', rand() * -30, 'lufs', rand() * -30, 'clipping_ratio', 0.0D, 'dc_offset', 0.0D, " \
                 "'digital_silence', false, 'attempt', CAST(NULL AS INT))"
        target = wh.path(SILVER)
        for start in range(0, args.rows, chunk):
            rows = spark.createDataFrame([(i, f"file:/data/{i}.wav", 5.0) for i in ids[start: start + chunk]],
                                         "audio_id string, uri string, duration_s double")
            rows = rows.withColumn("levels", F.expr(levels)).withColumn("updated_at", F.current_timestamp())
            (DeltaTable.forPath(spark, target).alias("t").merge(rows.alias("s"), "t.audio_id = s.audio_id")
             .whenNotMatchedInsert(values={c: f"s.{c}" for c in rows.columns}).execute())

        def merge_one_percent(seed: int) -> dict:
            picked = spark.createDataFrame([(i,) for i in ids[seed::100]], "audio_id string").withColumn(
                "levels", F.expr(levels))
            start = time.perf_counter()
            (DeltaTable.forPath(spark, target).alias("t").merge(picked.alias("s"), "t.audio_id = s.audio_id")
             .whenMatchedUpdate(set={"levels": "s.levels"}).execute())
            wall = time.perf_counter() - start
            m = DeltaTable.forPath(spark, target).history(1).first()["operationMetrics"]
            files = spark.sql(f"DESCRIBE DETAIL delta.`{target}`").first()["numFiles"]
            return {"wall": wall, "removed": int(m.get("numTargetFilesRemoved", 0)),
                    "added": int(m.get("numTargetFilesAdded", 0)), "updated": int(m.get("numTargetRowsUpdated", 0)),
                    "dv": int(m.get("numTargetDeletionVectorsAdded", 0) or 0), "files_before": files}

        files_start = spark.sql(f"DESCRIBE DETAIL delta.`{target}`").first()["numFiles"]
        before = merge_one_percent(1)
        run_maintain(spark, config, wh, RunRecord(job="maintain", config_hash=config.hash()))
        files_compacted = spark.sql(f"DESCRIBE DETAIL delta.`{target}`").first()["numFiles"]
        after = merge_one_percent(2)
        lines = [
            "## Table upkeep: files a 1 % MERGE rewrites in silver",
            "",
            f"A {args.rows:,}-row silver table written as commit-as-you-go leaves it (20 chunk commits, "
            f"{files_start} data files). A MERGE updates one annotator column of 1 % of the rows (random audio ids), "
            "before and after `voxlake maintain` (compaction into "
            f"{files_compacted} file(s), deletion vectors on silver). Figures from Delta's operation metrics.",
            "",
            "| | rows updated | data files rewritten (removed) | files added | deletion vectors added | wall s |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            f"| before maintain | {before['updated']:,} | {before['removed']} | {before['added']} | {before['dv']} | "
            f"{before['wall']:.1f} |",
            f"| after maintain | {after['updated']:,} | {after['removed']} | {after['added']} | {after['dv']} | "
            f"{after['wall']:.1f} |",
        ]
        write_section(Path(args.out), "merge", "\n".join(lines))
        print("\n".join(lines))
        spark.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
