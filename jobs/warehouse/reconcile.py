"""Every file's outcome as a function of the tables, and the one query that says whether it holds.

The stages commit their tables (bronze, silver, gold); where each file stands follows from them:

| the tables say                                                    | ops.file_state                    |
| ----------------------------------------------------------------- | --------------------------------- |
| bronze: the file is no longer listed (`deleted_at`)               | quarantined, ingest, NOT_FOUND    |
| bronze: the probe failed (`error_code`)                           | quarantined, ingest, that code    |
| silver: its audio does not decode (`decode.status = 'failed'`)    | quarantined, annotate, that code  |
| gold: a row of its audio lists this URI                           | curated                           |
| publish quarantined this audio (a decision on the same audio_id)  | kept as publish wrote it          |
| anything else (new, changed, not yet judged, a blocked batch)     | pending (a blocked one keeps its reason) |

`reconcile` derives that table and writes only the rows that differ, after first deleting the gold rows
that can no longer stand (audio no live file holds, audio that no longer decodes, a row listing a URI
that is gone or now holds other bytes) with their segments and clips, and the clip decisions
(ops.clip_state) of audio no live file holds or whose gold row went. The runner calls it after reaping dead runs and at the end of
every writing command, so whatever a crash between two commits left half done, the next command puts
right; when none of the tables it reads changed since it last ran, it stops after reading their versions.
A curated file whose decision is stale (derived here from gold, without the publish decision's key) is
judged again by the next publish, which writes the same row.

`check` is the invariant in one query (and a few more for segments and clips): every listed file has
exactly one place, gold (curated) or quarantine, or is pending; a curated file is in gold and a file in
gold is curated; a deleted file is in no gold row and stays quarantined as NOT_FOUND; every segment and
clip belongs to a gold row; every decided clip is in exactly one of gold.clips (curated) and
ops.clip_quarantine; a curated file has a curated clip. The run summary prints its result.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from jobs.warehouse import outcomes
from jobs.warehouse.catalog import BRONZE, CLIP_STATE, CLIPS, FILE_STATE, SEGMENTS, SILVER, UTTERANCES
from jobs.warehouse.live import live_files
from jobs.warehouse.state import StageState
from jobs.warehouse.store import Warehouse
from schemas.errors import ErrorCode

log = logging.getLogger(__name__)

READS = (BRONZE, SILVER, FILE_STATE, UTTERANCES, SEGMENTS, CLIPS, CLIP_STATE)


@dataclass
class Reconciled:
    skipped: bool = False  # no table changed since the last reconcile
    gold_removed: int = 0
    changed: int = 0


@dataclass
class Invariant:
    """Counts over every file bronze knows (`check`)."""

    files: int = 0
    curated: int = 0
    quarantined: int = 0
    pending: int = 0
    deleted: int = 0
    violations: dict = field(default_factory=dict)  # name -> files

    @property
    def holds(self) -> bool:
        return not any(self.violations.values())

    def line(self) -> str:
        where = (f"{self.files} files: {self.curated} curated, {self.quarantined} quarantined "
                 f"({self.deleted} deleted), {self.pending} pending")
        if self.holds:
            return where + "; each in exactly one place"
        broken = ", ".join(f"{k}: {v}" for k, v in sorted(self.violations.items()) if v)
        return where + f"; BROKEN: {broken}"


def reconcile(spark, warehouse: Warehouse, run_id: str) -> Reconciled:
    """Bring gold and ops.file_state in line with bronze, silver and gold (module docstring)."""
    state = StageState(warehouse, "reconcile")
    if state.unchanged(READS, {}) is not None or warehouse.is_empty_since_created(BRONZE):
        log.debug("reconcile: no table changed since the last reconcile")
        return Reconciled(skipped=True)
    result = Reconciled(gold_removed=_remove_unstandable_gold(spark, warehouse, run_id))
    staging = warehouse.staging("reconcile", run_id)
    with warehouse.committing("reconcile.file_state"):
        changed = outcomes.record(spark, warehouse, _derived_outcomes(spark, warehouse, run_id), staging)
    result.changed = changed or 0
    if result.changed or result.gold_removed:
        log.info("reconcile: %d file outcomes brought in line, %d gold rows removed", result.changed,
                 result.gold_removed)
    state.remember(READS, {})
    return result


def _gold_uris(spark, warehouse: Warehouse):
    """(uri, audio_id) of every URI a gold row lists."""
    from pyspark.sql import functions as F

    gold = spark.read.format("delta").load(warehouse.path(UTTERANCES))
    return gold.select("audio_id", F.explode(F.array_union(F.array("uri"), F.coalesce(
        "uris", F.array().cast("array<string>")))).alias("uri")).distinct()


def _segments_without_gold(spark, warehouse: Warehouse):
    """The audio ids that have segments or clips in gold but no gold.utterances row (one row each)."""
    gold_ids = spark.read.format("delta").load(warehouse.path(UTTERANCES)).select("audio_id")
    parts = [spark.read.format("delta").load(warehouse.path(t)).select("audio_id") for t in (SEGMENTS, CLIPS)]
    return parts[0].unionByName(parts[1]).distinct().join(gold_ids, "audio_id", "left_anti")


def _remove_unstandable_gold(spark, warehouse: Warehouse, run_id: str) -> int:
    """Delete the gold rows whose audio no live file holds, whose audio fails to decode, or that list a
    URI no longer holding that audio, with their segments, and every segment whose audio gold does not
    hold (also those a crash between the two deletes left); returns how many gold rows went. Publish
    judges what is left of such audio again (its decision key covers the URIs)."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    live = live_files(spark, warehouse).select("uri", F.col("audio_id").alias("_live"))
    listed = _gold_uris(spark, warehouse).join(live, "uri", "left")
    stale_uri = listed.where(~F.col("_live").eqNullSafe(F.col("audio_id"))).select("audio_id")
    no_decode = spark.read.format("delta").load(warehouse.path(SILVER)).where(
        "decode.status = 'failed'").select("audio_id")
    gold_ids = spark.read.format("delta").load(warehouse.path(UTTERANCES)).select("audio_id")
    orphans = _segments_without_gold(spark, warehouse)
    doomed = (stale_uri.unionByName(gold_ids.join(no_decode, "audio_id", "left_semi"))
              .select("audio_id", F.lit(True).alias("in_gold"))
              .unionByName(orphans.select("audio_id", F.lit(False).alias("in_gold")))
              .groupBy("audio_id").agg(F.max("in_gold").alias("in_gold")))
    staging = warehouse.staging("reconcile_gold", run_id)
    n = 0
    # the usual case is nothing to remove: one query that stops at the first row decides it, instead of
    # staging an empty table (a Delta write) and reading it back
    if not doomed.isEmpty():
        doomed.write.format("delta").mode("overwrite").save(staging)  # computed from the tables it changes
        ids = spark.read.format("delta").load(staging)
        n = ids.where("in_gold").count()
        if n:
            with warehouse.committing("reconcile.gold"):
                (DeltaTable.forPath(spark, warehouse.path(UTTERANCES)).alias("t")
                 .merge(ids.where("in_gold").alias("s"), "t.audio_id = s.audio_id").whenMatchedDelete().execute())
        for table, point in ((SEGMENTS, "reconcile.segments"), (CLIPS, "reconcile.clips")):
            with warehouse.committing(point):
                (DeltaTable.forPath(spark, warehouse.path(table)).alias("t")
                 .merge(ids.alias("s"), "t.audio_id = s.audio_id").whenMatchedDelete().execute())
        gold_gone = ids.where("in_gold").select("audio_id")
    else:
        gold_gone = None
    # clip decisions of audio no live file holds (or whose gold row just went: publish judges it again)
    live_ids = live_files(spark, warehouse).select("audio_id").distinct()
    decided = spark.read.format("delta").load(warehouse.path(CLIP_STATE)).select("audio_id").distinct()
    gone = decided.join(live_ids, "audio_id", "left_anti")
    if gold_gone is not None:
        gone = gone.unionByName(decided.join(gold_gone, "audio_id", "left_semi")).distinct()
    if not gone.isEmpty():
        gone.write.format("delta").mode("overwrite").save(staging + "_clips")
        gone = spark.read.format("delta").load(staging + "_clips")
        with warehouse.committing("reconcile.clip_state"):
            (DeltaTable.forPath(spark, warehouse.path(CLIP_STATE)).alias("t")
             .merge(gone.alias("s"), "t.audio_id = s.audio_id").whenMatchedDelete().execute())
    warehouse.remove(staging)
    warehouse.remove(staging + "_clips")
    if n:
        log.info("reconcile: removed %d gold rows whose audio is gone, no longer decodes or moved", n)
    return n


