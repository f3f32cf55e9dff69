"""The one writer of where each file is: `ops.file_state`, one row per URI.

Every stage commits its files' outcomes here: ingest (pending, or quarantined with the probe's code, or
NOT_FOUND when a source no longer lists the file), annotate (quarantined when the audio cannot be
decoded), publish (curated, or quarantined with the expectations the row broke). A URI has exactly one
row, so it is in gold xor in quarantine by construction; `ops.quarantine` is a view of the quarantined
rows. A row is rewritten only when the decision changed, so a rerun that decides the same commits nothing.
"""
from __future__ import annotations

import logging

from jobs.warehouse.store import Warehouse
from schemas.tables import FILE_STATE

log = logging.getLogger(__name__)

CURATED, QUARANTINED, PENDING = "curated", "quarantined", "pending"

# what a decision is: a row whose values here are unchanged is not rewritten
DECISION_COLUMNS = ("audio_id", "stage", "status", "error_code", "reason", "failed_expectations",
                    "recipe_hash", "annotated_at", "decision_key")


def outcome_rows(df, run_id: str, **defaults):
    """Shape `df` (with `uri` and any decision columns) into file_state rows; `defaults` fill the rest
    (values are Spark columns or literals)."""
    from pyspark.sql import functions as F

    cols = []
    for field in FILE_STATE.schema.fields:
        name = field.name
        if name in df.columns:
            cols.append(F.col(name).cast(field.dataType).alias(name))
        elif name in defaults:
            value = defaults[name]
            cols.append((value if hasattr(value, "alias") else F.lit(value)).cast(field.dataType).alias(name))
        elif name == "run_id":
            cols.append(F.lit(run_id).alias(name))
        elif name in ("first_seen", "last_seen"):
            cols.append(F.current_timestamp().alias(name))
        else:
            cols.append(F.lit(None).cast(field.dataType).alias(name))
    return df.select(*cols)


def record(spark, warehouse: Warehouse, rows, staging: str) -> int | None:
    """MERGE outcome rows into ops.file_state by URI; returns how many rows changed (0: no commit), or
    None when they were the warehouse's first outcomes (appended without counting them).

    The changed rows are staged first: `rows` is usually computed from file_state itself, and a plan
    over a table is invalidated by a MERGE into it.
    """
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    if warehouse.is_empty_since_created(FILE_STATE):
        # a new warehouse's first outcomes: nothing to compare with or to update, so one append (a
        # blind append, safe under the warehouse lease) instead of compare, stage, count and MERGE
        rows.write.format("delta").mode("append").save(warehouse.path(FILE_STATE))
        log.info("file outcomes: the warehouse's first, appended")
        return None
    current = spark.read.format("delta").load(warehouse.path(FILE_STATE))
    same = " AND ".join(f"s.{c} <=> t.{c}" for c in DECISION_COLUMNS)
    changed = rows.alias("s").join(current.alias("t"), F.expr(f"s.uri = t.uri AND {same}"), "left_anti")
    if changed.isEmpty():  # the common case of a rerun: one query, no staging table
        log.info("file outcomes: 0 changed")
        return 0
    changed.write.format("delta").mode("overwrite").save(staging)
    staged = spark.read.format("delta").load(staging)
    n = staged.count()
    if n:
        cols = [f.name for f in FILE_STATE.schema.fields]
        update = {c: f"s.{c}" for c in cols if c != "first_seen"}
        # first_seen: when the file entered its current status (kept while the status stays)
        update["first_seen"] = "CASE WHEN t.status = s.status AND t.audio_id <=> s.audio_id " \
                               "THEN t.first_seen ELSE s.first_seen END"
        (
            DeltaTable.forPath(spark, warehouse.path(FILE_STATE)).alias("t")
            .merge(staged.alias("s"), "t.uri = s.uri")
            .whenMatchedUpdate(set=update)
            .whenNotMatchedInsert(values={c: f"s.{c}" for c in cols})
            .execute()
        )
    warehouse.remove(staging)
    log.info("file outcomes: %d changed", n)
    return n