def _derived_outcomes(spark, warehouse: Warehouse, run_id: str):
    """One file_state row per bronze URI, as the tables say it should be (module docstring)."""
    from pyspark.sql import functions as F

    b = spark.read.format("delta").load(warehouse.path(BRONZE)).select(
        "uri", "audio_id", F.col("error_code").alias("_probe_code"), F.col("error_message").alias("_probe_msg"),
        "deleted_at")
    s = spark.read.format("delta").load(warehouse.path(SILVER)).where("decode.status = 'failed'").select(
        F.col("audio_id").alias("_s_audio"), F.col("decode.error_code").alias("_dec_code"),
        F.col("decode.error_message").alias("_dec_msg"))
    g = _gold_uris(spark, warehouse).select("uri", F.col("audio_id").alias("_g_audio"))
    f = spark.read.format("delta").load(warehouse.path(FILE_STATE))
    fc = [c for c in f.columns if c != "uri"]
    f = f.select("uri", *[F.col(c).alias(f"_f_{c}") for c in fc])
    rows = (b.join(s, b.audio_id == s._s_audio, "left").join(g, "uri", "left").join(f, "uri", "left"))

    same_audio = F.col("_f_audio_id").eqNullSafe(F.col("audio_id"))
    deleted = F.col("deleted_at").isNotNull()
    probe_failed = ~deleted & F.col("_probe_code").isNotNull()
    undecodable = ~deleted & ~probe_failed & F.col("_dec_code").isNotNull()
    open_ = ~deleted & ~probe_failed & ~undecodable
    in_gold = open_ & F.col("_g_audio").eqNullSafe(F.col("audio_id"))
    keep = (
        (in_gold & (F.col("_f_status") == outcomes.CURATED) & same_audio)
        | (open_ & ~in_gold & (F.col("_f_stage") == "publish") & (F.col("_f_status") == outcomes.QUARANTINED)
           & same_audio)
        | (open_ & ~in_gold & (F.col("_f_status") == outcomes.PENDING) & same_audio)
    )

    def pick(derived_ingest, derived_annotate, derived_gold, derived_pending, kept):
        return (F.when(keep, kept).when(deleted | probe_failed, derived_ingest)
                .when(undecodable, derived_annotate).when(in_gold, derived_gold).otherwise(derived_pending))

    null_s = F.lit(None).cast("string")
    derived = rows.select(
        "uri", "audio_id",
        pick(F.lit("ingest"), F.lit("annotate"), F.lit("publish"), F.lit("ingest"), F.col("_f_stage")).alias("stage"),
        pick(F.lit(outcomes.QUARANTINED), F.lit(outcomes.QUARANTINED), F.lit(outcomes.CURATED),
             F.lit(outcomes.PENDING), F.col("_f_status")).alias("status"),
        pick(F.coalesce("_probe_code", F.lit(str(ErrorCode.NOT_FOUND))), F.col("_dec_code"), null_s, null_s,
             F.col("_f_error_code")).alias("error_code"),
        pick(F.col("_probe_msg"), F.col("_dec_msg"), null_s, null_s, F.col("_f_reason")).alias("reason"),
        *[pick(F.lit(None), F.lit(None), F.lit(None), F.lit(None), F.col(f"_f_{c}")).alias(c)
          for c in ("failed_expectations", "recipe_hash", "annotated_at", "decision_key")],
        F.when(keep, F.col("_f_run_id")).otherwise(F.lit(run_id)).alias("run_id"),
    )
    return outcomes.outcome_rows(derived, run_id)


def check(spark, warehouse: Warehouse, fresh: bool = False) -> Invariant:
    """The invariant over every file bronze knows, in one query (module docstring); when no table changed
    since the last check, its recorded answer (unless `fresh`)."""
    import dataclasses

    state = StageState(warehouse, "invariant")
    recorded = None if fresh else state.recall(READS, {})
    if recorded is not None:
        return Invariant(**recorded)
    found = _check(spark, warehouse)
    state.remember(READS, {}, payload=dataclasses.asdict(found))
    return found


def _check(spark, warehouse: Warehouse) -> Invariant:
    from pyspark.sql import functions as F

    b = spark.read.format("delta").load(warehouse.path(BRONZE)).select(
        "uri", F.col("audio_id").alias("_b_audio"), "deleted_at", F.lit(True).alias("_in_bronze"))
    f = spark.read.format("delta").load(warehouse.path(FILE_STATE)).select(
        "uri", "status", "error_code", F.lit(True).alias("_has_state"))
    g = _gold_uris(spark, warehouse).groupBy("uri").agg(
        F.count("*").alias("_gold_rows"), F.first("audio_id").alias("_g_audio"))
    rows = b.join(f, "uri", "left").join(g, "uri", "full_outer")
    known = F.col("_in_bronze").isNotNull()
    deleted = known & F.col("deleted_at").isNotNull()
    in_gold = F.col("_gold_rows").isNotNull()
    checks = {
        "no_outcome": known & F.col("_has_state").isNull(),
        "curated_not_in_gold": known & (F.col("status") == outcomes.CURATED) & ~in_gold,
        "in_gold_not_curated": known & in_gold & ~F.col("status").eqNullSafe(F.lit(outcomes.CURATED)),
        "gold_other_bytes": known & in_gold & ~F.col("_g_audio").eqNullSafe(F.col("_b_audio")),
        "in_gold_twice": F.col("_gold_rows") > 1,
        "gold_not_in_bronze": in_gold & ~known,
        "deleted_not_not_found": deleted & ~(
            (F.col("status") == outcomes.QUARANTINED) & (F.col("error_code") == str(ErrorCode.NOT_FOUND))),
    }
    orphan_segments = _segments_without_gold(spark, warehouse).count()
    clip_violations = _clip_violations(spark, warehouse)
    counts = rows.agg(
        F.count(F.when(known, 1)).alias("files"),
        F.count(F.when(known & (F.col("status") == outcomes.CURATED), 1)).alias("curated"),
        F.count(F.when(known & (F.col("status") == outcomes.QUARANTINED), 1)).alias("quarantined"),
        F.count(F.when(known & (F.col("status") == outcomes.PENDING), 1)).alias("pending"),
        F.count(F.when(deleted, 1)).alias("deleted"),
        *[F.count(F.when(cond, 1)).alias(name) for name, cond in checks.items()],
    ).first()
    return Invariant(files=int(counts["files"]), curated=int(counts["curated"]),
                     quarantined=int(counts["quarantined"]), pending=int(counts["pending"]),
                     deleted=int(counts["deleted"]),
                     violations={**{name: int(counts[name]) for name in checks},
                                 "segments_without_gold": orphan_segments, **clip_violations})


def _clip_violations(spark, warehouse: Warehouse) -> dict[str, int]:
    """Every clip decided is in exactly one place: a curated clip (ops.clip_state) is in gold.clips and
    every gold clip is a curated one; a curated file has at least one gold clip."""
    from pyspark.sql import functions as F

    state = spark.read.format("delta").load(warehouse.path(CLIP_STATE)).select(
        "clip_id", F.col("status").alias("_status"))
    gold = spark.read.format("delta").load(warehouse.path(CLIPS)).select("clip_id", F.lit(True).alias("_in_gold"))
    both = state.join(gold, "clip_id", "full_outer")
    in_gold = F.col("_in_gold").isNotNull()
    curated = F.col("_status") == outcomes.CURATED
    counts = both.agg(
        F.count(F.when(curated & ~in_gold, 1)).alias("curated_clip_not_in_gold"),
        F.count(F.when(in_gold & ~F.coalesce(curated, F.lit(False)), 1)).alias("gold_clip_not_curated"),
    ).first()
    files = spark.read.format("delta").load(warehouse.path(UTTERANCES)).select("audio_id")
    without = files.join(spark.read.format("delta").load(warehouse.path(CLIPS)).select("audio_id"),
                         "audio_id", "left_anti").count()
    return {"curated_clip_not_in_gold": int(counts["curated_clip_not_in_gold"]),
            "gold_clip_not_curated": int(counts["gold_clip_not_curated"]), "curated_file_without_clip": without}
